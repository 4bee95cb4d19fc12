"""The vector store: sheet vectors in Milvus, one collection per model version.

``store`` holds PatentStore (connection, availability, collections, rows, search),
``aliases`` the live alias, ``schema`` the rows, ``filters`` the filter language,
``milvus_errors`` how Milvus errors are read and ``lite`` what is particular to Milvus Lite.
Import from here: ``from patentclip.store import PatentStore, SearchFilters``.
"""

from patentclip.store.filters import SearchFilters
from patentclip.store.lite import LITE_ADVISED_MAX_ROWS, is_lite_uri, lite_size_advice
from patentclip.store.milvus_errors import MILVUS_ERROR_WORDS, classify_milvus_error
from patentclip.store.schema import (
    MAX_SEARCH_LIMIT,
    MODALITIES,
    CollectionInfo,
    Hit,
    SheetRow,
    collection_name,
    figure_numbers,
    row_id,
)
from patentclip.store.store import PROBE_INTERVAL_S, PatentStore, open_store

__all__ = [
    "LITE_ADVISED_MAX_ROWS", "MAX_SEARCH_LIMIT", "MILVUS_ERROR_WORDS", "MODALITIES",
    "PROBE_INTERVAL_S", "CollectionInfo", "Hit", "PatentStore", "SearchFilters", "SheetRow",
    "classify_milvus_error", "collection_name", "figure_numbers", "is_lite_uri",
    "lite_size_advice",
    "open_store", "row_id",
]

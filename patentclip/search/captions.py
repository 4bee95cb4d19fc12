"""A collection whose caption vectors Milvus computes itself, through PatentCLIP's HTTP
embedding provider (services/query/http/provider.py): Milvus's own TEXTEMBEDDING function.

Each row is one drawing sheet with its caption text (title, view and figure description:
``Grant.sheet_caption``). At insert Milvus sends the captions to the provider and stores
the vectors in ``caption_vector``; at search a raw text is embedded the same way, so
``client.search(data=["hinged cosmetic case with mirror"], anns_field="caption_vector")``
works from any Milvus client with no model on the caller's side. PatentCLIP's text and
image towers share one space, so the same field also answers a drawing's image vector
(image -> caption search inside Milvus).

How this relates to the embedder's collections (``store.py``): those hold both modalities
per sheet, written by our embedder with vectors we compute; this layout holds captions only
and leaves the embedding to Milvus. Use it where Milvus users manage their own collections;
the query service keeps serving the embedder's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from pymilvus import DataType, Function, FunctionType, MilvusClient

from patentclip.errors import InvalidInputError
from patentclip.grants.model import Grant
from patentclip.search.query import MAX_TEXT_CHARS
from patentclip.store import row_id

CAPTION_FIELD = "caption"
VECTOR_FIELD = "caption_vector"
FUNCTION_NAME = "patentclip_caption_embedding"


@dataclass(frozen=True)
class CaptionHit:
    id: str
    patent: str
    sheet: int
    score: float


def provider_params(provider: str, base_url: str, dim: int, model_name: str = "patentclip",
                    api_key: str = "") -> dict:
    """The TEXTEMBEDDING function's params for the OpenAI-compatible or the TEI endpoint.

    ``base_url`` is the provider's root (``http://host:port``); the OpenAI path appends
    ``/v1`` as the OpenAI client expects.
    """
    root = base_url.rstrip("/")
    if provider == "openai":
        params = {"provider": "openai", "model_name": model_name, "base_url": f"{root}/v1",
                  "dimensions": dim}
        if api_key:
            params["api_key"] = api_key
        return params
    if provider == "TEI":
        params = {"provider": "TEI", "endpoint": root}
        if api_key:
            params["api_key"] = api_key
        return params
    raise InvalidInputError(f"provider {provider!r}: use 'openai' or 'TEI'")


class CaptionCollection:
    """Create, fill and search a caption collection embedded by Milvus."""

    def __init__(self, client: MilvusClient, name: str) -> None:
        self.client, self.name = client, name

    @classmethod
    def create(cls, client: MilvusClient, name: str, dim: int, base_url: str,
               api_key: str = "", provider: str = "openai",
               model_name: str = "patentclip") -> CaptionCollection:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description="PatentCLIP sheet captions, embedded "
                                            "by Milvus through the PatentCLIP provider")
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("patent", DataType.VARCHAR, max_length=16)
        schema.add_field("sheet", DataType.INT32)
        schema.add_field(CAPTION_FIELD, DataType.VARCHAR, max_length=4 * MAX_TEXT_CHARS)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
        schema.add_function(Function(
            name=FUNCTION_NAME, function_type=FunctionType.TEXTEMBEDDING,
            input_field_names=[CAPTION_FIELD], output_field_names=[VECTOR_FIELD],
            params=provider_params(provider, base_url, dim, model_name, api_key)))
        index = MilvusClient.prepare_index_params()
        index.add_index(VECTOR_FIELD, index_type="HNSW", metric_type="COSINE",
                        params={"M": 16, "efConstruction": 200})
        client.create_collection(name, schema=schema, index_params=index)
        return cls(client, name)

    def insert_grants(self, grants: Iterable[Grant]) -> int:
        """One row per drawing sheet with its caption; Milvus embeds them. Rows inserted."""
        rows = caption_rows(grants)
        for start in range(0, len(rows), 256):
            self.client.insert(self.name, rows[start:start + 256])
        return len(rows)

    def search_text(self, texts: Sequence[str], k: int = 10) -> list[list[CaptionHit]]:
        """Raw text in, Milvus embeds it through the provider: no model on this side."""
        return self._search(list(texts), k)

    def search_vectors(self, vectors: np.ndarray, k: int = 10) -> list[list[CaptionHit]]:
        """Vectors from PatentCLIP's text or image tower against the caption vectors."""
        return self._search([list(map(float, v)) for v in np.atleast_2d(vectors)], k)

    def _search(self, data: list, k: int) -> list[list[CaptionHit]]:
        raw = self.client.search(self.name, data=data, anns_field=VECTOR_FIELD, limit=k,
                                 output_fields=["patent", "sheet"],
                                 search_params={"metric_type": "COSINE",
                                                "params": {"ef": max(64, k)}},
                                 consistency_level="Strong")
        return [[CaptionHit(h["id"], h["entity"]["patent"], h["entity"]["sheet"],
                            float(h["distance"])) for h in hits] for hits in raw]


def caption_rows(grants: Iterable[Grant]) -> list[dict]:
    """``{"id", "patent", "sheet", "caption"}`` per sheet, ``id`` the key of the same sheet's
    caption row in the embedder's collections; captions cut to what the provider accepts
    (the text tower reads 77 tokens of them anyway)."""
    rows = []
    for grant in grants:
        for sheet in grant.sheets:
            caption = grant.sheet_caption(sheet)[:MAX_TEXT_CHARS].strip() or grant.title
            rows.append({"id": row_id(grant.patent_number, sheet.number, "caption"),
                         "patent": grant.patent_number, "sheet": sheet.number,
                         CAPTION_FIELD: caption})
    return rows

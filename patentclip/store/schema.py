"""What a collection holds: one row per drawing sheet and modality, and how rows and hits
look in Milvus.

Layout of a collection ``patentclip_<model_version>``:

* one row per drawing sheet and modality, primary key ``<patent>-<sheet:03d>:<modality>``
  (``D0907292-001:drawing`` holds the sheet image's vector, ``D0907292-001:caption`` the
  vector of the caption the patent gives that sheet). One vector field per collection,
  because Milvus 2.3 servers allow only one;
* rows for parts of a sheet, keyed by the region they show (fractions of the sheet, per
  mille: ``D0919445-001:figure@52,40,948,470``): a **figure** row for each figure of a
  sheet of several (its own vector, view and figure number; found by its label at ingest),
  and **part** rows, tiles of each figure at more than one scale, which cropped queries
  also match (part matching, ``patentclip.drawings.parts``). Milvus 2.6's multi-vector rows
  would hold the tiles in the sheet's row; on older backends they are rows of their own,
  grouped by patent like the others;
* partitions: ``drawing`` (sheet and figure rows: what a drawing or text searches),
  ``caption`` and ``part`` (searched by cropped queries only);
* scalar fields for filtering and display (patent, sheet, view, Locarno, grant date...);
* HNSW index with COSINE metric; vectors are unit length, so score = cosine similarity;
* where the backend has full-text search (Milvus Lite 3.x; a Milvus server from 2.5), the
  words of each sheet (``text``: the patent's title and claim, the sheet's figure
  descriptions) on its caption row, analysed by Milvus and turned into a sparse BM25 vector
  (``lexical``) by Milvus' own BM25 function: the lexical leg of text search. Drawing rows
  hold no words. A collection made without full-text search has neither field;
* the collection's properties record ``patentclip.model_version`` and ``patentclip.dim``:
  a collection is never written or searched with vectors of another model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from pymilvus import DataType, Function, FunctionType, MilvusClient

from patentclip.grants.model import Region

MODALITIES = ("drawing", "caption", "figure", "part")
PARTITIONS = ("drawing", "caption", "part")  # figure rows live with the sheets they cut
IMAGE_ROWS = ("drawing", "figure")  # what a drawing or text searches; a crop adds "part"
VERSION_PROPERTY = "patentclip.model_version"
DIM_PROPERTY = "patentclip.dim"
SPEC_PROPERTY = "patentclip.model_spec"  # how to load the model: a query service follows it
PRETRAINED_PROPERTY = "patentclip.model_pretrained"
MAX_SEARCH_LIMIT = 16_384  # Milvus' topk ceiling
TEXT_FIELD, LEXICAL_FIELD = "text", "lexical"
MAX_TEXT_BYTES = 8192
# Milvus' standard analyzer (split on non-word characters, lower case) with English stop
# words. Milvus Lite 3.x has no stemmer: "bottles" does not match "bottle" there.
ANALYZER = {"tokenizer": "standard", "filter": ["lowercase", {"type": "stop", "stop_words": [
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it",
    "its", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with", "thereof"]}]}

_STRING_FIELDS = {  # name -> max length in bytes
    "id": 64, "patent": 16, "modality": 8, "view": 16, "locarno": 4, "locarno_class": 2,
    "title": 512, "figures": 256, "caption": 2048, "image_uri": 1024,
}


@dataclass(frozen=True)
class SheetRow:
    """One stored vector: a drawing sheet's image, or its caption."""

    patent: str
    sheet: int
    modality: str
    vector: Sequence[float]
    view: str = "unknown"
    locarno: str = ""
    grant_date: int = 0
    title: str = ""
    figures: str = ""
    caption: str = ""
    image_uri: str = ""
    text: str = ""  # the words the lexical leg matches (caption rows); "" on drawing rows
    region: Region | None = None  # figure and part rows: where on the sheet

    @property
    def id(self) -> str:
        return row_id(self.patent, self.sheet, self.modality, self.region)


def figure_numbers(figures: str) -> list[str]:
    """The figure numbers of a row's ``figures`` field (stored comma-joined: "1,2A")."""
    return [f for f in figures.split(",") if f]


def row_id(patent: str, sheet: int, modality: str, region: Region | None = None) -> str:
    """The primary key: ``D0907292-001:drawing``; a part of the sheet adds its region,
    ``D0907292-001:part@0,0,500,500``."""
    return f"{patent}-{sheet:03d}:{modality}" + (f"@{region.key}" if region else "")


def row_region(key: str) -> Region | None:
    """The region a row's key names (figure and part rows), None for a whole sheet."""
    _, at, corners = key.partition("@")
    return Region.from_key(corners) if at else None


def partition_of(modality: str) -> str:
    """The partition a row of ``modality`` lives in."""
    return "drawing" if modality == "figure" else modality


@dataclass(frozen=True)
class Hit:
    """One search result row; ``score`` is the cosine similarity."""

    patent: str
    sheet: int
    modality: str
    score: float
    view: str
    locarno: str
    grant_date: int
    title: str
    figures: tuple[str, ...]  # decoded once, from the stored comma-joined field
    caption: str
    image_uri: str
    # The legs whose rankings held it ("drawing", "caption", "words"); set by the search.
    legs: tuple[str, ...] = ()
    # The part of the sheet that matched best (a figure or part row's region, or the best
    # part of the sheet, ``SearchEngine``); None: the whole sheet.
    region: Region | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StoredFigure:
    """One figure of a sheet of several, as its figure row holds it."""

    number: str
    view: str
    region: Region


@dataclass(frozen=True)
class StoredSheet:
    """One drawing sheet of a patent as its collection holds it (figures decoded once);
    ``regions``: where each figure is, on a sheet of several whose labels were read."""

    sheet: int
    view: str
    figures: tuple[str, ...]
    caption: str
    image_uri: str
    regions: tuple[StoredFigure, ...] = ()


def stored_sheet(row: dict, figure_rows: Iterable[dict] = ()) -> StoredSheet:
    """A drawing row of ``PatentStore.patent_rows`` as a StoredSheet, with the figure rows
    of its sheet."""
    regions = tuple(StoredFigure(r["figures"], r["view"], row_region(r["id"]))
                    for r in figure_rows if r["sheet"] == row["sheet"] and "@" in r["id"])
    return StoredSheet(sheet=row["sheet"], view=row["view"],
                       figures=tuple(figure_numbers(row["figures"])), caption=row["caption"],
                       image_uri=row["image_uri"],
                       regions=tuple(sorted(regions, key=lambda f: (f.region.top,
                                                                    f.region.left))))


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    model_version: str
    dim: int
    rows: int
    model_spec: str = ""
    pretrained: str = ""


def collection_name(prefix: str, model_version: str) -> str:
    """The collection a model version's vectors live in: ``<prefix>_<version>``."""
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', model_version)}"


OUTPUT_FIELDS = ["patent", "sheet", "modality", "view", "locarno", "grant_date", "title",
                  "figures", "caption", "image_uri"]


def milvus_schema(dim: int, full_text: bool = False):
    """The collection's fields; with ``full_text`` also the analysed ``text`` and the sparse
    ``lexical`` vector Milvus' BM25 function makes of it."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                        description="PatentCLIP drawing-sheet vectors")
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=_STRING_FIELDS["id"])
    for name in ("patent", "modality", "view", "locarno", "locarno_class"):
        schema.add_field(name, DataType.VARCHAR, max_length=_STRING_FIELDS[name])
    schema.add_field("sheet", DataType.INT64)
    schema.add_field("grant_date", DataType.INT64)
    for name in ("title", "figures", "caption", "image_uri"):
        schema.add_field(name, DataType.VARCHAR, max_length=_STRING_FIELDS[name])
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    if full_text:
        schema.add_field(TEXT_FIELD, DataType.VARCHAR, max_length=MAX_TEXT_BYTES,
                         enable_analyzer=True, analyzer_params=ANALYZER)
        schema.add_field(LEXICAL_FIELD, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                     input_field_names=[TEXT_FIELD],
                                     output_field_names=[LEXICAL_FIELD]))
    return schema


def has_full_text(description: dict) -> bool:
    """Whether a collection (``describe_collection``) was made with the lexical fields."""
    return any(f.get("name") == LEXICAL_FIELD for f in description.get("fields", []))


def row_dict(row: SheetRow) -> dict:
    if row.modality not in MODALITIES:
        raise ValueError(f"modality {row.modality!r} not in {MODALITIES}")
    values = {
        "id": row.id, "patent": row.patent, "sheet": int(row.sheet), "modality": row.modality,
        "view": row.view, "locarno": row.locarno, "locarno_class": row.locarno[:2],
        "grant_date": int(row.grant_date), "title": row.title, "figures": row.figures,
        "caption": row.caption, "image_uri": row.image_uri,
        "vector": np.asarray(row.vector, dtype=np.float32).tolist(),
        TEXT_FIELD: _truncate_utf8(row.text, MAX_TEXT_BYTES),
    }
    for name, limit in _STRING_FIELDS.items():
        values[name] = _truncate_utf8(values[name], limit)
    return values


def _truncate_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", errors="ignore")


def hit_from_milvus(raw: dict) -> Hit:
    entity = raw["entity"]
    fields = {k: entity[k] for k in OUTPUT_FIELDS}
    fields["figures"] = tuple(figure_numbers(fields["figures"]))
    return Hit(score=float(raw["distance"]), region=row_region(str(raw.get("id", ""))),
               **fields)


def vector_dim(description: dict) -> int:
    for f in description.get("fields", []):
        if f.get("name") == "vector":
            return int(f.get("params", {}).get("dim", 0))
    return 0


def group_by_patent(hits: Iterable[Hit], k: int) -> list[Hit]:
    """Keep each patent's best hit, in score order, up to ``k`` patents."""
    return _best(hits, k, lambda h: h.patent)


def group_by_sheet(hits: Iterable[Hit], k: int) -> list[Hit]:
    """Keep each sheet's best row (the sheet, a figure or a part of it), up to ``k``."""
    return _best(hits, k, lambda h: (h.patent, h.sheet, h.modality == "caption"))


def _best(hits: Iterable[Hit], k: int, key) -> list[Hit]:
    best: dict = {}
    for hit in sorted(hits, key=lambda h: -h.score):
        best.setdefault(key(hit), hit)
        if len(best) == k:
            break
    return list(best.values())

"""Training pairs from ingested grants, the time split and the frozen evaluation sets.

Everything the embedder or the indexer ingested sits in the image store: each patent's
drawings plus its ``grant.pb`` record. :class:`IngestedGrants` reads those records back, so
the trainer learns from exactly what is searchable, without touching Kafka or Milvus.

One :class:`TrainingExample` per drawing sheet:

* captions: what the patent says about the figures on that sheet ("front perspective view
  of a shaving blade cartridge"), the title, and an extra detailed caption where a captions
  file has one (the IMPACT dataset's LLaVA ``caption`` column). One is sampled per step.
* label: the Locarno main class (``02`` from ``0204``). Grants without one are reported and
  left out, never guessed.

The split is by time: the newest ``eval_weeks`` grant weeks are evaluation, older weeks are
training, so no patent is on both sides. An :class:`EvalSet` is frozen under a name (the
benchmark version) with the training class frequencies of its day and a hash of each image,
so every later benchmark against it is comparable.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from patentclip.drawings.imagestore import LocalImageStore
from patentclip.errors import (
    EventDecodeError,
    ImageStoreUnavailableError,
    InvalidInputError,
    NotFoundError,
)
from patentclip.grants.model import DrawingSheet, Grant

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingExample:
    """One drawing sheet with its candidate captions and its Locarno main class."""

    patent: str
    sheet: int
    image_uri: str
    captions: tuple[str, ...]
    label: str
    grant_date: int
    caption_source: str = ""  # figures | views | front_page (CAPTION_SOURCES)
    title: str = ""  # the grant's title: the served protocol's text query (benchmark)

    @property
    def key(self) -> str:
        return f"{self.patent}-{self.sheet:03d}"


@dataclass
class DataReport:
    """What building the data did: counts and the grants or images left out, with why."""

    grants: int = 0
    examples: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def skip(self, reason: str, detail: str = "") -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if detail:
            self.errors.append(detail)


# Where a sheet's first caption comes from: the figure text of the sheet, the title and
# the patent's list of views (the XML does not say which figures the sheet holds), or the
# front page (D00000, which repeats a representative figure at another scale).
CAPTION_SOURCES = ("figures", "views", "front_page")


def caption_source(grant: Grant, sheet: DrawingSheet) -> str:
    if sheet.front_page:
        return "front_page"
    return "figures" if grant.sheet_figures(sheet) else "views"


def sheet_captions(grant: Grant, sheet: DrawingSheet, extra: str = "") -> tuple[str, ...]:
    """The captions a sheet can be trained with, most specific first, without duplicates.

    ``extra`` (a detailed caption such as IMPACT's LLaVA one) describes the front-page
    image, so only the front page gets it: on the other sheets it would describe a drawing
    they do not show.
    """
    title = grant.title.strip().rstrip(".")
    candidates = [grant.sheet_caption(sheet), f"a drawing of a {title.lower()}" if title else "",
                  " ".join(extra.split()) if sheet.front_page else ""]
    seen: list[str] = []
    for caption in candidates:
        if caption and caption.lower() not in (s.lower() for s in seen):
            seen.append(caption)
    return tuple(seen)


def examples_from_grant(grant: Grant, extra_captions: Mapping[str, str] | None = None,
                        report: DataReport | None = None) -> list[TrainingExample]:
    """One example per stored sheet; a grant without a Locarno class is reported, not used."""
    report = report or DataReport()
    report.grants += 1
    if grant.locarno is None or len(grant.locarno.code) < 2:
        report.skip("no Locarno class", f"{grant.patent_number}: no Locarno class, no label")
        return []
    extra = (extra_captions or {}).get(grant.patent_number, "")
    stored = [sheet for sheet in grant.sheets if sheet.image_uri]
    if extra and not any(sheet.front_page for sheet in stored):
        report.skip("extra caption without a front page to attach it to")
    examples = [TrainingExample(grant.patent_number, sheet.number, sheet.image_uri,
                                sheet_captions(grant, sheet, extra), grant.locarno.main_class,
                                grant.grant_date, caption_source(grant, sheet),
                                " ".join(grant.title.split()).rstrip("."))
                for sheet in stored]
    report.examples += len(examples)
    return examples


class IngestedGrants:
    """The grant records in an image store (``LocalImageStore.get_grant``)."""

    def __init__(self, images: LocalImageStore) -> None:
        self.images = images

    def __iter__(self):
        return iter(self.read(DataReport()))

    def read(self, report: DataReport) -> list[Grant]:
        """Every readable record, patent order; unreadable ones go to ``report.errors``."""
        grants = []
        for patent in self.images.grant_patents():
            try:
                grants.append(self.images.get_grant(patent))
            except (EventDecodeError, NotFoundError, ImageStoreUnavailableError) as exc:
                report.skip("unreadable grant record", f"{patent}: {exc}")
        return grants


def load_extra_captions(paths: Iterable[str | Path]) -> dict[str, str]:
    """Patent number -> detailed caption from CSV files with ``id`` and ``caption`` columns
    (the IMPACT dataset's layout, e.g. ``sample_data.csv``)."""
    captions: dict[str, str] = {}
    for path in paths:
        path = Path(path)
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                missing = {"id", "caption"} - set(reader.fieldnames or ())
                if missing:
                    raise InvalidInputError(f"{path}: captions file lacks column(s) "
                                            f"{sorted(missing)} (needs 'id' and 'caption')")
                for row in reader:
                    if row["id"] and row["caption"] and row["caption"].strip():
                        captions[row["id"].strip()] = row["caption"].strip()
        except OSError as exc:
            raise InvalidInputError(f"{path}: cannot read captions file: {exc}") from exc
    return captions


def grant_week(yyyymmdd: int) -> date:
    """The Monday of the week a grant date falls in (USPTO grants on Tuesdays)."""
    day = datetime.strptime(str(yyyymmdd), "%Y%m%d").date()
    return day - timedelta(days=day.weekday())


def time_split(examples: Sequence[TrainingExample], eval_weeks: int = 1
               ) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """(train, eval): the newest ``eval_weeks`` grant weeks are evaluation."""
    weeks = sorted({grant_week(e.grant_date) for e in examples})
    if len(weeks) <= eval_weeks:
        raise InvalidInputError(f"a time split needs more than {eval_weeks} grant week(s) of "
                                f"data; found {len(weeks)} ({', '.join(map(str, weeks))})")
    first_eval = weeks[-eval_weeks]
    train = [e for e in examples if grant_week(e.grant_date) < first_eval]
    evaluation = [e for e in examples if grant_week(e.grant_date) >= first_eval]
    return train, evaluation


def class_frequencies(examples: Iterable[TrainingExample]) -> dict[str, dict[str, int]]:
    """Locarno main class -> {'sheets': n, 'patents': m}, most frequent first."""
    sheets = Counter(e.label for e in examples)
    patents = Counter(label for label, _ in {(e.label, e.patent) for e in examples})
    ordered = sorted(sheets, key=lambda c: (-sheets[c], c))
    return {c: {"sheets": sheets[c], "patents": patents[c]} for c in ordered}


def data_hash(examples: Iterable[TrainingExample]) -> str:
    """A digest of what a run trained on (keys, images, captions and labels)."""
    digest = hashlib.sha256()
    for example in sorted(examples, key=lambda e: e.key):
        digest.update(json.dumps(asdict(example), sort_keys=True).encode())
    return digest.hexdigest()


def data_window(examples: Sequence[TrainingExample]) -> dict:
    """First and last grant date, counts and hash: recorded in every run and manifest."""
    dates = [e.grant_date for e in examples]
    return {"first_grant_date": min(dates) if dates else None,
            "last_grant_date": max(dates) if dates else None,
            "patents": len({e.patent for e in examples}), "sheets": len(examples),
            "sha256": data_hash(examples)}


# ----------------------------------------------------------------------------- eval sets


@dataclass(frozen=True)
class EvalItem:
    """One frozen evaluation sheet: its image (and the image's hash) and one caption."""

    patent: str
    sheet: int
    image_uri: str
    image_sha256: str
    caption: str
    label: str
    grant_date: int
    caption_source: str = ""  # CAPTION_SOURCES; "" in sets frozen before it was recorded
    title: str = ""  # the served protocol's text query; "" in sets frozen before it was kept

    @property
    def front_page(self) -> bool:
        return self.sheet == 0  # D00000


def _item_body(item: EvalItem) -> dict:
    """What an item's hash covers: its fields, without an unrecorded caption source or title,
    so a set frozen before those fields existed keeps its sha256."""
    body = asdict(item)
    for name in ("caption_source", "title"):
        if not body[name]:
            del body[name]
    return body


@dataclass(frozen=True)
class EvalSet:
    """A named, frozen evaluation set: the benchmark version runs are compared on."""

    name: str
    created: str
    items: tuple[EvalItem, ...]
    class_counts: dict[str, int]  # training sheets per class when frozen (for terciles)
    window: dict

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps([_item_body(i) for i in self.items],
                                         sort_keys=True).encode()).hexdigest()

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"name": self.name, "created": self.created, "sha256": self.sha256,
                "window": self.window, "class_counts": self.class_counts,
                "items": [_item_body(i) for i in self.items]}
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps(body, indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> EvalSet:
        try:
            body = json.loads(path.read_text())
            items = tuple(EvalItem(**i) for i in body["items"])
            loaded = cls(body["name"], body["created"], items, dict(body["class_counts"]),
                         dict(body["window"]))
        except FileNotFoundError as exc:
            raise NotFoundError(f"{path}: no such evaluation set") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"{path}: not a valid evaluation set: {exc}") from exc
        if loaded.sha256 != body.get("sha256"):
            raise InvalidInputError(f"{path}: items do not match the recorded sha256 (the "
                                    "frozen evaluation set was changed)")
        return loaded


def freeze_eval_set(name: str, evaluation: Sequence[TrainingExample],
                    training: Sequence[TrainingExample], images: LocalImageStore,
                    workers: int = 4) -> EvalSet:
    """Freeze evaluation examples (first caption each) with the training class counts."""
    if not evaluation:
        raise InvalidInputError(f"evaluation set {name!r} would be empty")
    with ThreadPoolExecutor(workers) as pool:
        hashes = list(pool.map(lambda e: hashlib.sha256(images.get(e.image_uri)).hexdigest(),
                               evaluation))
    items = tuple(EvalItem(e.patent, e.sheet, e.image_uri, h, e.captions[0], e.label,
                           e.grant_date, e.caption_source, e.title)
                  for e, h in zip(evaluation, hashes, strict=True))
    counts = {c: v["sheets"] for c, v in class_frequencies(training).items()}
    return EvalSet(name, datetime.now(UTC).isoformat(timespec="seconds"), items,
                   counts, data_window(evaluation))

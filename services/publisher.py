"""Grant publisher: USPTO bundles -> image store + one GrantEvent per patent on the topic.

``patentclip publish I20210105.tar`` reads design grants with the core reader, puts each
drawing sheet into the image store (the event carries its URI, not its bytes) and sends
one protobuf event per patent, keyed by patent number.

Backfill: ``patentclip publish data/bundles/`` takes a folder (or a list) of weekly bundles
(``I20YYMMDD.tar``, ``ipgYYMMDD.zip``), publishes them in date order and shows progress
over the whole run. A bundle counts as published once the broker acknowledged every one of
its events; that is recorded in a state file, so a run that was killed continues with the
first bundle not fully published. Publishing a bundle twice is safe anyway: the events are
identical and the embedder upserts by sheet key. A tar's members are read one at a time and
utility members are skipped by their names (a seek, never a read), so memory does not grow
with the bundle (docs/performance.md, "Backfill").
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kafka import KafkaProducer
from kafka.errors import KafkaError
from tqdm import tqdm

from patentclip.codec.events import encode_event, event_key
from patentclip.drawings.imagestore import LocalImageStore, store_grant
from patentclip.grants.reader import GrantDocument, GrantReader
from patentclip.ingest.figures import FigureLabeller

logger = logging.getLogger(__name__)

# I20210105.tar (with images), ipg210105.zip / .xml (text only): the week is in the name.
_BUNDLE_NAME = re.compile(r"^(?:I(?P<long>\d{8})|ipg(?P<short>\d{6}))\.(?:tar|zip|xml)$",
                          re.IGNORECASE)
STATE_VERSION = 1


def bundle_date(path: str | Path) -> int | None:
    """The issue date (YYYYMMDD) a weekly bundle's name carries; None for other sources."""
    match = _BUNDLE_NAME.match(Path(path).name)
    if not match:
        return None
    return int(match["long"]) if match["long"] else 20_000_000 + int(match["short"])


def weekly_sources(sources: Iterable[str | Path]) -> list[Path]:
    """Sources in publishing order: a folder holding weekly bundles stands for those
    bundles; bundles go in date order, after any other sources (per-patent folders or
    zips), which keep the order given."""
    expanded: list[Path] = []
    for source in map(Path, sources):
        bundles = sorted(p for p in source.iterdir() if bundle_date(p)) if source.is_dir() \
            else []
        expanded.extend(bundles or [source])
    others = [p for p in expanded if bundle_date(p) is None]
    weeks = sorted((p for p in expanded if bundle_date(p)), key=lambda p: (bundle_date(p),
                                                                           p.name))
    return others + weeks


@dataclass
class BundleSummary:
    """What publishing one source did: a row of the run's report."""

    name: str
    date: int | None = None
    grants: int = 0
    sheets: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # by reason (GrantReader report)
    undelivered: int = 0
    seconds: float = 0.0
    resumed: bool = False  # published by an earlier run (state file), not read again
    # Grants whose figures the XML leaves unknown, read from their labels (FIGURE_LABELS):
    # "mapped" (the labels agreed with the XML) or "disagreed" (the sheets stay unknown).
    figure_labels: dict[str, int] = field(default_factory=dict)


@dataclass
class PublishSummary:
    """What one publish run did; printed by the CLI."""

    published: int = 0
    sheets: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # published without some drawings
    bundles: list[BundleSummary] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"published {self.published} grants ({self.sheets} drawing sheets)"]
        resumed = [b for b in self.bundles if b.resumed]
        if resumed:
            out.append(f"resumed: {len(resumed)} bundles were published by an earlier run "
                       "and not read again")
        out += [f"skipped {n}: {reason}" for reason, n in sorted(self.skipped.items())]
        out += [f"incomplete: {text}" for text in self.incomplete]
        out += [f"failed: {text}" for text in self.failed]
        return out

    def table(self) -> str:
        """Per bundle: grants, sheets, skipped and errors by reason (fixed width)."""
        header = f"{'bundle':<22} {'grants':>7} {'sheets':>7} {'skipped':>8} {'errors':>7}  " \
                 "reasons"
        rows = [header, "-" * len(header)]
        for b in self.bundles:
            reasons = "; ".join([f"skip {n}x {r}" for r, n in sorted(b.skipped.items())]
                                + [f"error {n}x {r}" for r, n in sorted(b.errors.items())]
                                + [f"figure labels {n}x {r}"
                                   for r, n in sorted(b.figure_labels.items())])
            if b.resumed:
                reasons = "(published earlier) " + reasons
            rows.append(f"{b.name:<22} {b.grants:>7} {b.sheets:>7} "
                        f"{sum(b.skipped.values()):>8} {sum(b.errors.values()):>7}  {reasons}")
        rows.append(f"{'total':<22} {self.published:>7} {self.sheets:>7} "
                    f"{sum(self.skipped.values()):>8} "
                    f"{sum(sum(b.errors.values()) for b in self.bundles):>7}")
        return "\n".join(rows)


class PublishState:
    """Which sources a backfill has fully published (every event acknowledged) to one
    destination (bootstrap servers + topic), kept in a JSON file written atomically after
    each source. A source that changed since (size or modification time), or a destination
    not published to before, is published again. After a topic was recreated under the same
    name, run with ``--restart``."""

    def __init__(self, path: Path | None, destination: str = "") -> None:
        self.path, self.destination = path, destination
        self.destinations: dict[str, dict[str, dict]] = {}
        if path is not None and path.is_file():
            data = json.loads(path.read_text())
            if data.get("version") == STATE_VERSION:
                self.destinations = data.get("destinations", {})
        self.done = self.destinations.setdefault(destination, {})

    def finished(self, source: Path) -> BundleSummary | None:
        entry = self.done.get(str(source.resolve()))
        if entry is None or entry["fingerprint"] != _fingerprint(source):
            return None
        return BundleSummary(**{**entry["summary"], "resumed": True})

    def record(self, source: Path, summary: BundleSummary) -> None:
        if self.path is None:
            return
        self.done[str(source.resolve())] = {"fingerprint": _fingerprint(source),
                                            "summary": asdict(summary)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"version": STATE_VERSION,
                                         "destinations": self.destinations}, indent=1))
        os.replace(temporary, self.path)


def _fingerprint(source: Path) -> list[int]:
    stat = source.stat()
    return [stat.st_size, stat.st_mtime_ns]


class GrantPublisher:
    """Publish design grants from USPTO sources to the grants topic."""

    def __init__(self, producer: KafkaProducer, images: LocalImageStore, topic: str,
                 send_timeout_s: float = 60.0, progress: bool = True,
                 state: PublishState | None = None,
                 labeller: FigureLabeller | None = None) -> None:
        """``labeller``: reads the figure labels of sheets the XML leaves unmapped before
        the event is made (``PATENTCLIP_FIGURE_LABELS``); None: they stay unknown."""
        self.producer, self.images, self.topic = producer, images, topic
        self.send_timeout_s, self.progress = send_timeout_s, progress
        self.state = state or PublishState(None)
        self.labeller = labeller

    def publish(self, sources: Iterable[str | Path]) -> PublishSummary:
        """Publish every design grant in ``sources`` (folders of weekly bundles expand to
        their bundles, in date order); each source is flushed and checked before the next."""
        summary = PublishSummary()
        ordered = weekly_sources(sources)
        with tqdm(total=len(ordered), desc="publishing", unit="bundle",
                  disable=not self.progress) as bar:
            for source in ordered:
                bundle = self.state.finished(source) or self._publish_source(source, summary,
                                                                             bar)
                _add(summary, bundle)
                bar.update(1)
                bar.set_postfix(grants=summary.published, sheets=summary.sheets)
        return summary

    def _publish_source(self, source: Path, summary: PublishSummary, bar) -> BundleSummary:
        started = time.perf_counter()
        bundle = BundleSummary(name=source.name, date=bundle_date(source))
        reader = GrantReader()
        pending = []
        for document in reader.read(source):
            pending.append((document.grant.patent_number,
                            self._send(document, source.name, summary, bundle)))
            bar.set_postfix(bundle=source.name, grants=summary.published + len(pending),
                            refresh=False)
        self.producer.flush(timeout=self.send_timeout_s)
        for patent, future in pending:
            self._check_delivery(patent, future, summary, bundle)
        bundle.skipped = dict(reader.report.skipped)
        bundle.errors = reader.report.errors_by_reason()
        summary.failed.extend(reader.report.errors)
        bundle.seconds = round(time.perf_counter() - started, 3)
        if not bundle.undelivered:
            self.state.record(source, bundle)
        return bundle

    def _send(self, document: GrantDocument, bundle_name: str, summary: PublishSummary,
              bundle: BundleSummary):
        if self.labeller is not None:
            document = self.labeller.counted(document, bundle.figure_labels)
        grant = store_grant(self.images, document)
        if document.missing_images:  # text-only sources (ipg) expect none and list none
            summary.incomplete.append(
                f"{grant.source}: drawing files missing from the bundle "
                f"({', '.join(document.missing_images)}); published the other sheets")
        bundle.sheets += len(grant.sheets)
        event = encode_event(grant, bundle=bundle_name)
        return self.producer.send(self.topic, key=event_key(grant), value=event)

    def _check_delivery(self, patent: str, future, summary: PublishSummary,
                        bundle: BundleSummary) -> None:
        try:
            future.get(timeout=self.send_timeout_s)
            bundle.grants += 1
        except KafkaError as exc:
            bundle.undelivered += 1
            summary.failed.append(f"{patent}: not delivered to {self.topic}: {exc}")


def _add(summary: PublishSummary, bundle: BundleSummary) -> None:
    summary.bundles.append(bundle)
    summary.published += bundle.grants
    summary.sheets += bundle.sheets
    for reason, count in bundle.skipped.items():
        summary.skipped[reason] = summary.skipped.get(reason, 0) + count


def withdraw(producer: KafkaProducer, topic: str, patents: Iterable[str],
             timeout_s: float = 60.0) -> list[str]:
    """Publish a tombstone (null value, key = patent number) per patent: the embedder, and
    any reindex after it, deletes that patent's rows. Returns the patents acknowledged."""
    futures = [(patent, producer.send(topic, key=patent.encode("ascii"), value=None))
               for patent in patents]
    producer.flush(timeout=timeout_s)
    for _, future in futures:
        future.get(timeout=timeout_s)
    return [patent for patent, _ in futures]

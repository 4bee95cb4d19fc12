"""Grant publisher: USPTO bundle -> image store + one GrantEvent per patent on the topic.

``patentclip publish I20210105.tar`` reads design grants with the core reader, puts each
drawing sheet into the image store (the event carries its URI, not its bytes) and sends
one protobuf event per patent, keyed by patent number. Publishing the same week twice is
safe: the events are identical, and the embedder upserts by sheet key, so no vector is
duplicated downstream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaProducer
from kafka.errors import KafkaError
from tqdm import tqdm

from patentclip.events import encode_event, event_key
from patentclip.imagestore import LocalImageStore, store_grant
from patentclip.reader import GrantDocument, GrantReader

logger = logging.getLogger(__name__)


@dataclass
class PublishSummary:
    """What one publish run did; printed by the CLI."""

    published: int = 0
    sheets: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # published without some drawings

    def lines(self) -> list[str]:
        out = [f"published {self.published} grants ({self.sheets} drawing sheets)"]
        out += [f"skipped {n}: {reason}" for reason, n in sorted(self.skipped.items())]
        out += [f"incomplete: {text}" for text in self.incomplete]
        out += [f"failed: {text}" for text in self.failed]
        return out


class GrantPublisher:
    """Publish design grants from USPTO sources to the grants topic."""

    def __init__(self, producer: KafkaProducer, images: LocalImageStore, topic: str,
                 send_timeout_s: float = 60.0, progress: bool = True) -> None:
        self.producer, self.images, self.topic = producer, images, topic
        self.send_timeout_s, self.progress = send_timeout_s, progress

    def publish(self, sources: Iterable[str | Path]) -> PublishSummary:
        """Publish every design grant in ``sources``; waits until the broker acknowledged."""
        summary = PublishSummary()
        reader = GrantReader()
        pending = []
        with tqdm(desc="publishing", unit="grant", disable=not self.progress) as bar:
            for source in sources:
                bundle = Path(source).name
                for document in reader.read(source):
                    pending.append((document.grant.patent_number, self._send(document, bundle,
                                                                             summary)))
                    bar.update(1)
            self.producer.flush(timeout=self.send_timeout_s)
        for patent, future in pending:
            self._check_delivery(patent, future, summary)
        summary.skipped = dict(reader.report.skipped)
        summary.failed = list(reader.report.errors) + summary.failed
        return summary

    def _send(self, document: GrantDocument, bundle: str, summary: PublishSummary):
        grant = store_grant(self.images, document)
        if document.missing_images:  # text-only sources (ipg) expect none and list none
            summary.incomplete.append(
                f"{grant.source}: drawing files missing from the bundle "
                f"({', '.join(document.missing_images)}); published the other sheets")
        summary.sheets += len(grant.sheets)
        event = encode_event(grant, bundle=bundle)
        return self.producer.send(self.topic, key=event_key(grant), value=event)

    def _check_delivery(self, patent: str, future, summary: PublishSummary) -> None:
        try:
            future.get(timeout=self.send_timeout_s)
            summary.published += 1
        except KafkaError as exc:
            summary.failed.append(f"{patent}: not delivered to {self.topic}: {exc}")

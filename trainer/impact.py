"""The seed's test set (the IMPACT dataset's ``test2021.csv``) as a frozen evaluation set.

Each row is one 2021 design patent's front page (``filepath``, relative to the IMPACT image
folder), its LLaVA caption, title and USPC classes. The PatentCLIP paper's table (text ->
image R@1/5/10 on a 5k image-caption set) is the standard N x N protocol on such pairs; with
this loader, ``patentclip benchmark VERSION --impact CSV --impact-images DIR`` puts a user's
checkpoint beside the published rows on the same kind of set, and
``--reference-preprocessing`` prepares the images as open_clip's eval transform does.

Rows are validated once here: a patent number, a caption, a path inside the image folder;
a row that breaks a rule, or whose image is missing, is counted in the report with its
reason and left out (the rest is used). Labels are the USPC main class (``D13`` of
``D13108``): the set has no Locarno class.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from patentclip.errors import InvalidInputError
from patentclip.grants.model import is_patent_number
from trainer.data import EvalItem, EvalSet

COLUMNS = ("id", "title", "caption", "class_single", "filepath")
_DATE = re.compile(r"-(\d{8})-D\d{5}\.", re.ASCII)
_USPC_CLASS = re.compile(r"D\s*(\d{1,2})", re.ASCII)


@dataclass
class ImpactReport:
    rows: int = 0
    used: int = 0
    left_out: Counter = field(default_factory=Counter)  # reason -> rows


def load_impact(csv_path: str | Path, images_root: str | Path, name: str = "",
                limit: int = 0) -> tuple[EvalSet, ImpactReport]:
    """The CSV's rows (the first ``limit``, 0 = all) as an evaluation set named ``name``
    (default ``impact-<csv stem>``); each image is hashed, so the set is frozen."""
    root = Path(images_root).resolve()
    report, items = ImpactReport(), []
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = set(COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise InvalidInputError(f"{csv_path}: not the IMPACT test format (no column "
                                        f"{', '.join(sorted(missing))})")
            for row in reader:
                if limit and report.rows >= limit:
                    break
                report.rows += 1
                item, reason = _item(row, root)
                if item is None:
                    report.left_out[reason] += 1
                else:
                    items.append(item)
    except OSError as exc:
        raise InvalidInputError(f"{csv_path}: cannot read: {exc.strerror}") from exc
    if not items:
        raise InvalidInputError(f"{csv_path}: no usable row (left out: "
                                f"{dict(report.left_out) or 'none'})")
    report.used = len(items)
    dates = [i.grant_date for i in items]
    window = {"first_grant_date": min(dates), "last_grant_date": max(dates),
              "patents": len({i.patent for i in items}), "sheets": len(items)}
    counts = dict(Counter(i.label for i in items))
    return EvalSet(name or f"impact-{Path(csv_path).stem}",
                   datetime.now(UTC).isoformat(timespec="seconds"), tuple(items), counts,
                   window), report


def _item(row: dict, root: Path) -> tuple[EvalItem | None, str]:
    patent = (row.get("id") or "").strip()
    if not is_patent_number(patent):
        return None, "id is not a patent number"
    caption = " ".join((row.get("caption") or "").split())
    if not caption:
        return None, "no caption"
    relative = (row.get("filepath") or "").strip()
    path = (root / relative).resolve()
    if not relative or root not in path.parents:
        return None, "filepath outside the image folder"
    date = _DATE.search(path.name)
    if date is None:
        return None, "filepath is not a USPTO sheet name (USD...-YYYYMMDD-D00000.TIF)"
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None, "image missing"
    klass = _USPC_CLASS.match(row.get("class_single") or "")
    label = f"D{int(klass[1])}" if klass else "unclassified"
    return EvalItem(patent, 0, path.as_uri(), digest, caption, label, int(date[1]),
                    "front_page", " ".join((row.get("title") or "").split())), ""

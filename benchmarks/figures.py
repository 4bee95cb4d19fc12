"""``make bench-figures``: figure segmentation and label reading on every real shared grant.

    python -m benchmarks.figures --out reports/bench-figures

Each drawing sheet (the front page excepted) of the 50 real 2021 grants with drawings in
``../shared`` is segmented (``patentclip.drawings.figures``: ink clusters, "FIG. n" labels
read by Tesseract). Two groups:

* **Counts agree** (the reader maps sheet n to FIG. n): a sheet is read exactly when its
  labels are exactly [n], the figure the XML's mapping gives it.
* **Counts disagree** (several figures on a sheet; the reader gives every sheet "unknown"):
  no hand-made truth exists for which figure is on which sheet, so a sheet is read exactly
  when it reads at least one label, every label it reads is a figure the XML describes, and
  the grant's labels, sheet by sheet in order, are the XML's figure list exactly (each
  figure once, in order). A grant meets that or none of its sheets counts.

Reported: sheets, exact share with a 95% Wilson interval, grants entirely exact, seconds
per sheet. Writes ``figures.json``, ``figures.md``, ``figures.png`` (the machine named).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from harness import REPO
from harness.bench import write_report
from harness.gate_simulation import wilson
from harness.machine import machine, machine_line
from patentclip.drawings.figures import TesseractReader, segment
from patentclip.drawings.preprocess import DrawingPreprocessor
from patentclip.grants.model import SheetFigureMapping
from patentclip.grants.reader import GrantReader

SHARED = REPO.parent / "shared"


def grant_rows(document, reader, decoder) -> list[dict]:
    """One row per drawing sheet: what it reads and what the XML expects of it."""
    grant = document.grant
    agree = all(s.mapping is SheetFigureMapping.ONE_PER_SHEET for s in grant.sheets
                if not s.front_page)
    rows = []
    for sheet in grant.sheets:
        if sheet.front_page or sheet.file_name not in document.images:
            continue
        started = time.perf_counter()
        found = segment(decoder.decode(document.images[sheet.file_name]), reader)
        rows.append({"patent": grant.patent_number, "sheet": sheet.number, "agree": agree,
                     "read": found.numbers, "expected": list(sheet.figure_numbers),
                     "figures": len(found.figures),
                     "seconds": time.perf_counter() - started})
    described = [f.number for f in grant.figures]
    if agree:
        for row in rows:
            row["exact"] = row["read"] == row["expected"]
    else:
        sequence_ok = [n for row in rows for n in row["read"]] == described
        for row in rows:
            row["exact"] = sequence_ok and bool(row["read"])
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for name, agree in (("agree", True), ("disagree", False)):
        part = [r for r in rows if r["agree"] is agree]
        exact = sum(r["exact"] for r in part)
        grants = sorted({r["patent"] for r in part})
        whole = sum(all(r["exact"] for r in part if r["patent"] == g) for g in grants)
        out[name] = {"sheets": len(part), "exact": exact,
                     "share": exact / len(part) if part else 0.0,
                     "interval": list(wilson(exact, len(part))), "grants": len(grants),
                     "grants_exact": whole}
    out["seconds_per_sheet"] = sum(r["seconds"] for r in rows) / max(len(rows), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "reports" / "bench-figures")
    p.add_argument("--sources", type=Path, nargs="+",
                   default=[SHARED / "uspto-sample", SHARED / "uspto-sample-extra"])
    args = p.parse_args(argv)
    reader, decoder = TesseractReader(), DrawingPreprocessor(224)
    documents = [d for source in args.sources for d in GrantReader().read(source)]
    rows = [row for d in tqdm(documents, desc="grants", unit="grant")
            for row in grant_rows(d, reader, decoder)]
    result = {"machine": machine(), "summary": summary(rows), "sheets": rows}
    write_report(args.out, "figures", result, table,
                 lambda r, path: plot(r["summary"], path))
    return 0


def table(result: dict) -> str:
    s = result["summary"]
    lines = [f"Measured on {machine_line()}; Tesseract reads the labels.", "",
             "| grants whose counts | grants | sheets | read exactly | share [95% CI] | "
             "grants entirely exact |", "|---|---|---|---|---|---|"]
    for name in ("agree", "disagree"):
        g = s[name]
        low, high = g["interval"]
        lines.append(f"| {name} | {g['grants']} | {g['sheets']} | {g['exact']} | "
                     f"{g['share']:.3f} [{low:.3f}, {high:.3f}] | {g['grants_exact']} |")
    lines += ["", f"{s['seconds_per_sheet']:.2f} s per sheet (segmentation and OCR, one core).",
              "", "Sheets not read exactly:", "",
              "| patent | sheet | counts | read | expected |", "|---|---|---|---|---|"]
    for r in result["sheets"]:
        if not r["exact"]:
            lines.append(f"| {r['patent']} | {r['sheet']} | {'agree' if r['agree'] else 'disagree'}"
                         f" | {', '.join(r['read']) or '-'} | {', '.join(r['expected']) or '-'} |")
    return "\n".join(lines) + "\n"


def plot(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["agree", "disagree"]
    values = [s[n]["share"] for n in names]
    errors = [[v - s[n]["interval"][0] for n, v in zip(names, values, strict=True)],
              [s[n]["interval"][1] - v for n, v in zip(names, values, strict=True)]]
    fig, axis = plt.subplots(figsize=(5, 4))
    axis.bar([f"counts {n}\n({s[n]['sheets']} sheets)" for n in names], values, yerr=errors,
             capsize=4)
    axis.set_ylim(0, 1)
    axis.set_ylabel("sheets whose figures are read exactly")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())

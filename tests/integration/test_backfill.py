"""Backfill: a folder of weekly bundles published in date order through the real broker,
resumed from its state file, reported per bundle; and the reader's memory flat in bundle
size (benchmarks/backfill.py at small sizes, so the benchmark cannot rot)."""

from __future__ import annotations

import json
import subprocess
import sys

from harness import REPO
from harness.services import make_bundle, read_topic
from patentclip_cli.main import main


def test_a_folder_of_weeks_publishes_in_date_order_resumes_and_reports(
        tmp_path, kafka_settings, capsys):
    weeks = tmp_path / "bundles"
    for seed, day in ((1, "2021-01-19"), (2, "2021-01-05")):  # written out of date order
        make_bundle(weeks, patents=3, seed=seed, day=day)
    images = tmp_path / "images"
    broker = ["--bootstrap-servers", kafka_settings.bootstrap_servers, "--topic",
              kafka_settings.topic, "--images-dir", str(images), "--no-progress"]
    assert main(["publish", str(weeks), *broker]) == 0
    out = capsys.readouterr().out
    assert "I20210105.tar" in out and out.index("I20210105.tar") < out.index("I20210119.tar")
    report = json.loads((images / ".publish" / "report.json").read_text())
    assert [b["name"] for b in report["bundles"]] == ["I20210105.tar", "I20210119.tar"]
    assert all(b["grants"] == 3 and b["skipped"] == {"not a design grant (utility)": 1}
               for b in report["bundles"])

    # A later run (after a kill, or with a new week added) reads only what is not done.
    make_bundle(weeks, patents=2, seed=3, day="2021-01-12")
    assert main(["publish", str(weeks), *broker]) == 0
    out = capsys.readouterr().out
    assert "resumed: 2 bundles were published by an earlier run" in out
    report = json.loads((images / ".publish" / "report.json").read_text())
    assert [(b["name"], b["resumed"]) for b in report["bundles"]] == [
        ("I20210105.tar", True), ("I20210112.tar", False), ("I20210119.tar", True)]
    assert report["published"] == 8
    events = read_topic(kafka_settings, kafka_settings.topic, expected=8)
    assert len(events) == 8 and len({e.key for e in events}) == 8  # nothing published twice
    assert main(["publish", str(weeks), "--restart", *broker]) == 0
    assert "resumed" not in capsys.readouterr().out


def test_reader_peak_memory_does_not_grow_with_utility_padding(tmp_path):
    subprocess.run([sys.executable, "-m", "benchmarks.backfill", "--sizes-mb",
                    "8", "160", "--patents", "6", "--out", str(tmp_path)], check=True,
                   cwd=REPO, capture_output=True)
    result = json.loads((tmp_path / "backfill.json").read_text())
    small, large = result["runs"]
    assert small["grants"] == large["grants"] == 6 and large["errors"] == 0
    assert sum(large["skipped"].values()) > sum(small["skipped"].values())
    assert large["bundle_bytes"] > 15 * small["bundle_bytes"]
    # 160 MB of utility members were skipped, not read: the peak moves by far less than one
    assert large["peak_rss"] - small["peak_rss"] < 16 * 2**20
    assert (tmp_path / "backfill.md").is_file() and (tmp_path / "backfill.png").is_file()

"""The seed's test set: the real ../shared/impact-metadata/test2021.csv, with generated
stand-in images at the paths it lists (the IMPACT images are not shared)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from harness import SHARED

CSV = SHARED / "impact-metadata" / "test2021.csv"


@pytest.fixture(scope="module")
def impact(tmp_path_factory) -> Path:
    """Every row's front page as a small bilevel TIFF, one rectangle placed by the row."""
    if not CSV.is_file():
        pytest.skip(f"{CSV} is absent")
    root = tmp_path_factory.mktemp("impact")
    with open(CSV, newline="", encoding="utf-8") as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            path = root / row["filepath"]
            path.parent.mkdir(parents=True, exist_ok=True)
            image = Image.new("1", (48, 36), 1)
            x, y = i % 30, (i // 30) % 20
            ImageDraw.Draw(image).rectangle((x, y, x + 12, y + 10), outline=0)
            image.save(path, compression="group4")
    return root


def test_the_loader_reads_every_row_of_the_real_csv(impact):
    from trainer.impact import load_impact

    eval_set, report = load_impact(CSV, impact)
    assert report.rows == 5101 and report.used + sum(report.left_out.values()) == 5101
    assert report.used >= 5000, report.left_out
    first = eval_set.items[0]
    assert (first.patent, first.sheet, first.label, first.grant_date, first.title) == (
        "D0938909", 0, "D13", 20211221, "Wall charger")
    assert first.caption.startswith("The image is a square or rectangular shape")
    assert eval_set.name == "impact-test2021" and len(eval_set.sha256) == 64
    assert eval_set.window["first_grant_date"] >= 20210105
    assert eval_set.window["last_grant_date"] <= 20211231


def test_benchmark_puts_a_checkpoint_beside_the_published_rows_with_intervals(
        impact, tiny_model_dir, tmp_path, capsys, monkeypatch, caplog):
    """Reference preprocessing on the first 300 rows; a model whose window covers 2021 (as
    the hub PatentCLIP models' does) is refused unless the override is given, which is
    logged and recorded."""
    from patentclip_cli.main import main

    flags = ["--impact", str(CSV), "--impact-images", str(impact), "--limit", "300",
             "--registry-dir", str(tmp_path / "registry"), "--out", str(tmp_path / "out"),
             "--reference-preprocessing"]
    assert main(["benchmark", "hf-hub:hhshomee/PatentCLIP_ViT_L", *flags]) == 2
    assert "--allow-training-overlap" in capsys.readouterr().err  # refused before loading
    model = f"local-dir:{tiny_model_dir}"
    assert main(["benchmark", model, *flags]) == 0  # a local model: window unknown
    printed = capsys.readouterr().out
    assert "PatentCLIP ViT-L-14 (published) | standard | 5,000 pairs" in printed
    assert "95% bootstrap intervals over the pairs: T→I R@1 [" in printed
    results = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert results["items"] == 300 and "-reference-" in results["protocol"]
    low, high = results["standard_intervals"]["text_to_image_R@10"]
    assert low <= results["standard"]["text_to_image_R@10"] <= high
    monkeypatch.setenv("PATENTCLIP_TRAINER_OUTSIDE_TRAINED_THROUGH", "local-dir:=20221231")
    assert main(["benchmark", model, *flags]) == 2
    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        assert main(["benchmark", model, *flags, "--allow-training-overlap"]) == 0
    assert "inside its training window" in caplog.text
    results = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert "20221231" in results["training_window_overridden"]

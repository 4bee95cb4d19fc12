"""The soak of `make soak`, short: real broker, Milvus Lite server, embedder and query
service processes; mixed concurrent queries and two ingested weeks. It checks what a soak
must never show, whatever the machine: a failed request or a lost row. (Memory growth needs
the long run's warm-up; a 15-second run's figure is noise, so its limit is relaxed here and
the long run's figure is reported in docs/reliability.md.)"""

from __future__ import annotations

import json


def test_short_soak_fails_no_request_and_loses_no_row(tmp_path):
    from benchmarks.soak import main

    out = tmp_path / "soak"
    code = main(["--duration", "15", "--clients", "8", "--warmup", "4", "--sample-s", "1",
                 "--weeks", "2", "--patents-per-week", "6", "--max-rss-growth", "1.0",
                 "--out", str(out)])
    result = json.loads((out / "soak.json").read_text())
    assert code == 0, result
    query, ingest = result["query"], result["ingest"]
    assert query["failed"] == 0 and query["requests"] > 50
    assert {key.split(":")[0] for key in query["codes"]} == {"text", "image", "similar"}
    assert query["stopped_cleanly"]
    assert ingest["lost_rows"] == 0 and ingest["stored_rows"] == ingest["expected_rows"] > 0
    assert [w["week"] for w in ingest["weeks"]] == [1, 2]
    assert "| query soak |" in (out / "soak.md").read_text()
    assert (out / "soak.png").stat().st_size > 10_000

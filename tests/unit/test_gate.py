"""The rollout gate: paired bootstrap over patents, on simulated and hand-made per-query
results; and `patentclip gate compare` (exit codes 0 promote, 1 reject, 2 bad input)."""

from __future__ import annotations

import json

import pytest

from harness.gate_simulation import Scenario, promotion_rate, simulate
from patentclip.errors import InvalidInputError
from trainer.gate import RolloutGate, bootstrap_interval, pair

RUNS = 200  # per scenario: a rate's standard error is at most 3.5 points


@pytest.mark.parametrize("patents", [120, 650])
def test_with_no_true_difference_the_gate_promotes_at_most_5_percent(patents):
    rate = promotion_rate(Scenario(patents), RUNS, seed=1)
    assert rate["promoted"] <= 0.05, rate


def test_a_true_gain_of_002_on_650_patents_is_promoted_at_least_70_percent():
    rate = promotion_rate(Scenario(650, delta=0.02), RUNS, seed=2)
    assert rate["promoted"] >= 0.70, rate


@pytest.mark.parametrize("patents", [170, 650])  # a tail of about 30 and about 117 patents
def test_a_tail_regression_of_014_is_vetoed_in_most_runs(patents):
    """Better overall (+0.03) but 0.14 worse on the tail tercile."""
    rate = promotion_rate(Scenario(patents, delta=0.03, tail_delta=-0.14), 100, seed=3)
    assert rate["tail_vetoed"] >= 0.5 and rate["promoted"] <= 0.5, rate


def test_the_interval_is_seeded_and_resamples_patents_not_queries():
    candidate, live, _ = simulate(Scenario(80, delta=0.05), seed=5)
    outcomes = pair([candidate], [live], 10)
    assert len(outcomes.patents) == 80
    assert outcomes.queries.sum() == len(candidate["per_query"])
    first = bootstrap_interval(outcomes, 500, seed=7)
    assert bootstrap_interval(outcomes, 500, seed=7) == first
    diff, low, high = first
    assert low < diff < high


def _results(ranks: dict[tuple[str, str], int | None], name="week-20210119", sha="abc"
             ) -> dict:
    return {"eval_set": name, "eval_set_sha256": sha,
            "per_query": [{"query": q, "patent": p, "locarno": "09", "tercile": "head",
                           "relevant_rank": r} for (p, q), r in ranks.items()]}


def test_results_on_other_sets_or_queries_or_without_per_query_are_refused():
    base = {("D1", "a"): 1, ("D2", "b"): None}
    with pytest.raises(InvalidInputError, match="no live results on the same set"):
        pair([_results(base)], [_results(base, sha="other")], 10)
    with pytest.raises(InvalidInputError, match="1 queries are in one model's results only"):
        pair([_results(base)], [_results({("D1", "a"): 1})], 10)
    with pytest.raises(InvalidInputError, match="no per_query list"):
        RolloutGate().decide({"eval_set_sha256": "abc", "patent_aware": {}}, _results(base))
    with pytest.raises(InvalidInputError, match="relevant_rank 0"):
        pair([_results({("D1", "a"): 0})], [_results({("D1", "a"): 1})], 10)
    with pytest.raises(InvalidInputError, match="takes patent_aware.text_to_image_R@K"):
        RolloutGate(metric="prior_art.map").decide(_results(base), _results(base))


def test_pooled_weeks_pair_set_by_set():
    """Two weeks; live misses every query of the second: candidate - live = 40/80. The
    live results come in another order: pairing is by each set's sha256."""
    week1 = {(f"D{i}", "q"): 1 for i in range(40)}
    week2 = {(f"E{i}", "q"): 1 for i in range(40)}
    missed = dict.fromkeys(week2)
    verdict = RolloutGate(resamples=300).decide(
        [_results(week1, "w1", "s1"), _results(week2, "w2", "s2")],
        [_results(missed, "w2", "s2"), _results(week1, "w1", "s1")])
    assert verdict.summary["patents"] == 80 and verdict.summary["eval_sets"] == ["w1", "w2"]
    assert verdict.summary["difference"] == pytest.approx(0.5) and verdict.passed


def test_gate_compare_prints_the_decision_and_exits_0_1_or_2(tmp_path, capsys):
    from patentclip_cli.main import main as cli

    candidate, live, _ = simulate(Scenario(300, delta=0.15), seed=9)
    files = {}
    for name, body in (("cand", candidate), ("live", live)):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(body))
    args = ["gate", "compare", "--candidate", str(files["cand"]), "--live", str(files["live"])]
    assert cli([*args, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["decision"] == "promote" and shown["interval"][0] > 0
    assert shown["reasons"][1].startswith("lower bound")
    assert cli([*args, "--margin", "0.5"]) == 1
    assert "REJECT" in capsys.readouterr().out
    swapped = ["gate", "compare", "--candidate", str(files["live"]), "--live",
               str(files["cand"])]
    assert cli(swapped) == 1
    (tmp_path / "bad.json").write_text("{not json")
    assert cli(["gate", "compare", "--candidate", str(tmp_path / "bad.json"), "--live",
                str(files["live"])]) == 2
    assert "bad.json" in capsys.readouterr().err
    assert cli(["gate", "compare", "--candidate", str(tmp_path / "missing.json"), "--live",
                str(files["live"])]) == 2

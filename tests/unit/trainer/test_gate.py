"""The rollout gate: paired bootstrap over patents, on simulated and hand-made per-query
results; and `patentclip gate compare` (exit codes 0 promote, 1 reject, 2 bad input)."""

from __future__ import annotations

import json

import pytest

from harness.gate_simulation import Scenario, promotion_rate, simulate
from patentclip.errors import InvalidInputError
from trainer.benchmark import Protocol
from trainer.gate import RolloutGate, bootstrap_interval, pair

RUNS = 200  # per scenario: a rate's standard error is at most 3.5 points


@pytest.mark.parametrize("patents", [120, 650])
def test_with_no_true_difference_the_gate_promotes_at_most_5_percent(patents):
    rate = promotion_rate(Scenario(patents), RUNS, seed=1)
    assert rate["promoted"] <= 0.05, rate


def test_the_earlier_bootstrap_gate_promotes_a_gain_of_002_on_650_patents_70_percent():
    """The bootstrap statistic (still an option) at margin 0 keeps the earlier thresholds,
    with models that disagree on about 16% of queries (the simulation's default)."""
    gate = RolloutGate(resamples=1000, statistic="bootstrap_recall", margin=0)
    rate = promotion_rate(Scenario(650, delta=0.02), RUNS, gate, seed=2)
    assert rate["promoted"] >= 0.70 and rate["discordant_share"] < 0.18, rate


def test_the_default_gate_promotes_a_gain_of_002_on_four_pooled_weeks():
    """The default (sign-flip MRR, margin 0.005, 0.05 a year over 52 decisions) pays for
    its yearly control in power: +0.02 on 2,600 patents (four pooled weeks) is promoted in
    most runs (87% in 60 runs at 16% disagreement, 68% at 22%: trainer/README.md), one
    650-patent week only rarely (23%)."""
    rate = promotion_rate(Scenario(2600, delta=0.02), 40, RolloutGate(), seed=4)
    assert rate["promoted"] >= 0.70, rate


def test_over_a_year_of_null_decisions_the_default_gate_holds_its_yearly_level():
    """52 decisions a year with no true difference: a gate at 2.5% a decision promotes
    falsely in most years; the default splits 5% over the year's decisions."""
    from harness.gate_simulation import yearly_false_promotions

    per_decision = RolloutGate(resamples=200, margin=0, statistic="bootstrap_recall")
    old = yearly_false_promotions(40, 4, per_decision, seed=1)
    new = yearly_false_promotions(40, 4, RolloutGate(), seed=1)
    assert old["promoted"] >= 2 and old["per_year"] >= 0.5, old
    assert new["promoted"] == 0, new
    assert RolloutGate().alpha == pytest.approx(0.05 / 52)


def test_the_seed_by_patent_interval_carries_the_variance_between_training_seeds():
    """Two seeds that disagree completely (+1 on every query for one, -1 for the other):
    holding the seeds fixed gives a tight interval around 0; resampling them does not."""
    from trainer.gate import combine, seed_patent_interval

    hits = {(f"D{i}", "q"): 1 for i in range(30)}
    misses = dict.fromkeys(hits)
    up = pair([_results(hits)], [_results(misses)], 10)
    down = pair([_results(misses)], [_results(hits)], 10)
    _, fixed_low, fixed_high = bootstrap_interval(combine([up, down]), 500)
    diff, low, high = seed_patent_interval([up, down], 500)
    assert diff == 0 and fixed_high - fixed_low < 0.01
    assert low <= -0.9 and high >= 0.9


@pytest.mark.parametrize(("patents", "tail"), [(170, 30), (650, 30), (650, 0)])
def test_a_tail_regression_of_014_is_vetoed_in_most_runs(patents, tail):
    """Better overall (+0.03) but 0.14 worse on a tail tercile of exactly 30 patents (the
    smallest that may veto), or of its drawn size (about 117 of 650)."""
    rate = promotion_rate(Scenario(patents, delta=0.03, tail_delta=-0.14, tail_patents=tail),
                          100, seed=3)
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
    with pytest.raises(InvalidInputError, match=r"same protocol: abc \(bench1-pre1\)"):
        pair([{**_results(base), "protocol": "bench1-pre1"}],
             [{**_results(base), "protocol": "bench2-pre1"}], 10)  # a protocol changed
    with pytest.raises(InvalidInputError, match="1 queries are in one model's results only"):
        pair([_results(base)], [_results({("D1", "a"): 1})], 10)
    with pytest.raises(InvalidInputError, match="no per_query list"):
        RolloutGate().decide({"eval_set_sha256": "abc", "patent_aware": {}}, _results(base))
    with pytest.raises(InvalidInputError, match="relevant_rank 0"):
        pair([_results({("D1", "a"): 0})], [_results({("D1", "a"): 1})], 10)
    with pytest.raises(InvalidInputError, match="takes served.text_R@K"):
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
    assert shown["decision"] == "promote" and shown["p_value"] <= shown["alpha"]
    assert shown["reasons"][1].startswith("MRR@100 difference")
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


class _Store:
    """The two store calls a rollout makes, in memory (the real one: test_trainer.py)."""

    live_alias = "patents_live"

    def __init__(self, live):
        self.live, self.aliases = live, {}

    def live_info(self):
        return self.live

    def count(self, collection, modality=None):
        assert modality == "drawing"  # complete means every sheet, whatever the tiling
        return 10

    def set_alias(self, alias, collection):
        self.aliases[alias] = collection


def _week(name: str, day: int):
    from trainer.data import EvalItem, EvalSet

    items = tuple(EvalItem(f"D{day}{i}", 1, "file:///x", "0" * 64, f"c{i}", "06", day)
                  for i in range(3))
    return EvalSet(name, "2026-01-01T00:00:00+00:00", items, {"06": 3},
                   {"first_grant_date": day, "last_grant_date": day})


def test_rollout_refuses_eval_weeks_inside_a_training_window_and_pools_the_rest(tmp_path):
    """Candidate trained on grants to 2021-01-12; the live model is an outside PatentCLIP
    checkpoint trained through 2022. Weeks of 2021 are refused for both reasons, the first
    week of 2023 for the gap week after the live model's window; a later 2023 week is used;
    the decision records every refusal and the gate's figures."""
    from patentclip.model.registry import ModelRegistry
    from patentclip.store import CollectionInfo
    from trainer.rollout import Rollout

    source = tmp_path / "model"
    source.mkdir()
    (source / "open_clip_config.json").write_text("{}")
    (source / "open_clip_model.safetensors").write_bytes(b"weights")
    registry = ModelRegistry(tmp_path / "registry")
    candidate = registry.register(source, "ab" * 16, family="tiny", data={
        "first_grant_date": 20210105, "last_grant_date": 20210112})
    live = CollectionInfo("patents_live_model", "patentclip_vitl", 512, 10,
                          "hf-hub:hhshomee/PatentCLIP_ViT_L")
    sets = [_week("week-20210111", 20210112), _week("week-20221226", 20221227),
            _week("week-20230102", 20230103), _week("week-20230116", 20230117)]
    asked = []

    def benchmark(spec, pretrained, eval_set):
        asked.append((spec, eval_set.name))
        rank = 1 if spec.startswith("local-dir:") else None  # the candidate finds them all
        return {"eval_set": eval_set.name, "eval_set_sha256": eval_set.sha256,
                "protocol": Protocol().name,  # as run_benchmark stamps it
                "per_query": [{"query": i.caption, "patent": i.patent, "locarno": "06",
                               "tercile": "head", "relevant_rank": rank} for i in eval_set.items]}

    # Three patents: the bootstrap at margin 0 (the default sign-flip test cannot reach its
    # per-decision level below 11 patents: 2**-10 > 0.05 / 52).
    gate = RolloutGate(resamples=200, statistic="bootstrap_recall", margin=0)
    rollout = Rollout(registry, _Store(live), gate, sets, benchmark,
                      lambda version: "patents_candidate",
                      outside_windows=[("hf-hub:hhshomee/PatentCLIP", 20221231)])
    decision = rollout.promote(candidate.version)
    assert decision.eval_sets == ["week-20230116"]
    refused = [r for r in decision.reasons if "refused" in r]
    assert len(refused) == 3
    assert "candidate" in refused[0] and "live" in refused[0]  # 2021: both windows
    assert "candidate" not in refused[1] and "20221231" in refused[1]
    assert "week-20230102" in refused[2] and "20221231" in refused[2]  # the gap week
    assert {name for _, name in asked} == {"week-20230116"}
    assert decision.decision == "promoted" and decision.gate["patents"] == 3
    # Stored under the set's content hash: a second rollout benchmarks nothing again.
    asked.clear()
    Rollout(registry, _Store(live), gate, sets, benchmark,
            lambda version: "patents_candidate",
            outside_windows=[("hf-hub:hhshomee/PatentCLIP", 20221231)]).promote(
                candidate.version)
    assert asked == []


def test_a_candidates_training_window_is_its_whole_lineages(tmp_path):
    """A candidate trained on one new week (and a replay sample) has still seen what its
    parent saw, and the parent what the outside checkpoint it started from saw."""
    from patentclip.model.registry import ModelRegistry
    from trainer.rollout import Rollout

    registry = ModelRegistry(tmp_path / "registry")

    def register(name, digest, **kw):
        source = tmp_path / name
        source.mkdir()
        (source / "open_clip_config.json").write_text("{}")
        (source / "open_clip_model.safetensors").write_bytes(name.encode())
        return registry.register(source, digest * 32, family="tiny", **kw)

    parent = register("parent", "a", data={"first_grant_date": 20230103,
                                           "last_grant_date": 20230307},
                      hyperparameters={"base_model": "hf-hub:hhshomee/PatentCLIP_ViT_L"})
    child = register("child", "b", parent=parent.version,
                     data={"first_grant_date": 20230103, "last_grant_date": 20230110},
                     hyperparameters={"base_model": parent.spec})
    rollout = Rollout(registry, None, outside_windows=[("hf-hub:hhshomee/PatentCLIP",
                                                        20221231)])
    window = rollout.window(child.version, child.spec)
    assert (window.first, window.last) == (None, 20230307)  # the outside one is unbounded
    assert window.overlaps(_week("week-20230313", 20230314))  # the gap week after it
    assert not window.overlaps(_week("week-20230320", 20230321))


def test_the_sign_flip_test_is_exact_on_a_hand_example():
    """Three patents, one query each; candidate - live reciprocal ranks +1/2, +1/2, -1/4
    (mean +0.25). Of the 8 sign vectors, two reach a sum of at least the observed +0.75:
    the observed one and the one that flips the third. With margin 0.25 the differences
    are +1/4, +1/4, -1/2 (sum 0), and 5 of the 8 sums are at least 0."""
    from trainer.gate import sign_flip_test

    outcomes = pair([_results({("D1", "a"): 1, ("D2", "b"): 2, ("D3", "c"): 4})],
                    [_results({("D1", "a"): 2, ("D2", "b"): None, ("D3", "c"): 2})], 10)
    diff, p = sign_flip_test(outcomes)
    assert diff == pytest.approx(0.25) and p == pytest.approx(2 / 8)
    assert sign_flip_test(outcomes, margin=0.25) == (pytest.approx(0.25), pytest.approx(5 / 8))
    verdict = RolloutGate(statistic="sign_flip_rr").decide(
        _results({("D1", "a"): 1, ("D2", "b"): 2, ("D3", "c"): 4}),
        _results({("D1", "a"): 2, ("D2", "b"): None, ("D3", "c"): 2}))
    assert verdict.summary["p_value"] == pytest.approx(2 / 8) and not verdict.passed
    assert "sign-flip p = 0.25000 over 3 patents (exact;" in verdict.reasons[1]


@pytest.mark.parametrize("patents", [6, 12])
def test_at_few_patents_the_sign_flip_gate_holds_its_level_where_the_bootstrap_does_not(
        patents):
    """No true difference: the bootstrap's lower bound promotes more often than its 2.5%
    (3.8% in 1,000 runs at 6 and 12 patents); the exact sign-flip test never does (0.0%
    and 0.3%). 300 runs here: both rates' standard error is about 1 point."""
    runs = 300
    flip = promotion_rate(Scenario(patents), runs, gate=RolloutGate(
        statistic="sign_flip_rr", resamples=200, min_tercile_patents=10 ** 6), seed=11)
    assert flip["promoted"] <= 0.025, flip


def test_a_candidate_better_on_words_but_worse_on_drawings_is_vetoed_by_the_guard():
    """Text -> patent: the candidate finds all 40 patents, live none. Drawing -> patent:
    the candidate loses its first rank on every query (1 -> 2, MRR -0.5): not shown within
    0.02 of live, vetoed. With the drawings equal, the guard shows non-inferiority and the
    candidate is promoted; without drawing results on either side the line says so."""
    text = {(f"D{i}", "q"): 1 for i in range(40)}
    sheets = {(f"D{i}", f"sheet {s}"): 1 for i in range(40) for s in (1, 2)}

    def results(text_ranks, drawing_ranks):
        body = _results(text_ranks)
        if drawing_ranks is not None:
            body["per_query_drawing"] = _results(drawing_ranks)["per_query"]
        return body

    worse = RolloutGate().decide(results(text, dict.fromkeys(sheets, 2)),
                                 results(dict.fromkeys(text), sheets))
    assert not worse.passed and worse.summary["drawing_guard"]["passed"] is False
    assert any("vetoed" in r and "drawing -> patent" in r for r in worse.reasons)
    same = RolloutGate().decide(results(text, sheets), results(dict.fromkeys(text), sheets))
    assert same.passed and same.summary["drawing_guard"]["mrr_difference"] == 0
    skipped = RolloutGate().decide(results(text, None), results(dict.fromkeys(text), None))
    assert skipped.passed and "not applied" in skipped.reasons[2]


def test_the_gate_can_pair_examiner_cited_prior_art_instead():
    """per_query_cited (trainer/cited.py): one record per query grant and way of asking."""
    def results(rank):
        rows = [{"query": mode, "patent": f"D{i}", "relevant_rank": rank}
                for i in range(40) for mode in ("drawing", "text", "both")]
        return {"eval_set": "w", "eval_set_sha256": "s", "per_query_cited": rows,
                "per_query": []}

    gate = RolloutGate(per_query="per_query_cited", metric="cited_R@10")
    verdict = gate.decide(results(1), results(None))
    assert verdict.passed and verdict.summary["queries"] == 120
    with pytest.raises(InvalidInputError, match="no per_query_cited list"):
        gate.decide({"eval_set_sha256": "s", "per_query": []}, results(None))

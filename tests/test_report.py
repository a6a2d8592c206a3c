"The verdict engine (robbook.report): intervals, parts, claims of four kinds, coverage, records."
import json

import numpy as np
import pytest

from robbook import report
from robbook.report import Claim, Part, TrainingCheck, bootstrap_interval, coverage, gap, judge, level


def _bits(p, n, seed):
    return (np.random.default_rng(seed).random(n) < p).astype(float)


def test_a_null_effect_on_few_examples_is_inconclusive():
    # 200 replications: the true difference is 0, so the interval must straddle a bound of 0.02 nearly always
    verdicts = [gap("null", _bits(0.5, 50, s), _bits(0.5, 50, 1000 + s), direction="increase", min_effect=0.02).verdict
                for s in range(40)]
    assert verdicts.count("reproduced") <= 3, verdicts      # ≤ 2.5% one-sided per draw: 1 expected in 40
    assert verdicts.count("inconclusive") >= 30


def test_a_clear_effect_is_reproduced_and_an_opposite_one_is_not():
    hi, lo = _bits(0.8, 1000, 1), _bits(0.5, 1000, 2)      # 30 points apart: > 10 standard errors
    assert gap("clear", hi, lo, direction="increase", min_effect=0.02).verdict == "reproduced"
    assert gap("opposite", lo, hi, direction="increase", min_effect=0.02).verdict == "not reproduced"
    assert gap("clear drop", lo, hi, direction="decrease", min_effect=0.02).verdict == "reproduced"


def test_an_effect_below_the_minimal_effect_is_not_reproduced():
    # a gap of under half a point on 20,000 paired examples (200 flipped outcomes): the interval is about
    # ±0.14 points wide, far below a claimed 5-point gain
    a = _bits(0.7, 20_000, 3)
    b = a.copy(); flip = np.random.default_rng(4).choice(20_000, 200, replace=False); b[flip] = 1 - b[flip]
    part = gap("small", a, b, direction="increase", min_effect=0.05)
    assert 0 < part.estimate < 0.02 and part.verdict == "not reproduced", part


def test_judge_rules_and_missing_interval():
    assert judge(0.03, 0.05, ">", 0.02) == "reproduced"
    assert judge(0.01, 0.05, ">", 0.02) == "inconclusive"
    assert judge(-0.05, 0.01, ">", 0.02) == "not reproduced"
    assert judge(-0.05, -0.03, "<", -0.02) == "reproduced"
    assert judge(float("nan"), float("nan"), ">", 0.0) == "inconclusive"
    with pytest.raises(ValueError, match="op"):
        judge(0, 1, ">=", 0)


def test_paired_bootstrap_matches_the_normal_approximation_and_is_narrower_than_unpaired():
    a = _bits(0.7, 3000, 5)
    b = np.where(np.random.default_rng(6).random(3000) < 0.85, a, 1 - a)
    diff = lambda x, y: x.mean() - y.mean()
    _, lo, hi = bootstrap_interval(diff, a, b)
    se = np.std(a - b, ddof=1) / np.sqrt(len(a))
    assert abs((hi - lo) / (2 * 1.96 * se) - 1) < 0.1
    _, ulo, uhi = bootstrap_interval(diff, a, b, paired=False)
    assert (uhi - ulo) > 1.5 * (hi - lo)        # correlated errors: pairing removes most of the variance


def test_seeds_widen_the_interval_when_seeds_disagree():
    rng = np.random.default_rng(7)
    same = np.stack([_bits(0.7, 500, 8)] * 4)
    spread = np.stack([(rng.random(500) < p).astype(float) for p in (0.55, 0.65, 0.75, 0.85)])
    p_same = level("acc", same, at_least=0.5)
    p_spread = level("acc", spread, at_least=0.5)
    assert p_same.seeds == 4 and p_same.n == 500
    assert (p_spread.hi - p_spread.lo) > 2 * (p_same.hi - p_same.lo)


def test_samples_are_checked():
    with pytest.raises(ValueError, match="share"):
        gap("x", np.ones(10), np.ones(11), direction="increase")
    with pytest.raises(ValueError, match="non-finite"):
        level("x", [1.0, float("nan")], at_least=0.5)
    with pytest.raises(ValueError, match="direction"):
        gap("x", np.ones(5), np.ones(5), direction="up")
    with pytest.raises(ValueError, match="exactly one"):
        level("x", np.ones(5))


def _part(verdict):
    return {"reproduced": Part("p", 0.1, 0.05, 0.15, ">", 0.0, 100),
            "inconclusive": Part("p", 0.1, -0.05, 0.15, ">", 0.0, 100),
            "not reproduced": Part("p", -0.1, -0.15, -0.05, ">", 0.0, 100)}[verdict]


@pytest.mark.parametrize("parts, verdict, k", [
    (["reproduced", "reproduced"], "reproduced", "2 of 2 parts reproduced"),
    (["reproduced", "inconclusive"], "inconclusive", "1 of 2 parts reproduced"),
    (["reproduced", "not reproduced", "reproduced"], "not reproduced", "2 of 3 parts reproduced"),
])
def test_a_multi_part_claim_counts_its_parts_and_never_falls_back_to_partly(parts, verdict, k):
    c = Claim("c", "p", parts=[_part(v) for v in parts], ref="x")
    assert c.verdict == verdict and c.parts_reproduced == k


def test_premise_not_run_and_theory():
    assert Claim("c", "p", parts=[_part("reproduced")], ref="x", premise="model did not train").verdict == "inconclusive"
    assert Claim("c", "p", ref="x", not_run="needs CIFAR-100").verdict == "not run here"
    assert Claim("t", "p", kind="theory", ok=True).verdict == "reproduced"
    assert Claim("t", "p", kind="theory", ok=False).verdict == "not reproduced"
    with pytest.raises(ValueError, match="only theory"):
        Claim("c", "p", ok=True, ref="x")
    with pytest.raises(ValueError, match="ref="):
        Claim("c", "p", parts=[_part("reproduced")])
    with pytest.raises(ValueError, match="kind"):
        Claim("c", "p", kind="empirical", parts=[_part("reproduced")])
    with pytest.raises(TypeError, match="Part"):
        Claim("c", "p", parts=[0.3], ref="x")


def test_coverage_counts_and_demands_a_row_per_main_claim():
    paper = {"a": "claim a", "b": "claim b", "c": "claim c"}
    cs = [Claim("a1", "p", parts=[_part("reproduced")], ref="a"), Claim("a2", "p", ref="a", not_run="x"),
          Claim("b1", "p", ref="b", not_run="needs ImageNet"), Claim("c1", "p", parts=[_part("inconclusive")], ref="c"),
          Claim("t", "p", kind="theory", ok=True), Claim("z", "p", kind="control", parts=[_part("reproduced")])]
    cov = coverage(cs, paper)
    assert cov["main claims"] == 3 and cov["run here"] == 2 and cov["not run here"] == ["b"]
    t = report.tally(cs)
    assert t["paper"]["reproduced"] == 1 and t["paper"]["not run here"] == 2 and t["theory"]["reproduced"] == 1
    assert t["control"]["reproduced"] == 1 and "beyond" not in t
    with pytest.raises(ValueError, match="no row"):
        coverage(cs, {**paper, "d": "claim d"})
    with pytest.raises(ValueError, match="does not have"):
        coverage(cs, {"a": "", "c": ""})


def test_training_check_flags_under_trained_and_failed_models():
    ok = TrainingCheck("CNN", "FMNIST", clean=0.90, known=0.91, source="s")
    short = TrainingCheck("CNN", "FMNIST", clean=0.80, known=0.91, source="s")
    failed = TrainingCheck("CNN", "FMNIST", clean=0.15, known=0.91, source="s")
    assert ok.premise is None and "under-trained" in short.premise and "did not train" in failed.premise
    assert list(report.training_table([ok, short])["trained well"]) == ["yes", "CNN is under-trained"]


def test_results_are_json_and_the_table_shows_intervals_and_anchors():
    cs = [Claim("x < y holds", "1", parts=[gap("d", _bits(0.8, 300, 1), _bits(0.5, 300, 2), direction="increase")],
                ref="a", ours={"extra": 0.123456}),
          Claim("b", "2", kind="beyond", not_run="data absent")]
    res = report.claims_results(cs, {"a": "claim a"}, stand_ins={"MNIST": "Fashion-MNIST"},
                                training=[TrainingCheck("CNN", "FMNIST", 0.9, 0.91, "s")])
    back = json.loads(json.dumps(res))
    assert back["claims"][0]["verdict"] == "reproduced" and back["claims"][0]["parts"][0]["verdict"] == "reproduced"
    assert back["claims"][0]["n"] == 300 and back["coverage"]["run here"] == 1 and back["stand_ins"]["MNIST"]
    html = report.claims_table(cs, "smoke", {"a": "claim a"}).to_html()
    assert 'id="claim-1"' in html and 'id="claim-2"' in html and "x &lt; y holds" in html
    assert "0.123" in html and "0.123456" not in html and "n = 300" in html


def test_claims_paper_column_keeps_number_groups_together():
    "The claims' paper column wraps between number groups, never inside one ('92.1 → 7 / 0.1', '63.3 %')."
    from robbook.report import _glue_numbers
    assert _glue_numbers("92.1 → 7 / 0.1") == "92.1\u00a0→\u00a07\u00a0/\u00a00.1"
    assert _glue_numbers("63.3 % (chance 10 %)") == "63.3\u00a0% (chance 10\u00a0%)"
    assert _glue_numbers("at ε = 0.25 vs 4.5 %") == "at ε =\u00a00.25 vs 4.5\u00a0%"

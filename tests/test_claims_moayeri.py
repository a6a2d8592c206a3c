"""robbook.claims.moayeri: the Moayeri et al. claims decided on a run's measurements. Synthetic runs whose effects are
known: a background gap that AT clearly raises is reproduced; "larger for ℓ2" is inconclusive when ℓ2 AT raised
nothing; a model that did not train makes its rows inconclusive; every claim of the paper has a row."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from robbook.claims.moayeri import (PAPER_CLAIMS, SUITE_NEEDS, BackgroundRun, ColourCueRun, MoayeriTheory,
                                    background_claims, colour_cue_claims, moayeri_claims, theory_claims)
from robbook.report import TrainingCheck, claims_results

N = 600


def _bits(rate, seed):
    return (np.random.default_rng(seed).random(N) < rate).astype(float)


def _cfg(**kw):
    base = dict(bg_strengths=[1.0], bg_eps_l2=[1.0], bg_eps_linf=[4.0], bg_kind="stripes", bg_model="kamath_stdcnn",
                cs_rhos=[1.0, 9.0], cs_attack_eps=[0.0, 4.0], cs_dataset="fashion_mnist", cs_model="kamath_stdcnn",
                profile="smoke")
    return SimpleNamespace(**{**base, **kw})


def _model(same, rand, seed):
    return {"original": _bits(0.85, seed), "mixed_same": _bits(same, seed + 1), "mixed_rand": _bits(rand, seed + 2),
            "groups": _bits(0.8, seed + 3)}


def _backgrounds(l2_gap, checks=()):
    "Standard and ℓ∞ models with a background gap of 0.1; the ℓ2 model's gap is `l2_gap`."
    correct = {(1.0, "standard", 0.0): _model(0.8, 0.7, 0), (1.0, "linf", 4.0): _model(0.8, 0.7, 10),
               (1.0, "l2", 1.0): _model(0.5 + l2_gap / 2, 0.5 - l2_gap / 2, 20)}
    table = pd.DataFrame({"strength": [1.0, 1.0, 1.0], "norm": ["standard", "l2", "linf"],
                          "Δ bg_gap": [0.0, l2_gap - 0.1, 0.0], "Δ group_gap": [0.0, 0.0, 0.0]})
    return BackgroundRun(_cfg(), correct, {1.0: _bits(0.5, 99)}, {1.0: {"ratio_linf": 0.6}}, table, list(checks))


def test_a_clear_rise_of_the_background_gap_is_reproduced():
    rows = background_claims(_backgrounds(l2_gap=0.5))
    fig7 = next(r for r in rows if r.ref == "fig7")
    assert fig7.verdict == "reproduced" and fig7.parts[0].estimate == pytest.approx(0.4, abs=0.08)
    assert next(r for r in rows if r.ref == "gap_vs_eps").verdict == "not run here"     # one budget per norm


def test_larger_for_l2_presupposes_a_rise():
    rows = background_claims(_backgrounds(l2_gap=-0.2))
    assert next(r for r in rows if r.ref == "fig7").verdict == "not reproduced"
    cmp = next(r for r in rows if r.ref == "l2_vs_linf")
    assert cmp.verdict == "inconclusive" and "presupposes that ℓ2 AT raises the gaps" in cmp.premise


def test_a_model_that_did_not_train_makes_the_rows_inconclusive():
    bad = TrainingCheck("kamath_stdcnn, ℓ2 ε=1 AT", "objects on backgrounds, strength 1", 0.15, 0.9, "known")
    rows = background_claims(_backgrounds(l2_gap=0.5, checks=[bad]))
    assert {r.verdict for r in rows if r.parts} == {"inconclusive"} and "did not train" in rows[0].premise


def test_colour_cue_row_asks_the_robust_gain_to_exceed_the_clean_gain():
    cs = {1.0: {0.0: _bits(0.80, 1), 4.0: _bits(0.30, 2)}, 9.0: {0.0: _bits(0.82, 3), 4.0: _bits(0.60, 4)}}
    (row,) = colour_cue_claims(_cfg(), ColourCueRun(cs, [], "APGD-CE, APGD-T"))
    assert row.ref == "fig9" and [p.verdict for p in row.parts][1:] == ["reproduced", "reproduced"]


def _theory(**kw):
    base = dict(thm1=pd.DataFrame({"z (delta*)": [0.5], "z (PGD)": [-1.0], "max rel. gap PGD vs eq. (3)": [1e-3]}),
                convex_bad={"l2": 0}, solver_check=pd.DataFrame({"L(cvxpy) - L(scipy)": [1e-9]}),
                nfs_monotone={"l1": True, "l2": True}, nfs_max={"l1": 0.3, "l2": 0.2}, eta_order={"l1": 0.0, "l2": 0.0},
                linf_small=0.0, linf_large=0.8, rise={"l2 eta=0.5 eps=1": (0.3, 0.1)}, theta_opt="(1,1,0,0,0)",
                etas=[0.25], etas_fig3=[0.5], scales=[1.0, 2.0], mc_samples=1000)
    return MoayeriTheory(**{**base, **kw})


def test_theory_rows_fail_where_their_check_fails():
    assert {r.verdict for r in theory_claims(_theory())} == {"reproduced"}
    rows = theory_claims(_theory(convex_bad={"l2": 3}, linf_small=0.01))
    assert [r.verdict for r in rows] == ["reproduced", "not reproduced", "reproduced", "reproduced", "reproduced",
                                         "not reproduced", "reproduced"]


def test_every_claim_of_the_paper_has_a_row():
    cs = {r: {e: _bits(0.5, int(r + e)) for e in (0.0, 4.0)} for r in (1.0, 9.0)}
    have = {k: False for need in SUITE_NEEDS.values() for k in need}
    rows = moayeri_claims(_cfg(), _theory(), ColourCueRun(cs, [], "x"), _backgrounds(0.3), pd.DataFrame(), have)
    cov = claims_results(rows, PAPER_CLAIMS)["coverage"]
    assert cov["with a row"] == cov["main claims"] == len(PAPER_CLAIMS)
    assert all(r.verdict == "not run here" and "suite_dir" in r.not_run for r in rows if r.claim.endswith("on the paper's data"))

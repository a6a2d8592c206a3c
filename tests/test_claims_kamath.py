"""robbook.claims.kamath: the Kamath et al. claims decided on a run's per-image measurements. Synthetic runs whose
effects are known: a large effect in the paper's direction is reproduced, the reverse is not, a model that did not
train makes the row inconclusive, and a run without models lists every claim of the paper as not run."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from robbook.claims.kamath import (PAPER_CLAIMS, KamathRun, KamathTheory, augmentation_claims, beyond_claims,
                                   kamath_claims, model_label, theory_claims)
from robbook.report import claims_results

N, EPS = 400, 0.1


def _cfg(**kw):
    base = dict(slots=["mnist"], mnist_data="fashion_mnist", cifar10_std_arch="vgg16", trades_beta=6.0, rob_steps=10,
                aug_r_thetas=[0.0, 180.0], inv_thetas=[0.0, 30.0, 60.0], sp_random_k=10, sp_n_angles=5, sp_n_trans=5,
                toy_p=0.9, profile="smoke")
    return SimpleNamespace(**{**base, **kw})


def _bits(rate, seed):
    return np.random.default_rng(seed).random(N) < rate


def _model(invariant, robust, seed):
    "Measurements of one model: rotation invariance about `invariant`, robust among correct about `robust`."
    correct = _bits(0.9, seed)
    return {"clean": float(correct.mean()), "pgd_eps": [0.0, EPS],
            "ex": {"rotation_same": np.stack([np.ones(N, bool), _bits(invariant, seed + 1), _bits(invariant, seed + 2)]),
                   f"robust_clean@{EPS:g}": correct, f"robust@{EPS:g}": correct & _bits(robust, seed + 3)}}


def _run(lo, hi, premise=None):
    slots = {"mnist": {"data": "fashion_mnist", "archs": {"std": ("kamath_stdcnn", {})}, "aug_eval_eps": EPS,
                       "eval_eps": EPS, "fig14_eps": EPS}}
    results = {("mnist", "Aug-R", "std", 0.0): _model(*lo, seed=0), ("mnist", "Aug-R", "std", 180.0): _model(*hi, seed=10)}
    return KamathRun(_cfg(), slots, results, premise or {}, {"mnist": N})


@pytest.mark.parametrize("lo, hi, verdict", [((0.5, 0.6), (0.9, 0.2), "reproduced"),
                                             ((0.9, 0.2), (0.5, 0.6), "not reproduced")])
def test_augmentation_rows_follow_the_effect(lo, hi, verdict):
    rows = augmentation_claims(_run(lo, hi), "mnist")
    (row,) = [r for r in rows if r.parts]                # Aug-R on the StdCNN; the rest are not run in this run
    assert row.verdict == verdict and row.ref == "fig6_mnist_aug" and "θ = 180°" in row.claim
    assert {r.verdict for r in rows if not r.parts} == {"not run here"}


def test_a_model_that_did_not_train_makes_the_row_inconclusive():
    run = _run((0.5, 0.6), (0.9, 0.2), premise={("mnist", "Aug-R", "std", 180.0): "clean accuracy 12 %"})
    (row,) = [r for r in augmentation_claims(run, "mnist") if r.parts]
    assert row.verdict == "inconclusive" and "12 %" in row.premise


def test_a_run_without_models_lists_every_claim_as_not_run():
    run = KamathRun(_cfg(aug_r_thetas=[0.0], inv_thetas=[0.0]), {"mnist": {"data": "fashion_mnist", "archs": {"std": ("kamath_stdcnn", {})},
                    "aug_eval_eps": EPS, "eval_eps": EPS, "fig14_eps": EPS}}, {}, {}, {"mnist": N})
    thm2 = pd.DataFrame({"eta": [0.2], "lower holds": [True], "upper holds": [True]})
    theory = KamathTheory(pd.DataFrame({"exact": [0.98], "Monte Carlo": [0.981]}),
                          pd.DataFrame({"exact": [0.6], "Monte Carlo": [0.61]}), thm2, thm2,
                          code=np.array([1, -1, 1, 1, -1, -1, 1, -1.0]), p=0.5, p_max=0.9, n_mc=10_000)
    rows = kamath_claims(run, theory)
    cov = claims_results(rows, PAPER_CLAIMS)["coverage"]
    assert cov["with a row"] == cov["main claims"] == len(PAPER_CLAIMS) and cov["run here"] == 0
    assert [r.verdict for r in rows if r.kind == "theory"] == ["reproduced", "reproduced", "reproduced", "not reproduced"]
    assert beyond_claims(run, "mnist") == []


def test_theory_rows_fail_when_a_bound_is_violated():
    ok = pd.DataFrame({"eta": [0.2, 0.3], "lower holds": [True, True], "upper holds": [True, True]})
    bad = ok.assign(**{"upper holds": [True, False]})
    args = (pd.DataFrame({"exact": [0.98], "Monte Carlo": [0.98]}), pd.DataFrame({"exact": [0.6], "Monte Carlo": [0.6]}))
    kw = dict(code=np.array([1, -1, 1, 1, -1, -1, 1, -1.0]), p=0.5, p_max=0.9, n_mc=10_000)
    rows = theory_claims(KamathTheory(*args, ok, bad, **kw), toy_p=0.9)
    assert [r.verdict for r in rows[1:3]] == ["reproduced", "not reproduced"] and "3 of 4" in rows[2].ours


def test_model_labels():
    assert [model_label(("s", f, "std", v)) for f, v in (("Aug-R", 0.0), ("Aug-R", 30.0), ("PGD", 0.1), ("Aug-T+PGD", 0.25))] \
        == ["plain (0)", "θ = 30°", "PGD ε = 0.1", "i = 0.25 + PGD"]

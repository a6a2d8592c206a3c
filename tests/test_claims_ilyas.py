"""robbook.claims.ilyas: the Ilyas et al. claims decided on a run's per-image results. A synthetic run whose effects
are known: D̂_R models that are clearly more robust reproduce the Sec. 3.1 row and the reverse does not; a failed premise
makes rows inconclusive; every claim of the paper has a row; the transfer correlation is the Pearson r of the rates."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from robbook.claims.ilyas import (PAPER_CLAIMS, IlyasRun, IlyasTheory, ilyas_claims, robust_dataset_claims,
                                  theory_claims, transfer_correlation)
from robbook.report import claims_results

N, E = 500, 0.25


def _bits(rate, seed):
    return (np.random.default_rng(seed).random(N) < rate).astype(float)


def _run(robust_rate=0.5, premise_31=None):
    cfg = SimpleNamespace(dataset="fashion_mnist", model="kamath_stdcnn", source_model="kamath_stdcnn", eval_version="fast",
                          eval_queries=300, l2_scale=None, target_success=None, n_inv_noise=100, inv_noise_steps=50,
                          d2_steps=[20, 100], transfer_models=["a", "b", "c"], profile="smoke")
    acc = lambda clean, rob, s: {"clean": _bits(clean, s), E: _bits(rob, s + 1)}
    t7 = {"standard training": acc(0.9, 0.05, 0), "D̂_R (images)": acc(0.7, robust_rate, 10),
          "D̂_NR (images)": acc(0.8, 0.02, 20), "D̂_R (noise)": acc(0.6, 0.4, 30), "D̂_NR (noise)": acc(0.4, 0.01, 40)}
    other = {"D": acc(0.9, 0.05, 50), "D̂_R": acc(0.7, 0.45, 60), "D̂_NR": acc(0.8, 0.02, 70)}
    adv = {(s, k): _bits(r, i) for i, (s, k, r) in enumerate([("standard", "rand", 0.6), ("standard", "det", 0.4),
                                                            ("robust", "rand", 0.2), ("robust", "det", 0.05)])}
    tgt = {(s, k): _bits(r, 100 + i) for i, (s, k, r) in enumerate([("standard", "det", 0.15), ("robust", "det", 0.6)])}
    return IlyasRun(cfg, 10, [E], scale_pixel_rule=1.0, eps_pgd=0.5, eps_pgd_pixel_rule=0.5, success_pixel_rule=0.9,
                    success_det=0.95, success={("robust", "det"): _bits(0.2, 200)}, n_robust_test=N, n_inverted=1000,
                    premise_standard=None, premise_31=premise_31, premise_32=None, premise_robust_source=None,
                    table7=t7, other_arch="mnist_cnn", other=other, strong={"PGD-20": _bits(0.5, 300)},
                    strong_worst=_bits(0.49, 300), strong_weakest=_bits(0.5, 300), strong_steps=100, strong_eps=E,
                    table8={"D̂_R training set": _bits(0.8, 400), "D̂_R test set": _bits(0.6, 401),
                            "standard test set": _bits(0.45, 402)},
                    adv_correct=adv, adv_target=tgt, leak={"rand": _bits(0.2, 500), "det": _bits(0.1, 501)},
                    leak_share=0.2, fooled=_bits(0.9, 600), transfer={a: _bits(r, 610 + i) for i, (a, r) in
                                                                       enumerate(zip("abc", (0.3, 0.5, 0.7)))},
                    transfer_acc={a: _bits(r, 620 + i) for i, (a, r) in enumerate(zip("abc", (0.2, 0.4, 0.6)))},
                    transfer_rows=[{"transfer rate": 0.3, "accuracy on D (trained on D̂_det)": 0.2}] * 3,
                    bugs={"held-out t (bug)": _bits(0.1, 700), "held-out t (D̂_det)": _bits(0.5, 701), "test": _bits(0.1, 702)},
                    pattern_train_det=_bits(0.99, 800), patterns={"rand": _bits(0.1, 801), "det": _bits(0.1, 802)},
                    released={}, released_paper={}, rimagenet=None)


def _theory():
    ok = pd.DataFrame({"a": [0], "b": [0], "c": [0], "d": [0], "rel true": [0.01], "rel sample": [1e-6], "|μ − μ*|": [0.01]})
    s2 = np.diag([1.0, 4.0])
    from robbook.theory.ilyas import worst_case_alignment
    return IlyasTheory(pd.DataFrame({"z": [0.5, -1.2]}), 0.01, np.array([0.5, 0.5]), 1.0, 2, ok,
                       worst_case_alignment(s2), worst_case_alignment(np.eye(6)), s2, np.eye(6), True, 1000, 1000)


@pytest.mark.parametrize("rate, verdict", [(0.5, "reproduced"), (0.03, "not reproduced")])
def test_robust_dataset_row_follows_the_effect(rate, verdict):
    row = robust_dataset_claims(_run(robust_rate=rate))[0]
    assert row.ref == "robust_dataset" and row.verdict == verdict


def test_a_failed_premise_makes_the_rows_inconclusive():
    rows = robust_dataset_claims(_run(premise_31="the standard model is not brittle"))
    assert {r.verdict for r in rows} == {"inconclusive"} and all("not brittle" in r.premise for r in rows)


def test_every_claim_of_the_paper_has_a_row():
    rows = ilyas_claims(_run(), _theory())
    cov = claims_results(rows, PAPER_CLAIMS)["coverage"]
    assert cov["with a row"] == cov["main claims"] == len(PAPER_CLAIMS)
    assert [r.verdict for r in rows if r.kind == "theory"] == ["reproduced"] * 5
    assert {r.verdict for r in rows if r.ref in ("rimagenet_table1", "rimagenet_fig12")} == {"not run here"}


def test_theory_rows_fail_where_their_check_fails():
    t = _theory()
    t.thm1 = pd.DataFrame({"z": [5.0]})
    t.align_monotone = False
    assert [r.verdict for r in theory_claims(t)] == ["not reproduced", "reproduced", "reproduced", "reproduced",
                                                     "not reproduced"]


def test_transfer_correlation_is_pearson_r_of_the_rates():
    fooled = np.ones(4)
    cols = [np.array([1, 0, 0, 0.0]), np.array([1, 1, 0, 0.0]), np.array([1, 1, 1, 0.0])]
    acc = [np.array([0.1]), np.array([0.3]), np.array([0.2])]
    assert transfer_correlation(fooled, *cols, *acc) == pytest.approx(np.corrcoef([0.25, 0.5, 0.75], [0.1, 0.3, 0.2])[0, 1])

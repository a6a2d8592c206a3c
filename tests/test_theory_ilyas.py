"""Tests of robbook.theory.ilyas: the Gaussian model of Ilyas et al. (2019), Section 4 / Appendix E.
Theorem 1 (closed form vs Monte Carlo with a numerical inner maximisation; isotropic minimiser), Theorem 2
(closed form vs adversarial training on samples; the budget <-> lambda map), Theorem 3 (vs brute force)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.optimize import minimize

from robbook.theory.ilyas import (adversarial_training, adversary_matrix, alignment, lagrangian_perturbation,
                                  linear_accuracy, robust_budget, robust_covariance, robust_lambda, robust_parameters,
                                  sample, vulnerability, worst_case_alignment)


def _rand_spd(d, seed, lo=0.05, hi=3.0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (Q * np.exp(rng.uniform(np.log(lo), np.log(hi), d))) @ Q.T


# ---- sample -----------------------------------------------------------------------------------------
def test_sample_distribution_and_seeding():
    mu, S = np.array([1.0, -2.0, 0.5]), _rand_spd(3, 0)
    X, y = sample(100_000, mu, S, seed=3)
    assert X.shape == (100_000, 3) and y.dtype.kind == "i" and set(np.unique(y)) == {-1, 1}
    assert abs((y == 1).mean() - 0.5) < 0.01
    Z = y[:, None] * X
    assert np.allclose(Z.mean(0), mu, atol=0.03)
    assert np.allclose(np.cov(Z.T), S, atol=0.05)
    assert np.array_equal(sample(50, mu, S, seed=1)[0], sample(50, mu, S, seed=1)[0])
    assert not np.array_equal(sample(50, mu, S, seed=1)[0], sample(50, mu, S, seed=2)[0])


@pytest.mark.parametrize("args,match", [((10, [1.0, 2.0], np.eye(3)), "mu has 2"), ((0, [1.0], np.eye(1)), "n must"),
                                        ((5, [1.0, 1.0], np.diag([1.0, -1.0])), "positive definite"),
                                        ((5, [1.0, 1.0], [[1.0, 0.5], [0.0, 1.0]]), "symmetric")])
def test_sample_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        sample(*args)


# ---- Theorem 1 --------------------------------------------------------------------------------------
def _numeric_max(V, S, C, steps=4000):
    "Maximise 1/2 (v+d)' S^-1 (v+d) - C/2 |d|^2 per row by gradient ascent (independent of the closed form)."
    P = np.linalg.inv(S)
    lr = 1.0 / (C - np.linalg.eigvalsh(P).min())
    D = np.zeros_like(V)
    for _ in range(steps):
        D += lr * ((V + D) @ P - C * D)
    return D


@pytest.mark.parametrize("d,c_units,seed", [(2, 2.0, 0), (4, 1.3, 1), (8, 5.0, 2)])
def test_vulnerability_matches_monte_carlo_with_numerical_adversary(d, c_units, seed):
    S = _rand_spd(d, seed)
    C = c_units / np.linalg.eigvalsh(S).min()
    X, y = sample(5000, np.ones(d), S, seed=seed)
    V = y[:, None] * X - 1.0
    D = _numeric_max(V, S, C)
    assert np.allclose(D, lagrangian_perturbation(V, S, C), atol=1e-6)       # the maximiser of Lemma 1
    P = np.linalg.inv(S)
    gain = np.einsum("ni,ij,nj->n", V + D, P, V + D) - np.einsum("ni,ij,nj->n", V, P, V)
    z = (gain.mean() - vulnerability(S, C)) / (gain.std(ddof=1) / np.sqrt(len(gain)))
    assert abs(z) < 4.5


def test_vulnerability_depends_only_on_the_spectrum_and_vanishes_for_large_C():
    S = _rand_spd(5, 7)
    w = np.linalg.eigvalsh(S)
    C = 3 / w.min()
    assert np.isclose(vulnerability(S, C), vulnerability(np.diag(w), C))
    assert np.isclose(vulnerability(S, C), np.sum((C * w / (C * w - 1)) ** 2) - 5)
    assert vulnerability(S, 1e9) < 1e-6
    assert vulnerability(S, 1.5 / w.min()) > vulnerability(S, 3 / w.min())


def test_vulnerability_error_names_the_condition():
    with pytest.raises(ValueError, match=r"C \* Sigma_star - I positive definite"):
        vulnerability(np.diag([1.0, 0.1]), 10.0)        # C sigma_min = 1 exactly: not allowed
    with pytest.raises(ValueError, match="C > 1 / sigma_min"):
        vulnerability(np.diag([1.0, 0.1]), 2.0)
    with pytest.raises(ValueError, match="positive definite"):
        vulnerability(np.diag([1.0, -0.1]), 2.0)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8), st.floats(1.2, 10.0), st.integers(0, 10_000))
def test_fixed_trace_vulnerability_is_minimised_by_a_multiple_of_identity(d, c, seed):
    k = float(d)
    C = c                                               # isotropic eigenvalue 1 > 1/C
    lo = 1 / C + 1e-3
    s = lo + np.random.default_rng(seed).dirichlet(np.ones(d)) * (k - d * lo)
    assert vulnerability(np.diag(s), C) >= vulnerability(np.eye(d) * k / d, C) - 1e-9


def test_constrained_optimiser_finds_the_isotropic_covariance():
    d, k, C = 5, 5.0, 2.0
    f = lambda s: vulnerability(np.diag(s), C)
    x0 = np.array([0.6, 0.7, 1.0, 1.2, 1.5])
    r = minimize(f, x0, method="SLSQP", bounds=[(1 / C + 1e-6, None)] * d,
                 constraints=[{"type": "eq", "fun": lambda s: s.sum() - k}])
    assert np.allclose(r.x, k / d, atol=1e-3)


# ---- Theorem 2 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [0.01, 0.3, 1.0, 7.0])
def test_robust_covariance_is_stationary_and_meets_the_budget(eps):
    S = _rand_spd(4, 3)
    lam = robust_lambda(S, eps)
    Sr = robust_covariance(S, lam)
    M = adversary_matrix(Sr, lam)
    I = np.eye(4)
    assert np.allclose(Sr, S @ (I + M) @ (I + M), atol=1e-9 * max(1, np.abs(Sr).max()))   # eq. (25)
    assert np.linalg.eigvalsh(M).min() > 0                                                 # the M >= 0 branch
    assert np.isclose(np.sqrt(np.trace(S @ M @ M)), eps, rtol=1e-9)                        # E|Mv|^2 = eps^2
    assert np.isclose(robust_budget(S, lam), eps, rtol=1e-9)


def test_robust_lambda_is_decreasing_with_the_derived_asymptotes():
    S = np.diag([2.0, 0.5, 0.05])
    eps = np.logspace(-3, 3, 25)
    lams = np.array([robust_lambda(S, e) for e in eps])
    assert np.all(np.diff(lams) < 0)
    assert np.isclose(lams[0] * eps[0], np.sqrt(np.sum(1 / np.diag(S))), rtol=0.02)     # small eps: sqrt(tr S^-1)/eps
    assert np.isclose(lams[-1] * eps[-1] ** 2, 3, rtol=0.02)                            # large eps: d / eps^2
    assert robust_lambda(S, 0.0) == np.inf and np.allclose(robust_covariance(S, np.inf), S)
    with pytest.raises(ValueError, match="eps"):
        robust_lambda(S, -1.0)
    with pytest.raises(ValueError, match="lam"):
        robust_covariance(S, -2.0)


def test_robust_covariance_blends_with_identity():
    S = np.diag([1.0, 0.01])
    prev = np.inf
    for e in [0.1, 0.5, 2.0, 10.0, 100.0]:
        _, Sr, lam = robust_parameters([1.0, 0.1], S, e)
        assert np.all(np.diag(Sr) > np.diag(S))             # every direction gets extra variance
        k = np.diag(Sr).max() / np.diag(Sr).min()
        assert k < prev                                      # ...and the covariance becomes rounder
        prev = k
    assert prev < 1.2


@pytest.mark.parametrize("d,eps,seed", [(2, 0.4, 0), (2, 1.5, 1), (10, 0.3, 2), (10, 2.0, 3)])
def test_adversarial_training_on_samples_converges_to_the_closed_form(d, eps, seed):
    rng = np.random.default_rng(seed)
    s = np.exp(rng.uniform(np.log(0.05), np.log(2.0), d))
    mu_star = rng.standard_normal(d)
    X, y = sample(20_000, mu_star, np.diag(s), seed=seed)
    mu, Sig, hist = adversarial_training(X, y, eps, steps=2000, lr=0.1, mu0=np.zeros(d), sigma0=np.ones(d))
    Z = y[:, None] * X
    s_hat = ((Z - mu) ** 2).mean(0)
    exact_sample = np.diag(robust_covariance(np.diag(s_hat), robust_lambda(np.diag(s_hat), eps)))
    exact_true = np.diag(robust_covariance(np.diag(s), robust_lambda(np.diag(s), eps)))
    assert hist[-1] < 1e-8
    assert np.allclose(np.diag(Sig), exact_sample, rtol=1e-6)
    assert np.allclose(np.diag(Sig), exact_true, rtol=0.05)
    assert np.allclose(mu, Z.mean(0), atol=1e-8) and np.linalg.norm(mu - mu_star) < 0.1
    # the learned adversary meets the empirical budget
    V = Z - mu
    lam = robust_lambda(np.diag(s_hat), eps)
    M = 1 / (lam * np.diag(Sig) - 1)
    assert np.isclose(np.mean(np.sum((M * V) ** 2, 1)), eps ** 2, rtol=1e-6)


def test_adversarial_training_rejects_eps_zero():
    X, y = sample(100, [1.0], [[1.0]], seed=0)
    with pytest.raises(ValueError, match="eps"):
        adversarial_training(X, y, 0.0)


# ---- Theorem 3 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_worst_case_alignment_matches_brute_force_in_2d(seed):
    S = _rand_spd(2, seed, lo=0.02)
    a = np.linspace(0, np.pi, 400_001)
    U = np.stack([np.cos(a), np.sin(a)], 1)
    W = U @ np.linalg.inv(S)
    brute = np.min(np.sum(U * W, 1) / np.linalg.norm(W, axis=1))
    assert np.isclose(brute, worst_case_alignment(S), atol=1e-8)
    assert np.isclose(alignment(U[17], S), np.sum(U[17] * W[17]) / np.linalg.norm(W[17]))


def test_worst_case_alignment_matches_search_in_6d():
    S = _rand_spd(6, 5, lo=0.01)
    rng = np.random.default_rng(0)
    R = rng.standard_normal((200_000, 6))
    W = R @ np.linalg.inv(S)
    vals = np.sum(R * W, 1) / (np.linalg.norm(R, axis=1) * np.linalg.norm(W, axis=1))
    assert vals.min() >= worst_case_alignment(S) - 1e-12
    found = minimize(lambda u: alignment(u, S), R[np.argmin(vals)], method="Nelder-Mead",
                     options=dict(xatol=1e-9, fatol=1e-12, maxiter=6000)).fun
    assert found >= worst_case_alignment(S) - 1e-9
    assert np.isclose(found, worst_case_alignment(S), atol=1e-4)
    w, V = np.linalg.eigh(S)                                      # the known minimiser
    u = V[:, 0] * np.sqrt(w[0]) + V[:, -1] * np.sqrt(w[-1])
    assert np.isclose(alignment(u, S), worst_case_alignment(S), atol=1e-10)


def test_robust_covariance_aligns_better_as_eps_grows():
    for S in [np.diag([1.0, 0.01]), _rand_spd(10, 4, lo=0.01)]:
        vals = [worst_case_alignment(robust_parameters(np.zeros(len(S)), S, e)[1]) for e in [0, 0.01, 0.1, 1, 10, 100]]
        assert np.all(np.diff(vals) > 0) and vals[0] == worst_case_alignment(S)


# ---- exact accuracies of linear classifiers ---------------------------------------------------------
def test_linear_accuracy_matches_an_attacked_monte_carlo():
    mu, S = np.array([1.0, 0.2]), np.diag([1.0, 0.04])
    X, y = sample(200_000, mu, S, seed=1)
    for w in [np.linalg.solve(S, mu), np.array([1.0, 0.3])]:
        for eps in [0.0, 0.1, 0.4]:
            Xa = X - eps * y[:, None] * w / np.linalg.norm(w)        # the worst l2 perturbation of a linear rule
            mc = np.mean(np.sign(Xa @ w) == y)
            assert abs(mc - linear_accuracy(w, mu, S, eps)) < 0.005


def test_robust_parameters_rejects_mismatched_shapes():
    from robbook.theory.ilyas import robust_parameters
    with pytest.raises(ValueError, match=r"same d; got shapes \(3,\) and \(5, 5\)"):
        robust_parameters(np.ones(3), np.eye(5), 0.5)
    with pytest.raises(ValueError, match="vector"):
        robust_parameters(np.ones((3, 1)), np.eye(3), 0.5)


def test_exact_solvers_name_the_book_extra_without_cvxpy(monkeypatch):
    "cvxpy is a book-only dependency: without it the exact solvers say which extra to install."
    import sys
    from robbook.theory import moayeri, tsipras
    monkeypatch.setitem(sys.modules, "cvxpy", None)       # import cvxpy now raises ImportError
    with pytest.raises(ImportError, match=r"robbook\[book\]"):
        tsipras.fit_svm(np.ones((4, 2)), np.array([1, -1, 1, -1]))
    monkeypatch.setattr(moayeri, "_PROBLEMS", {})
    with pytest.raises(ImportError, match=r"robbook\[book\]"):
        moayeri._problem(3, 2.0, None)

"""robbook.theory.moayeri: Theorem 1 of Moayeri, Banihashem & Feizi (2022) (closed form of the
adversarial loss of linear regression) against Monte Carlo with an attack, convexity, the cvxpy
minimiser against a generic one, the toy problem of eq. (4) and NFS (eq. (5))."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from robbook.theory import moayeri as T

T_OPT = np.array([1.0, 1.0, 0.0, 0.0, 0.0])


def _problem(seed):
    rng = np.random.default_rng(seed)
    Q = np.eye(5) + 0.3 * rng.standard_normal((5, 5))
    return rng, Q, Q @ Q.T


@pytest.mark.parametrize("p", [1, 2, np.inf])
@pytest.mark.parametrize("eps", [0.0, 0.3, 1.0])
def test_closed_form_matches_monte_carlo(p, eps):
    "eq. (2) equals E[max_delta (Y - <X + delta, theta>)^2] estimated with the worst-case delta of eq. (3)."
    rng, Q, S = _problem(1)
    for _ in range(2):
        theta = rng.standard_normal(5)
        closed = T.adversarial_loss(theta, S, T_OPT, 0.1, p, eps)
        mc, se = T.monte_carlo_adversarial_loss(theta, Q, T_OPT, 0.1, p, eps, n=200_000, seed=3)
        assert abs(mc - closed) < 4.5 * se, (mc, closed, se)


@pytest.mark.parametrize("p", [1, 2, np.inf])
def test_closed_form_matches_attack(p):
    "Projected gradient ascent on each sample finds the worst case of eq. (3), and never beats it."
    rng, Q, S = _problem(2)
    theta, eps = rng.standard_normal(5), 0.5
    X, Y = T.sample_regression(3000, Q, T_OPT, 0.1, seed=5)
    best = (np.abs(Y - X @ theta) + eps * np.linalg.norm(theta, T.dual_exponent(p))) ** 2
    delta = T.pgd_linear(X, Y, theta, p, eps)
    assert np.all(np.linalg.norm(delta, ord=p, axis=1) <= eps * (1 + 1e-9))
    found = (Y - (X + delta) @ theta) ** 2
    assert np.all(found <= best * (1 + 1e-9))
    assert np.max((best - found) / best) < 1e-2
    # the MC estimate of eq. (1) with the attack agrees with eq. (2)
    mc, se = T.monte_carlo_adversarial_loss(theta, Q, T_OPT, 0.1, p, eps, n=40_000, method="pgd", seed=9)
    assert abs(mc - T.adversarial_loss(theta, S, T_OPT, 0.1, p, eps)) < 4.5 * se
    # the worst-case delta of the derivation is feasible and attains eq. (3)
    d = T.worst_case_delta(Y - X @ theta, theta, p, eps)
    assert np.allclose(np.linalg.norm(d, ord=p, axis=1), eps)
    assert np.allclose((Y - (X + d) @ theta) ** 2, best)


def test_closed_form_is_not_the_standard_loss():
    "A check that can fail: with eps > 0 the adversarial loss exceeds the standard loss by a known amount."
    _, Q, S = _problem(0)
    theta = np.array([0.5, 0.2, -0.1, 0.0, 0.3])
    s = T.sigma_theta(theta, S, T_OPT, 0.1)
    for p, q in [(1, np.inf), (2, 2), (np.inf, 1)]:
        tq = np.linalg.norm(theta, q)
        expect = s ** 2 + 2 * T.C1 * 0.4 * tq * s + 0.16 * tq ** 2
        assert T.adversarial_loss(theta, S, T_OPT, 0.1, p, 0.4) == pytest.approx(expect, rel=1e-12)
    assert T.adversarial_loss(theta, S, T_OPT, 0.1, 2, 0.0) == pytest.approx(T.standard_loss(theta, S, T_OPT, 0.1))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([1, 2, np.inf]), st.floats(0.0, 3.0), st.floats(0.0, 1.0))
def test_convexity(seed, p, eps, t):
    "L(t a + (1 - t) b) <= t L(a) + (1 - t) L(b) on random segments (Theorem 1: convex in theta)."
    rng, _, S = _problem(seed)
    a, b = 2 * rng.standard_normal((2, 5))
    f = lambda th: T.adversarial_loss(th, S, T_OPT, 0.1, p, eps)
    assert f(t * a + (1 - t) * b) <= t * f(a) + (1 - t) * f(b) + 1e-9 * (1 + abs(f(a)) + abs(f(b)))


def test_convexity_check_can_fail():
    "The same chord test rejects a non-convex function (so the test above has teeth)."
    f = lambda th: -float(th @ th)
    a, b = np.ones(5), -np.ones(5)
    assert f(0.5 * a + 0.5 * b) > 0.5 * f(a) + 0.5 * f(b)


@pytest.mark.parametrize("p", [1, 2, np.inf])
@pytest.mark.parametrize("seed", [0, 1])
def test_cvxpy_matches_generic_minimiser(p, seed):
    rng = np.random.default_rng(seed)
    Q = np.eye(5) + 0.4 * rng.standard_normal((5, 5))
    S, t_opt, eps = Q @ Q.T, rng.standard_normal(5), float(rng.uniform(0.1, 1.5))
    a = T.robust_parameters(S, t_opt, 0.1, p, eps)
    b = T.robust_parameters_scipy(S, t_opt, 0.1, p, eps)
    fa, fb = (T.adversarial_loss(x, S, t_opt, 0.1, p, eps) for x in (a, b))
    assert fa <= fb + 1e-6 * fb
    assert np.abs(a - b).max() < 2e-3
    # and it is a minimiser: random nearby points are no better
    for _ in range(20):
        assert T.adversarial_loss(a + 1e-3 * rng.standard_normal(5), S, t_opt, 0.1, p, eps) >= fa - 1e-9


def test_robust_parameters_limits_and_support():
    Q = T.mixing_matrix(0.5)
    S = Q @ Q.T
    # eps = 0: the minimiser of the standard loss is theta_opt (Sigma is full rank)
    assert np.allclose(T.robust_parameters(S, T_OPT, 0.1, 2, 0.0), T_OPT, atol=1e-5)
    # a support mask keeps the other coordinates at zero, and costs (weakly) more loss
    core = T.robust_parameters(S, T_OPT, 0.1, 2, 1.0, support=[1, 1, 0, 0, 0])
    total = T.robust_parameters(S, T_OPT, 0.1, 2, 1.0)
    assert np.all(core[2:] == 0) and np.any(np.abs(total[2:]) > 1e-3)
    assert T.adversarial_loss(total, S, T_OPT, 0.1, 2, 1.0) <= T.adversarial_loss(core, S, T_OPT, 0.1, 2, 1.0)
    # a huge budget collapses the robust model to 0
    assert np.linalg.norm(T.robust_parameters(S, T_OPT, 0.1, 2, 10.0)) < 1e-4


def test_mixing_matrix():
    for eta in (0.0, 0.25, 1.0):
        Q = T.mixing_matrix(eta)
        assert Q.shape == (5, 5)
        assert np.allclose(np.linalg.norm(Q, axis=1), 1.0)
        # Q is Q~ with rows rescaled: the direction of each row is unchanged
        Qt = np.array([[1, .5, 0, 0, 0], [.5, 1, 0, 0, 0], [eta, eta, 1, 0, 0], [eta, eta, 0, 1, 0],
                       [eta, eta, 0, 0, 1]])
        assert np.allclose(Q * np.linalg.norm(Qt, axis=1, keepdims=True), Qt)
    Q3 = T.mixing_matrix(0.5, spurious_scale=3.0)
    assert np.allclose(np.linalg.norm(Q3, axis=1), [1, 1, 3, 3, 3])
    assert np.allclose(Q3[:2], T.mixing_matrix(0.5)[:2]) and np.allclose(Q3[2:], 3 * T.mixing_matrix(0.5)[2:])
    # explicit value: row 3 of eta = 0.5 is (0.5, 0.5, 1, 0, 0) / sqrt(1.5)
    assert np.allclose(T.mixing_matrix(0.5)[2], np.array([0.5, 0.5, 1, 0, 0]) / np.sqrt(1.5))


def test_nfs_hand_made():
    assert T.nfs([1, 1, 0, 0, 0]) == 0.0
    assert T.nfs([0, 0, 1, 0, 2]) == 1.0
    assert T.nfs([1, 1, 1, 1, 1]) == pytest.approx(0.6)
    assert T.nfs([3, 0, 0, 4, 0]) == pytest.approx(16 / 25)
    assert T.nfs([1, 2, 2], n_core=1) == pytest.approx(8 / 9)
    assert np.isnan(T.nfs(np.zeros(5)))


def test_paper_qualitative_results():
    "Figs. 2-3 on the toy problem: l2 training moves weight to spurious features, linf only at scale > 1."
    nf = lambda p, eta, s, eps: T.robust_nfs(eta, s, T_OPT, 0.1, p, eps)
    assert nf(2, 0.5, 1.0, 0.0) < 1e-6
    assert nf(2, 0.5, 1.0, 1.5) > nf(2, 0.5, 1.0, 1.0) > nf(2, 0.5, 1.0, 0.5) > 0
    assert nf(1, 1.0, 1.0, 1.5) == pytest.approx(0.6, abs=1e-3)     # the l1 plateau: all weights equal
    assert max(nf(np.inf, 0.5, 1.0, e) for e in (0.25, 0.5, 0.75, 1.0)) < 1e-3
    assert nf(np.inf, 0.5, 3.0, 1.0) > 0.5
    assert np.isnan(nf(2, 0.5, 1.0, 10.0))                          # collapsed: NFS undefined
    # theta_opt orthogonal to the spurious direction: never any spurious weight
    for e in (0.1, 0.2, 0.3):
        assert T.robust_nfs(1.0, 1.0, [1, -1, 0, 0, 0], 0.1, 2, e) < 1e-6


def test_shift_losses():
    Q = T.mixing_matrix(0.25)
    S = Q @ Q.T
    core = T.robust_parameters(S, T_OPT, 0.1, 2, 1.5, support=[1, 1, 0, 0, 0])
    total = T.robust_parameters(S, T_OPT, 0.1, 2, 1.5)
    r = T.shifted_losses({"core": core, "total": total}, Q, T_OPT, 0.1, [0.0, 0.5, 1.0], n_draws=400, seed=0)
    assert np.allclose(r["core"], r["core"][0])                       # the shift does not touch core features
    assert r["total"][2] > r["total"][1] > r["total"][0]
    for i, sq in enumerate([0.0, 0.5, 1.0]):
        exact = T.expected_shifted_standard_loss(total, Q, T_OPT, 0.1, sq)
        assert r["total"][i] == pytest.approx(exact, rel=0.05)
    # the shift only touches the spurious rows
    Qs = T.shift_mixing(Q, 1.0, np.random.default_rng(0))
    assert np.allclose(Qs[:2], Q[:2]) and not np.allclose(Qs[2:], Q[2:])


def test_norm_parsing():
    assert T.norm_p("linf") == np.inf and T.norm_p("l2") == 2.0 and T.norm_p(1) == 1.0
    assert T.dual_exponent(1) == np.inf and T.dual_exponent("linf") == 1.0
    with pytest.raises(ValueError):
        T.norm_p(3)
    with pytest.raises(ValueError):
        T.norm_p("l7")

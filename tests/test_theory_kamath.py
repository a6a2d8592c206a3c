"Tests of robbook.theory.kamath: Kamath et al., Sec. 3 (Proposition 1, Theorem 2)."
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from robbook.theory import kamath as K

C64 = K.cyclic_code(64, seed=0)


def brute_distances(c, m=1):
    d = len(c)
    return np.array([int(np.sum(c != np.roll(c, -m * j))) for j in range(1, d // m)])


# ---- sample and cyclic_shift -------------------------------------------------------------------
def test_sample_shapes_and_laws():
    X, y = K.sample(200_000, C64, 0.7, seed=1)
    assert X.shape == (200_000, 65) and y.dtype == np.int64
    assert set(np.unique(y)) == {-1, 1}
    assert abs(np.mean(X[:, 0] == y) - 0.7) < 0.005
    # y c_t x_t has mean 2/sqrt(d) and variance 1 for every t
    z = y[:, None] * C64[None, :] * X[:, 1:]
    assert np.allclose(z.mean(0), 2 / 8, atol=0.015)
    assert np.allclose(z.std(0), 1.0, atol=0.01)


def test_sample_reproducible_and_errors():
    a, b = K.sample(10, C64, 0.6, seed=3), K.sample(10, C64, 0.6, seed=3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="p must be"):
        K.sample(10, C64, 0.4)
    with pytest.raises(ValueError, match="codeword"):
        K.sample(10, np.array([1, 0, 1]), 0.6)
    with pytest.raises(ValueError, match="n must be"):
        K.sample(-1, C64, 0.6)


def test_cyclic_shift_definition():
    x = np.arange(13.0)                  # x0, x1..x12
    for m in (1, 2, 3, 4, 6):
        for j in range(12 // m + 1):
            expected = [0.0] + [1.0 + (t + m * j) % 12 for t in range(12)]
            assert K.cyclic_shift(x, j, m).tolist() == expected
    assert np.array_equal(K.cyclic_shift(x, 12 // 4, 4), x)
    X = np.random.default_rng(0).normal(size=(5, 13))
    assert np.allclose(K.cyclic_shift(K.cyclic_shift(X, 1, 2), 2, 2), K.cyclic_shift(X, 3, 2))
    assert np.allclose(K.cyclic_shift(X, -1, 3), K.cyclic_shift(X, 3, 3))
    with pytest.raises(ValueError, match="divisor"):
        K.cyclic_shift(x, 1, 5)


def test_random_shift_is_a_shift():
    X = np.random.default_rng(1).normal(size=(200, 17))
    R = K.random_shift(X, 4, np.random.default_rng(2))
    assert np.array_equal(R[:, 0], X[:, 0])
    for i in range(200):
        assert any(np.array_equal(R[i], K.cyclic_shift(X[i], j, 4)) for j in range(1, 5))


# ---- codes -------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(2, 40), st.integers(0, 10_000))
def test_relative_distance_matches_brute_force(d, seed):
    c = np.random.default_rng(seed).choice([-1.0, 1.0], size=d)
    for m in [m for m in range(1, d) if d % m == 0][:3]:
        assert np.array_equal(K.shift_distances(c, m), brute_distances(c, m))
        if d // m > 1:
            assert K.relative_distance(c, m) == brute_distances(c, m).min() / d


def test_periodic_codeword_has_distance_zero():
    assert K.relative_distance(np.array([1, -1, 1, -1, 1, -1.0])) == 0.0


@pytest.mark.parametrize("k", [3, 4, 5, 6, 7, 8])
def test_m_sequence_is_a_simplex_code(k):
    c = K.m_sequence(k)
    d = 2 ** k - 1
    assert len(c) == d and np.all(K.shift_distances(c) == (d + 1) // 2)


@pytest.mark.parametrize("d", [7, 31, 48, 64, 100, 128, 255])
def test_cyclic_code_reaches_three_eighths(d):
    c = K.cyclic_code(d, seed=0)
    assert len(c) == d and set(np.unique(c)) <= {-1.0, 1.0}
    assert K.relative_distance(c) >= 3 / 8
    assert brute_distances(c).min() >= 3 / 8 * d


def test_cyclic_code_errors():
    with pytest.raises(ValueError, match="d must be"):
        K.cyclic_code(1)
    with pytest.raises(ValueError, match="msequence"):
        K.cyclic_code(64, method="msequence")
    with pytest.raises(ValueError, match="no codeword"):
        K.cyclic_code(8, min_distance=0.9, max_tries=50)
    with pytest.raises(ValueError, match="method"):
        K.cyclic_code(64, method="magic")


# ---- Proposition 1 -----------------------------------------------------------------------------
def test_bayes_accuracy_closed_forms():
    from scipy.stats import norm
    assert K.bayes_accuracy(C64, 0.5) == pytest.approx(norm.cdf(2))
    for j in range(1, 64):
        rho = K.shift_correlation(C64, j)
        assert rho <= 0.25 + 1e-12
        assert K.bayes_accuracy(C64, 0.5, j) == pytest.approx(norm.cdf(2 * rho))
    # the proposition: >= 97% own, <= 85% across
    assert K.bayes_accuracy(C64, 0.5) >= 0.97
    assert max(K.bayes_accuracy(C64, 0.5, j) for j in range(1, 64)) <= 0.85
    # larger p: x0, which no shift touches, carries more weight, and the cross accuracy rises
    assert K.bayes_accuracy(C64, 0.99, 5) > K.bayes_accuracy(C64, 0.7, 5) > K.bayes_accuracy(C64, 0.5, 5)


@pytest.mark.parametrize("p,j,m", [(0.5, 0, 1), (0.5, 3, 1), (0.7, 1, 16), (0.9, 2, 8)])
def test_bayes_accuracy_monte_carlo(p, j, m):
    X, y = K.sample(200_000, C64, p, seed=j + 7)
    w0, w, b = K.bayes_weights(C64, p)
    Z = K.cyclic_shift(X, j, m)
    acc = np.mean(np.where(w0 * Z[:, 0] + Z[:, 1:] @ w + b > 0, 1, -1) == y)
    exact = K.bayes_accuracy(C64, p, j, m)
    assert abs(acc - exact) < 4 * np.sqrt(exact * (1 - exact) / len(y)) + 1e-4


def test_bayes_classifier_is_optimal_among_perturbed_linear():
    f = K.LinearClassifier(*K.bayes_weights(C64, 0.7))
    best = f.accuracy(C64, 0.7)
    assert best == pytest.approx(K.bayes_accuracy(C64, 0.7))
    rng = np.random.default_rng(0)
    for _ in range(30):
        g = K.LinearClassifier(f.w0 + rng.normal(), f.w + 0.3 * rng.normal(size=64), 0.3 * rng.normal())
        assert g.accuracy(C64, 0.7) <= best + 1e-12


# ---- exact accuracies of the classifiers --------------------------------------------------------
def _mc(f, p, j=0, m=1, eps=0.0, n=200_000, seed=0):
    X, y = K.sample(n, C64, p, seed=seed)
    Z = K.cyclic_shift(X, j, m)
    if eps:
        Z = Z + f.worst_attack(Z, y, eps)
    return np.mean(f.predict(Z) == y)


@pytest.mark.parametrize("clf", [
    K.LinearClassifier(0.7, np.random.default_rng(3).normal(size=64) / 8, 0.2),
    K.LinearClassifier(1.0, np.zeros(64), 0.0),
    K.LinearClassifier(0.0, C64, 0.0),
    K.ThresholdClassifier(C64, 1.0),
    K.ThresholdClassifier(C64, 0.0),
])
@pytest.mark.parametrize("j,m,eps", [(0, 1, 0.0), (0, 1, 0.5), (1, 16, 0.0), (5, 1, 0.0), (2, 8, 0.25)])
def test_exact_accuracy_matches_monte_carlo(clf, j, m, eps):
    exact = clf.accuracy(C64, 0.7, j, m, eps)
    mc = _mc(clf, 0.7, j, m, eps, seed=j + 11)
    assert abs(mc - exact) < 4 * np.sqrt(max(exact * (1 - exact), 1e-6) / 200_000) + 1e-4


def test_worst_attack_is_worst_for_linear():
    rng = np.random.default_rng(5)
    f = K.LinearClassifier(0.5, rng.normal(size=64), 0.1)
    X, y = K.sample(2000, C64, 0.6, seed=1)
    worst = y * f.score(X + f.worst_attack(X, y, 0.3))
    assert np.all(np.abs(f.worst_attack(X, y, 0.3)) <= 0.3 + 1e-12)
    for _ in range(20):
        delta = rng.uniform(-0.3, 0.3, size=X.shape)
        assert np.all(y * f.score(X + delta) >= worst - 1e-9)


def test_threshold_classifier_rejects_large_eps_and_wrong_code():
    g = K.ThresholdClassifier(C64, 1.0)
    with pytest.raises(ValueError, match="eps"):
        g.accuracy(C64, 0.6, eps=1.0)
    with pytest.raises(ValueError, match="codeword"):
        g.accuracy(-C64, 0.6)


def test_spatial_accuracy_is_the_mean_over_shifts():
    f = K.LinearClassifier(0.4, C64, 0.0)
    for m in (8, 16, 32):
        assert K.spatial_accuracy(f, C64, 0.6, m) == pytest.approx(
            np.mean([f.accuracy(C64, 0.6, j, m) for j in range(1, 64 // m + 1)]))
    X, y = K.sample(200_000, C64, 0.6, seed=2)
    R = K.random_shift(X, 16, np.random.default_rng(0))
    exact = K.spatial_accuracy(f, C64, 0.6, 16)
    assert abs(np.mean(f.predict(R) == y) - exact) < 4 * np.sqrt(exact * (1 - exact) / len(y))


# ---- Theorem 2 ---------------------------------------------------------------------------------
def test_theorem2_bounds_values_and_errors():
    lo, up = K.theorem2_bounds(32, 64, 0.4, 0.6)
    assert lo == pytest.approx(0.5 * 0.6) and up == pytest.approx(1 - 0.5 * (1 - 0.4 * 1.5))
    lo, up = K.theorem2_bounds(16, 64, np.array([0.0, 0.5]), 0.5)
    assert np.allclose(lo, [0.75, 0.375]) and np.allclose(up, [0.75, 0.875])
    with pytest.raises(ValueError, match="divisor"):
        K.theorem2_bounds(5, 64, 0.5, 0.6)
    with pytest.raises(ValueError, match="eta"):
        K.theorem2_bounds(8, 64, 1.5, 0.6)
    with pytest.raises(ValueError, match="p must"):
        K.theorem2_bounds(8, 64, 0.5, 0.3)


def _random_classifiers(rng, n=60):
    out = [K.LinearClassifier(rng.normal() * s, rng.normal(size=64) * rng.uniform(0, 1) / 8, 0.3 * rng.normal())
           for s in rng.uniform(0, 4, size=n)]
    out += [K.ThresholdClassifier(C64, t) for t in rng.uniform(0, 5, size=n // 3)]
    out += [K.LinearClassifier(*K.bayes_weights(C64, 0.6)), K.LinearClassifier(1.0, np.zeros(64))]
    return out


@pytest.mark.parametrize("p", [0.5, 0.6, 0.8, 0.95])
def test_theorem2_holds_on_many_classifiers(p):
    rng = np.random.default_rng(int(100 * p))
    for f in _random_classifiers(rng):
        eta = K.adversarial_error(f, C64, p)
        assert eta >= 1 - p - 1e-12                  # no classifier is more robust than x0 alone
        for m in (8, 16, 32):
            lo, up = K.theorem2_bounds(m, 64, eta, p)
            acc = K.spatial_accuracy(f, C64, p, m)
            assert lo - 1e-12 <= acc <= up + 1e-12


def test_x0_classifier_attains_eta_one_minus_p():
    f = K.LinearClassifier(1.0, np.zeros(64))
    assert K.adversarial_error(f, C64, 0.7) == pytest.approx(0.3)
    assert K.spatial_accuracy(f, C64, 0.7, 16) == pytest.approx(0.7)


def test_shift_equals_coupling_attack_in_distribution():
    "(r_j(X), Y) has the law of (X + A_j(X), Y) with A_j(x) = 2y(r_j(c) - c)/sqrt(d): the repaired lower-bound step."
    X, y = K.sample(200_000, C64, 0.6, seed=9)
    j, m = 1, 16
    A = np.zeros_like(X)
    A[:, 1:] = 2 * y[:, None] * (np.roll(C64, -m * j) - C64)[None, :] / 8
    assert np.abs(A).max() == pytest.approx(0.5)
    for f in (K.ThresholdClassifier(C64, 0.7), K.LinearClassifier(0.3, C64, 0.0)):
        a = np.mean(f.predict(K.cyclic_shift(X, j, m)) == y)
        b = np.mean(f.predict(X + A) == y)
        assert abs(a - b) < 5 * np.sqrt(2 * a * (1 - a) / len(y))
    # but not point by point: the actual coordinate differences are far outside the ball
    diff = K.cyclic_shift(X, j, m)[:, 1:] - X[:, 1:]
    assert np.mean(np.abs(diff) > 0.5) > 0.5

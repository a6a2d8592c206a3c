"""Tests of robbook.theory.tsipras: the distribution D, f_avg, exact accuracies of linear classifiers,
Theorem 2.1 (bound and tightness) and Theorem 2.2 (population and sample SVMs)."""
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from robbook.theory.tsipras import (favg_accuracy, fit_svm, hinge_gaussian, linear_accuracy, robust_accuracy_bound,
                                    robust_margin, sample, svm_population)


def _se(a, n):
    return np.sqrt(max(a * (1 - a), 1.0 / n) / n)


# ---- the distribution D -----------------------------------------------------------------------------
def test_sample_shapes_and_marginals():
    n, d, p, eta = 40_000, 7, 0.8, 0.3
    X, y = sample(n, d, p, eta, seed=1)
    assert X.shape == (n, d + 1) and y.shape == (n,)
    assert set(np.unique(y)) == {-1, 1}
    assert set(np.unique(X[:, 0])) == {-1.0, 1.0}
    agree = np.mean(y * X[:, 0] == 1)
    assert abs(agree - p) < 5 * _se(p, n)
    assert abs(np.mean(y == 1) - 0.5) < 5 * _se(0.5, n)
    weak = y[:, None] * X[:, 1:]
    assert np.allclose(weak.mean(0), eta, atol=5 / np.sqrt(n))
    assert np.allclose(weak.var(0), 1.0, atol=0.05)
    # independence of the weak features from x1 given y: same mean whether x1 agrees or not
    assert abs(weak[y * X[:, 0] == 1].mean() - weak[y * X[:, 0] == -1].mean()) < 0.02


def test_sample_seeding_and_validation():
    a, b = sample(100, 3, 0.9, 0.1, seed=5), sample(100, 3, 0.9, 0.1, seed=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], sample(100, 3, 0.9, 0.1, seed=6)[0])
    with pytest.raises(ValueError):
        sample(10, 3, 1.5, 0.1)


# ---- f_avg ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eta_sqrt_d,d,eps_over_eta", [(1.0, 25, 0.0), (2.0, 100, 0.0), (3.0, 400, 0.0),
                                                       (3.0, 400, 1.0), (3.0, 400, 2.0), (1.5, 64, 0.5),
                                                       (0.5, 9, 3.0)])
def test_favg_closed_form_matches_monte_carlo(eta_sqrt_d, d, eps_over_eta):
    eta = eta_sqrt_d / np.sqrt(d)
    eps = eps_over_eta * eta
    n = 40_000
    X, y = sample(n, d, 0.7, eta, seed=11)
    mc = np.mean(np.sign(X[:, 1:].mean(1) - eps * y) == y)   # every weak feature shifted by -eps*y
    exact = favg_accuracy(eta, d, eps)
    assert abs(mc - exact) < 5 * _se(exact, n)


@pytest.mark.parametrize("d", [16, 100, 10_000])
def test_favg_thresholds_of_section_2(d):
    eta = 3 / np.sqrt(d)
    assert favg_accuracy(eta, d) > 0.99
    assert favg_accuracy(eta, d, 2 * eta) < 0.01
    assert favg_accuracy(eta, d, eta) == pytest.approx(0.5)


def test_favg_equals_linear_accuracy_of_w_unif():
    d, eta = 50, 0.2
    w = np.r_[0.0, np.full(d, 1 / d)]
    for eps in (0.0, 0.1, 0.4):
        assert linear_accuracy(w, 0.0, 0.9, eta, eps) == pytest.approx(favg_accuracy(eta, d, eps), abs=1e-12)


# ---- exact worst case and exact accuracy of linear classifiers ---------------------------------------
@pytest.mark.parametrize("attack_x1", [True, False])
def test_robust_margin_equals_brute_force_over_corners(attack_x1):
    rng = np.random.default_rng(3)
    X, y = sample(40, 4, 0.8, 0.5, seed=2)
    w, b, eps = rng.normal(size=5), 0.2, 0.35
    free = np.ones(5) if attack_x1 else np.r_[0.0, np.ones(4)]
    corners = np.array(list(itertools.product([-1.0, 1.0], repeat=5))) * eps * free
    brute = np.min(y[:, None] * ((X[:, None, :] + corners[None]) @ w + b), axis=1)
    assert np.allclose(brute, robust_margin(w, b, X, y, eps, attack_x1=attack_x1))
    # and no interior point is worse than the corners
    inner = rng.uniform(-eps, eps, size=(500, 5)) * free
    assert np.all(np.min(y[:, None] * ((X[:, None, :] + inner[None]) @ w + b), axis=1) >= brute - 1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_accuracy_matches_monte_carlo(seed):
    rng = np.random.default_rng(seed)
    d, p, eta = 20, 0.85, 0.25
    w = rng.normal(size=d + 1) * np.r_[1.0, np.full(d, 0.3)]
    b = 0.3 * rng.normal()
    X, y = sample(40_000, d, p, eta, seed=100 + seed)
    for eps in (0.0, 0.05, 0.2):
        exact = linear_accuracy(w, b, p, eta, eps)
        mc = np.mean(robust_margin(w, b, X, y, eps) > 0)
        assert abs(mc - exact) < 5 * _se(exact, len(y))


def test_hinge_gaussian_matches_sampling():
    rng = np.random.default_rng(0)
    for mu, sig in [(0.5, 1.0), (2.0, 0.3), (-1.0, 2.0), (3.0, 0.5)]:
        mc = np.maximum(0, 1 - (mu + sig * rng.standard_normal(400_000))).mean()
        assert hinge_gaussian(mu, sig) == pytest.approx(mc, abs=5e-3)
    assert hinge_gaussian(0.25, 0.0) == pytest.approx(0.75)
    assert hinge_gaussian(1.5, 0.0) == 0.0


# ---- Theorem 2.1 ------------------------------------------------------------------------------------
def test_bound_values_and_validation():
    assert robust_accuracy_bound(0.95, 0.99) == pytest.approx(0.19)
    assert robust_accuracy_bound(0.95, 0.96) == pytest.approx(0.76)   # the paper's footnote 1
    assert robust_accuracy_bound(0.95, 0.5) == 1.0                     # capped
    assert robust_accuracy_bound(0.5, 0.8) == pytest.approx(0.2)
    assert robust_accuracy_bound(1.0, 0.99) == 1.0
    v = robust_accuracy_bound(0.9, np.array([1.0, 0.95, 0.9]))
    assert np.allclose(v, [0.0, 0.45, 0.9])
    with pytest.raises(ValueError):
        robust_accuracy_bound(0.4, 0.9)
    with pytest.raises(ValueError):
        robust_accuracy_bound(0.9, 1.2)


@pytest.mark.parametrize("p", [0.6, 0.9, 0.95, 0.99])
def test_bound_is_tight_at_delta_one_minus_p(p):
    d = 100
    eta = 2 / np.sqrt(d)
    w = np.r_[1.0, np.zeros(d)]
    std, rob = linear_accuracy(w, 0.0, p, eta), linear_accuracy(w, 0.0, p, eta, 2 * eta)
    assert std == pytest.approx(p) and rob == pytest.approx(p)
    assert robust_accuracy_bound(p, 1 - (1 - p)) == pytest.approx(rob)


def test_trained_classifiers_are_below_the_bound():
    from robbook.linear import fit_linear
    p, d = 0.9, 100
    eta = 2 / np.sqrt(d)
    eps = 2 * eta
    X, y = sample(3000, d, p, eta, seed=0)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    clfs = [fit_linear(Xt[:n], yt[:n], epochs=150).numpy() for n in (50, 500, 3000)]
    clfs += [fit_linear(Xt, yt, eps=r * eta, epochs=150).numpy() for r in (0.5, 1.0, 2.0)]
    clfs += [fit_svm(X[:1500], y[:1500]), fit_svm(X[:1500], y[:1500], eps=eps)]
    clfs += [(np.r_[np.log(p / (1 - p)), np.full(d, 2 * eta)], 0.0)]      # Bayes-optimal
    Xte, yte = sample(30_000, d, p, eta, seed=1)
    stds = []
    for w, b in clfs:
        std, rob = linear_accuracy(w, b, p, eta), linear_accuracy(w, b, p, eta, eps)
        bound = robust_accuracy_bound(p, std)
        assert rob <= bound + 1e-9
        swap = np.mean(yte * (Xte @ w + b) - eps * w[1:].sum() > 0)       # the proof's adversary, on samples
        assert swap <= bound + 4 * _se(max(bound, 1e-3), len(yte))
        stds.append(std)
    assert max(stds) > 0.97 and min(stds) < 0.92      # the classifiers really span the trade-off


@settings(max_examples=200, deadline=None)
@given(p=st.floats(0.5, 0.995), eta_sqrt_d=st.floats(0.2, 5.0), theta=st.floats(-np.pi, np.pi),
       b=st.floats(-1.0, 1.0), eps_over_eta=st.floats(2.0, 4.0))
def test_bound_holds_for_every_symmetric_linear_classifier(p, eta_sqrt_d, theta, b, eps_over_eta):
    d = 400
    eta = eta_sqrt_d / np.sqrt(d)
    if eps_over_eta * eta >= 1:
        return
    w = np.r_[np.cos(theta), np.full(d, np.sin(theta) / np.sqrt(d))]
    std = linear_accuracy(w, b, p, eta)
    rob = linear_accuracy(w, b, p, eta, eps_over_eta * eta)
    assert rob <= robust_accuracy_bound(p, std) + 1e-9
    assert rob <= std + 1e-12


# ---- Theorem 2.2 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.6, 0.8, 0.95, 0.975])
@pytest.mark.parametrize("d", [100, 1000])
def test_theorem_2_2_population(p, d):
    eta = 4 / np.sqrt(d)
    std = svm_population(p, eta, d)
    assert std["std_accuracy"] > 0.99 and std["adv_accuracy"] < 0.01
    assert std["v"] >= 1 / np.sqrt(2) - 1e-9                     # Lemma D.2
    rob = svm_population(p, eta, d, eps_train=2 * eta)
    assert rob["std_accuracy"] == pytest.approx(p, abs=1e-9)
    assert rob["adv_accuracy"] == pytest.approx(p, abs=1e-9)
    assert abs(rob["weak_weight"]) < 1e-9 and rob["w1"] == pytest.approx(1.0)


def test_theorem_2_2_population_optimum_is_optimal():
    p, d = 0.9, 100
    eta = 4 / np.sqrt(d)
    r = svm_population(p, eta, d)
    # the reported margin loss is the minimum over the unit circle (checked on an independent grid)
    t = np.linspace(-np.pi, np.pi, 100_003)
    w1, v = np.cos(t), np.sin(t)
    k = eta * np.sqrt(d)
    grid = p * hinge_gaussian(w1 + v * k, np.abs(v)) + (1 - p) * hinge_gaussian(-w1 + v * k, np.abs(v))
    assert r["margin_loss"] <= grid.min() + 1e-9


def test_theorem_2_2_on_samples():
    p, d = 0.95, 100
    eta = 4 / np.sqrt(d)
    X, y = sample(2000, d, p, eta, seed=4)
    w, b = fit_svm(X, y)
    assert np.linalg.norm(w) <= 1 + 1e-6
    assert linear_accuracy(w, b, p, eta) > 0.99
    assert linear_accuracy(w, b, p, eta, 2 * eta) < 0.01
    assert w[1:].mean() > 0 and np.abs(w[1:]).sum() > 1            # relies on the weak features
    assert np.mean(w[1:] > 0) > 0.8
    w, b = fit_svm(X, y, eps=2 * eta)
    assert np.abs(w[1:]).sum() < 1e-3
    assert linear_accuracy(w, b, p, eta) == pytest.approx(p, abs=5e-3)
    assert linear_accuracy(w, b, p, eta, 2 * eta) == pytest.approx(p, abs=5e-3)


# ---- Sec. 2.2: transferability --------------------------------------------------------------------------

def test_worst_case_examples_transfer_between_independently_trained_standard_classifiers():
    """Sec. 2.2: A's worst-case l_inf examples at eps = 2*eta fool B, trained on an independent sample of D, far more
    than random +-eps noise does, and almost as much as B's own worst case."""
    from robbook.linear import fit_linear
    d, p = 100, 0.95
    eta = 2 / np.sqrt(d)
    eps = 2 * eta

    def fit(seed):
        X, y = sample(3000, d, p, eta, seed=seed)
        return fit_linear(torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32),
                          loss="logistic", epochs=100, lr=0.1).numpy()

    (wA, bA), (wB, bB) = fit(1), fit(2)
    Xt, yt = sample(20_000, d, p, eta, seed=3)
    acc_B = lambda X: float(np.mean(yt * (X @ wB + bB) > 0))
    clean, transferred = acc_B(Xt), acc_B(Xt - eps * yt[:, None] * np.sign(wA))
    own = float(np.mean(robust_margin(wB, bB, Xt, yt, eps) > 0))
    noise = acc_B(Xt + eps * np.random.default_rng(4).choice([-1.0, 1.0], size=Xt.shape))
    assert clean > 0.95 and own < 0.2
    assert clean - transferred > 0.8 * (clean - own)
    assert transferred < noise - 0.5

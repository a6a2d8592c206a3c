"""Tests of robbook.linear: exact worst-case margins and exact adversarial training of linear models."""
import itertools

import pytest
import torch

from robbook.linear import LinearClassifier, dual_norm, fit_linear, robust_margin, signed_labels


def _data(n=400, k=5, noise=45, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    x = torch.cat([y[:, None] * 0.8 + torch.randn(n, k, generator=g), torch.randn(n, noise, generator=g)], 1)
    return x, y


def test_robust_margin_linf_equals_brute_force():
    torch.manual_seed(0)
    x, w, b = torch.randn(16, 6), torch.randn(6), torch.tensor(-0.2)
    y = torch.where(torch.rand(16) < 0.5, -1.0, 1.0)
    eps = 0.3
    corners = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=6))) * eps
    brute = (y[:, None] * ((x[:, None, :] + corners[None]) @ w + b)).min(1).values
    assert torch.allclose(brute, robust_margin(w, b, x, y, eps, "linf"), atol=1e-5)


def test_robust_margin_l2_is_attained_and_not_beaten():
    torch.manual_seed(1)
    x, w, b = torch.randn(16, 6), torch.randn(6), torch.tensor(0.1)
    y = torch.where(torch.rand(16) < 0.5, -1.0, 1.0)
    eps = 0.5
    exact = robust_margin(w, b, x, y, eps, "l2")
    worst = x - eps * y[:, None] * w / w.norm()
    assert torch.allclose(y * (worst @ w + b), exact, atol=1e-5)
    d = torch.randn(2000, 6)
    d = eps * d / d.norm(dim=1, keepdim=True)
    assert torch.all((y[:, None] * ((x[:, None, :] + d[None]) @ w + b)).min(1).values >= exact - 1e-5)


def test_dual_norm_and_labels():
    w = torch.tensor([3.0, -4.0])
    assert dual_norm(w, "linf") == 7.0 and dual_norm(w, "l2") == 5.0
    with pytest.raises(ValueError):
        dual_norm(w, "l1")
    assert signed_labels(torch.tensor([0, 1, 1])).tolist() == [-1.0, 1.0, 1.0]


def test_adversarial_training_zeroes_noise_features_and_is_more_robust():
    x, y = _data()
    std = fit_linear(x, y, epochs=300)
    adv = fit_linear(x, y, eps=0.3, epochs=300)
    assert std.accuracy(x, y) > 0.95
    assert int((adv.w[5:] != 0).sum()) <= 2 < int((std.w[5:] != 0).sum())
    assert int((adv.w[:5] != 0).sum()) == 5
    assert adv.accuracy(x, y, 0.3) > std.accuracy(x, y, 0.3) + 0.1
    assert adv.l1 < std.l1


def test_adversarial_training_minimises_the_adversarial_loss():
    import torch.nn.functional as F
    x, y = _data(seed=3)
    adv = fit_linear(x, y, eps=0.2, epochs=400)
    std = fit_linear(x, y, epochs=400)
    loss = lambda m: F.softplus(-m.margin(x, y, 0.2)).mean().item()
    assert loss(adv) < loss(std)


def test_features_restrict_the_weights():
    x, y = _data()
    m = fit_linear(x, y, features=[0, 2, 7], epochs=50)
    nz = set(torch.nonzero(m.w).flatten().tolist())
    assert nz <= {0, 2, 7} and len(nz) > 0
    assert m.config["n_features"] == 3


def test_l2_training_and_minibatches():
    x, y = _data(seed=1)
    adv = fit_linear(x, y, eps=1.0, norm="l2", epochs=60, batch_size=50)
    std = fit_linear(x, y, epochs=60, batch_size=50)
    assert adv.accuracy(x, y, 1.0, "l2") > std.accuracy(x, y, 1.0, "l2")
    assert len(adv.history) == 60


def test_hinge_loss_and_accuracy_monotone_in_eps():
    x, y = _data(seed=2)
    m = fit_linear(x, y, loss="hinge", epochs=100)
    accs = [m.accuracy(x, y, e) for e in (0.0, 0.05, 0.1, 0.3)]
    assert accs == sorted(accs, reverse=True) and accs[0] > 0.9
    assert isinstance(m, LinearClassifier)


def test_input_validation():
    x, y = _data(n=20)
    with pytest.raises(ValueError):
        fit_linear(x, (y > 0).float(), epochs=1)          # labels must be +-1
    with pytest.raises(ValueError):
        fit_linear(x, y, eps=-0.1, epochs=1)
    with pytest.raises(ValueError):
        fit_linear(x, y, loss="squared", epochs=1)
    with pytest.raises(ValueError):
        fit_linear(x, y, norm="l1", epochs=1)


# ---------- Tsipras Theorem 2.2: the sample SVM and its population twin solve the same problem ----------

def test_svm_population_ball_matches_the_sample_svm():
    "fit_svm (||w|| <= 1) on many samples approaches svm_population(constraint='ball'), norm and direction."
    import numpy as np
    from robbook.theory.tsipras import fit_svm, sample, svm_population
    p, eta, d, eps = 0.7, 0.3, 20, 0.2       # a non-separable setting with an interior direction
    pop = svm_population(p, eta, d, eps_train=eps, constraint="ball")
    X, y = sample(20000, d, p, eta, seed=0)
    w, _ = fit_svm(X, y, eps=eps)
    direction = np.array([w[0], w[1:].mean() * np.sqrt(d)]) / np.linalg.norm(w)
    assert abs(np.linalg.norm(w) - pop["norm"]) < 0.05
    assert np.allclose(direction, np.array([pop["w1"], pop["v"]]) / pop["norm"], atol=0.05)


def test_svm_collapse_is_the_same_on_both_sides():
    "At p = 0.8, d = 100, eps = 0.8 the ball problem's optimum is w = 0, on samples and in the population."
    import numpy as np
    from robbook.theory.tsipras import fit_svm, sample, svm_population
    p, d, eta, eps = 0.8, 100, 0.4, 0.8
    pop = svm_population(p, eta, d, eps_train=eps, constraint="ball")
    X, y = sample(2000, d, p, eta, seed=0)
    w, _ = fit_svm(X, y, eps=eps)
    assert pop["norm"] < 1e-3 and np.linalg.norm(w) < 1e-3
    sphere = svm_population(p, eta, d, eps_train=eps)   # the paper's ||w|| = 1 problem answers (1, 0)
    assert sphere["norm"] == 1.0 and sphere["w1"] > 0.999


def test_svm_population_rejects_unknown_constraint():
    from robbook.theory.tsipras import svm_population
    with pytest.raises(ValueError, match="constraint"):
        svm_population(0.9, 0.1, 10, constraint="cube")

"""Tests of robbook.metrics: each metric against the value it must take on a tiny model with known behaviour."""
import functools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from robbook import metrics as M


# --------------------------------------------------------------------------------------------
# Tiny models with known behaviour
# --------------------------------------------------------------------------------------------
class Linear(nn.Module):
    "logits = W x + b on the flattened image, with fixed weights."
    def __init__(self, W, b=None):
        super().__init__()
        W = torch.as_tensor(W, dtype=torch.get_default_dtype())
        self.W = nn.Parameter(W)
        self.b = nn.Parameter(torch.zeros(len(W)) if b is None else torch.as_tensor(b, dtype=W.dtype))

    def forward(self, x):
        return x.flatten(1).to(self.W.dtype) @ self.W.T + self.b


class BinaryLinear(nn.Module):
    "Two logits [0, w.x + b]: predicts 1 iff w.x + b > 0."
    def __init__(self, w, b=0.0):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.get_default_dtype()))
        self.b = nn.Parameter(torch.tensor(float(b)))

    def score(self, x):
        return x.flatten(1) @ self.w + self.b

    def forward(self, x):
        s = self.score(x)
        return torch.stack([torch.zeros_like(s), s], 1)


class Constant(nn.Module):
    "Always predicts class `k`."
    def __init__(self, k=0, num_classes=3):
        super().__init__()
        self.register_buffer("logits", F.one_hot(torch.tensor(k), num_classes).float())

    def forward(self, x):
        return self.logits.expand(len(x), -1)


class HalfModel(nn.Module):
    "Class 1 iff the mean of one half of the image ('left' or 'right') exceeds 0.5."
    def __init__(self, side):
        super().__init__()
        self.side = side
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        w = x.shape[-1] // 2
        half = x[..., :w] if self.side == "left" else x[..., w:]
        s = self.scale * (half.mean((1, 2, 3)) - 0.5)
        return torch.stack([-s, s], 1)


class Rot90Average(nn.Module):
    "Sum of a random linear net's logits over the four rot90s of the input: exactly rot90-invariant."
    def __init__(self, hw=4, num_classes=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Linear(hw * hw, num_classes).double()
        with torch.no_grad():
            self.net.weight.copy_(torch.randn(self.net.weight.shape, generator=g, dtype=torch.double))

    def forward(self, x):
        x = x.double()
        return sum(self.net(torch.rot90(x, k, dims=(-2, -1)).flatten(1)) for k in range(4))


def random_rot90(x, generator):
    "Rotate each image by k * 90 degrees, k uniform in {0, 1, 2, 3}."
    k = torch.randint(0, 4, (len(x),), generator=generator, device=x.device)
    return torch.stack([torch.rot90(xi, int(ki), dims=(-2, -1)) for xi, ki in zip(x, k)])


def fgsm_test(model, x, y, *, eps):
    "A minimal l_inf FGSM, independent of robbook.attacks."
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return (x + eps * g.sign()).detach()


def linear_linf_attack(model, x, y, *, eps):
    "The exact worst-case l_inf attack on a BinaryLinear model: move against the label by eps * sign(w)."
    s = (2 * y - 1).to(x.dtype)                     # +1 for class 1, -1 for class 0
    step = eps * model.w.detach().sign().reshape(x.shape[1:])
    return (x - s[:, None, None, None] * step).detach()


def noise_attack(model, x, y):
    return x + 0.3 * torch.randn_like(x)


# --------------------------------------------------------------------------------------------
# Data in the three forms
# --------------------------------------------------------------------------------------------
def make_image_data(x, y):
    "A robbook.data.ImageData if that module exists, else a stand-in with the same fields."
    try:
        from robbook.data import ImageData
        return ImageData(x, y, classes=[str(i) for i in range(int(y.max()) + 1)], name="test")
    except ImportError:
        class _ImageData:
            def __init__(self, x, y):
                self.x, self.y = x, y

            def __len__(self):
                return len(self.y)

            def float(self):
                return self.x.float() / 255
        return _ImageData(x, y)


def make_loader(x, y, batch_size):
    "A robbook.data.Loader (no shuffling) if that module exists, else a list of batches."
    try:
        from robbook.data import Loader
        return Loader(make_image_data(x, y), batch_size, shuffle=False)
    except ImportError:
        return [(x[i:i + batch_size].float() / 255, y[i:i + batch_size]) for i in range(0, len(x), batch_size)]


def uint8_images(n=200, c=1, hw=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, hw, hw), generator=g, dtype=torch.uint8)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


# --------------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------------
def test_accuracy_of_hand_built_linear_model():
    # 1x1x2 images; W = I predicts the brighter pixel
    x = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.5, 0.45]]).reshape(5, 1, 1, 2)
    y = torch.tensor([0, 1, 1, 1, 1])          # preds 0, 1, 0, 1, 0 -> 3 of 5 correct
    model = Linear(torch.eye(2))
    assert M.accuracy(model, (x, y)) == pytest.approx(3 / 5)
    pred, yy = M.predict(model, (x, y), batch_size=2)
    assert pred.tolist() == [0, 1, 0, 1, 0] and torch.equal(yy, y)


def test_single_logit_model_reads_sign():
    x = torch.tensor([[1.0], [-2.0], [3.0]]).reshape(3, 1, 1, 1)
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(1.0); model.bias.zero_()
    f = lambda x: model(x.flatten(1))                   # a plain callable works as a model
    assert M.accuracy(f, (x, torch.tensor([1, 0, 0]))) == pytest.approx(2 / 3)


def test_constant_model():
    x, y = uint8_images(n=300, classes=3)
    model = Constant(k=2)
    assert M.accuracy(model, (x, y)) == pytest.approx((y == 2).float().mean().item())
    m = M.attack_metrics(model, (x, y), noise_attack)
    assert m["fooling_rate"] == 0.0 and m["one_minus_fooling_rate"] == 1.0
    assert m["robust_accuracy"] == pytest.approx(m["accuracy"])
    assert M.invariance_rate(model, (x, y), random_rot90) == 1.0


# --------------------------------------------------------------------------------------------
# Robust accuracy and fooling rate
# --------------------------------------------------------------------------------------------
def test_robust_accuracy_exact_for_linear_model():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 1, 2, 3, generator=g)
    w = torch.randn(6, generator=g)
    model = BinaryLinear(w, b=0.1)
    y = (model.score(x) > 0).long().detach()
    wrong = torch.rand(400, generator=g) < 0.2
    y[wrong] = 1 - y[wrong]                                  # about 20% misclassified
    eps = 0.2
    margin = (2 * y - 1) * model.score(x).detach()
    expected = (margin > eps * w.abs().sum()).float().mean().item()
    attack = functools.partial(linear_linf_attack, eps=eps)
    assert M.robust_accuracy(model, (x, y), attack) == pytest.approx(expected)
    assert M.accuracy(model, (x, y)) == pytest.approx((margin > 0).float().mean().item())


def test_robust_accuracy_by_evaluate_robust_version():
    "A version name runs robbook.attacks.evaluate_robust: exact on a linear model (worst case in closed form)."
    g = torch.Generator().manual_seed(2)
    x = 0.3 + 0.4 * torch.rand(300, 1, 2, 3, generator=g)     # eps = 0.02 never reaches the box [0, 1]
    w = torch.randn(6, generator=g)
    model = BinaryLinear(w, b=-float((x.flatten(1) @ w).median()))
    y = (model.score(x) > 0).long().detach()
    eps = 0.02
    margin = (2 * y - 1) * model.score(x).detach()
    expected = (margin > eps * w.abs().sum()).float().mean().item()
    assert M.robust_accuracy(model, (x, y), "fast", norm="linf", eps=eps) == pytest.approx(expected, abs=0.01)
    with pytest.raises(ValueError, match="needs eps="):
        M.robust_accuracy(model, (x, y), "standard")
    with pytest.raises(ValueError, match="allowed values: \\['standard', 'fast', 'pgd'\\]"):
        M.robust_accuracy(model, (x, y), "autoattack", eps=eps)
    with pytest.raises(ValueError, match="only apply when attack is a version name"):
        M.robust_accuracy(model, (x, y), functools.partial(linear_linf_attack, eps=eps), eps=eps)


def test_fooling_rate_exact():
    # model predicts sign of the first pixel; attack negates the images whose second pixel is positive
    x = torch.randn(300, 1, 1, 2, generator=torch.Generator().manual_seed(2))
    model = BinaryLinear([1.0, 0.0])
    y = (x[:, 0, 0, 0] > 0).long()
    y[:100] = 1 - y[:100]                                  # 100 misclassified points

    def attack(model, x, y):
        return torch.where(x[:, :, :, 1:] > 0, -x, x)
    flips = (x[:, 0, 0, 1] > 0)
    assert M.fooling_rate(model, (x, y), attack) == pytest.approx(flips.float().mean().item())
    correct = torch.arange(300) >= 100
    assert M.fooling_rate(model, (x, y), attack, among="correct") == pytest.approx(flips[correct].float().mean().item())
    assert M.one_minus_fooling_rate(model, (x, y), attack) == pytest.approx(1 - flips.float().mean().item())
    with pytest.raises(ValueError, match="among"):
        M.fooling_rate(model, (x, y), attack, among="wrong")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(0.0, 0.5))
def test_attack_metric_relations(seed, eps):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(64, 1, 2, 2, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    model = Linear(torch.randn(3, 4, generator=g), torch.randn(3, generator=g))
    m = M.attack_metrics(model, (x, y), functools.partial(fgsm_test, eps=eps), batch_size=16)
    assert 0 <= m["robust_accuracy"] <= m["accuracy"] <= 1
    assert m["fooling_rate"] + m["one_minus_fooling_rate"] == pytest.approx(1.0)
    if m["accuracy"] > 0:
        # on a correctly classified point a changed prediction is an error, and vice versa
        assert m["robust_accuracy"] == pytest.approx(m["accuracy"] * (1 - m["fooling_rate_correct"]))
    else:
        assert math.isnan(m["fooling_rate_correct"])


def test_robustness_profile_linear_model():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 1, 1, 4, generator=g)
    w = torch.tensor([1.0, -0.5, 0.25, 2.0])
    model = BinaryLinear(w)
    y = (model.score(x) > 0).long().detach()
    grid = [0.0, 0.1, 0.3, 1.0]
    prof = M.robustness_profile(model, (x, y), linear_linf_attack, grid, batch_size=64)
    assert prof["eps"] == grid
    assert prof["one_minus_fooling_rate"][0] == 1.0 and prof["robust_accuracy"][0] == 1.0
    margin = model.score(x).detach().abs()
    for e, ra, omf in zip(grid, prof["robust_accuracy"], prof["one_minus_fooling_rate"]):
        expected = (margin > e * w.abs().sum()).float().mean().item()
        assert ra == pytest.approx(expected) and omf == pytest.approx(expected)   # accuracy is 1
    assert prof["accuracy"] == [1.0] * 4
    assert all(a >= b for a, b in zip(prof["robust_accuracy"], prof["robust_accuracy"][1:]))


# --------------------------------------------------------------------------------------------
# Invariance
# --------------------------------------------------------------------------------------------
def test_invariance_of_rot90_invariant_model():
    x, y = uint8_images(n=120, hw=4)
    model = Rot90Average()
    assert M.invariance_rate(model, (x, y), random_rot90, batch_size=32) == 1.0
    m = M.invariance_metrics(model, (x, y), random_rot90)
    assert m["accuracy"] == pytest.approx(m["clean_accuracy"])


def test_invariance_rate_exact_under_flip():
    # left half encodes class a, right half class b; the left-half model sees b after a flip
    g = torch.Generator().manual_seed(4)
    a, b = torch.randint(0, 2, (500,), generator=g), torch.randint(0, 2, (500,), generator=g)
    x = torch.cat([(0.25 + 0.5 * a.float())[:, None, None, None].expand(-1, 1, 2, 2),
                   (0.25 + 0.5 * b.float())[:, None, None, None].expand(-1, 1, 2, 2)], dim=3)
    model = HalfModel("left")
    m = M.invariance_metrics(model, (x, a), lambda x: x.flip(-1))
    assert m["invariance"] == pytest.approx((a == b).float().mean().item())
    assert m["accuracy"] == pytest.approx((a == b).float().mean().item())
    assert m["clean_accuracy"] == 1.0
    assert m["invariance"] < 0.6


def test_invariance_profile_custom_transform():
    x, y = uint8_images(n=64, hw=4)

    def make(k):                       # k quarter-turns
        return lambda x: torch.rot90(x, int(k), dims=(-2, -1))
    prof = M.invariance_profile(Rot90Average(), (x, y), [0, 1, 2, 3], make_transform=make)
    assert prof["values"] == [0, 1, 2, 3] and prof["invariance"] == [1.0] * 4
    prof = M.invariance_profile(HalfModel("left"), (x, y), [0, 2], make_transform=make)
    assert prof["invariance"][0] == 1.0 and prof["invariance"][1] < 1.0


def test_seeded_random_transform_is_reproducible():
    x, y = uint8_images(n=100)
    model = Linear(torch.randn(3, 64, generator=torch.Generator().manual_seed(0)))
    r1 = M.invariance_rate(model, (x, y), random_rot90, seed=5)
    r2 = M.invariance_rate(model, (x, y), random_rot90, seed=5)
    assert r1 == r2 < 1.0


def test_spatial_transforms_with_robbook_transforms():
    pytest.importorskip("robbook.transforms")
    x, y = uint8_images(n=32, hw=8)
    xf = x.float() / 255
    assert torch.equal(M.spatial_transform("rotation", 0)(xf), xf)
    with pytest.raises(ValueError, match="kind"):
        M.spatial_transform("shear", 10)
    t = M.spatial_transform("rotation", 30)
    out = t(xf, generator=torch.Generator().manual_seed(0))
    assert out.shape == xf.shape and not torch.equal(out, xf)
    for kind, grid in [("rotation", [0, 90, 180]), ("translation", [0, 0.2]), ("rotation_translation", [0, 0.5])]:
        prof = M.invariance_profile(Constant(1), (x, y), grid, kind=kind)
        assert prof["kind"] == kind and prof["invariance"] == [1.0] * len(grid)
    model = Linear(torch.randn(3, 64, generator=torch.Generator().manual_seed(0)))
    prof = M.invariance_profile(model, (x, y), [0, 180], kind="rotation")
    assert prof["invariance"][0] == 1.0 and prof["invariance"][1] < 1.0


# --------------------------------------------------------------------------------------------
# DeepFool distance
# --------------------------------------------------------------------------------------------
def test_average_deepfool_distance_with_given_deepfool():
    x = torch.rand(50, 1, 2, 2, generator=torch.Generator().manual_seed(6))
    model = BinaryLinear([1.0, 2.0, -1.0, 0.5], b=-0.3)

    def exact_deepfool(model, x):                # the linear boundary distance, no overshoot
        s = model.score(x).detach()
        w = model.w.detach()
        delta = -(s / w.dot(w))[:, None] * w
        return x + delta.reshape(x.shape), delta.reshape(x.shape), None
    expected = (model.score(x).abs() / model.w.norm()).mean().item()
    got = M.average_deepfool_distance(model, (x, torch.zeros(50, dtype=torch.long)), deepfool=exact_deepfool,
                                      batch_size=7)
    assert got == pytest.approx(expected, rel=1e-5)


def test_average_deepfool_distance_with_robbook_deepfool():
    pytest.importorskip("robbook.attacks")
    g = torch.Generator().manual_seed(7)
    x = 0.4 + 0.2 * torch.rand(40, 1, 2, 2, generator=g)      # far from the [0, 1] box edges
    model = BinaryLinear([1.0, 2.0, -1.0, 0.5], b=-0.5)
    y = torch.zeros(40, dtype=torch.long)
    d = M.deepfool_distances(model, (x, y), overshoot=0.0)
    exact = model.score(x).detach().abs() / model.w.norm().detach()
    assert torch.allclose(d, exact, rtol=1e-3, atol=1e-3)
    assert M.average_deepfool_distance(model, (x, y), overshoot=0.0) == pytest.approx(exact.mean().item(), rel=1e-3)


def test_average_deepfool_distance_skips_failures():
    x = torch.rand(4, 1, 1, 1)

    def fake(model, x):
        norms = torch.tensor([1.0, 3.0, float("inf"), 2.0])[:len(x)]
        return x, torch.zeros_like(x), norms
    with pytest.warns(UserWarning, match="1 of 4"):
        assert M.average_deepfool_distance(Constant(0), (x, torch.zeros(4, dtype=torch.long)), deepfool=fake) == 2.0


# --------------------------------------------------------------------------------------------
# Saliency
# --------------------------------------------------------------------------------------------
def test_input_gradients_of_linear_model_are_exact():
    g = torch.Generator().manual_seed(8)
    W = torch.randn(3, 4, generator=g)
    model = Linear(W)
    x = torch.rand(10, 1, 2, 2, generator=g)
    y = torch.randint(0, 3, (10,), generator=g)
    grads = M.input_gradients(model, (x, y), batch_size=3)
    p = torch.softmax(x.flatten(1) @ W.T, 1)
    expected = ((p - F.one_hot(y, 3)) @ W).reshape(x.shape)
    assert torch.allclose(grads, expected, atol=1e-6)
    assert model.W.grad is None                          # no parameter gradients accumulated


def test_normalize_saliency():
    g = torch.randn(5, 1, 6, 6, generator=torch.Generator().manual_seed(9))
    g[0] = 0
    clip = M.normalize_saliency(g, "clip")
    assert clip.min() >= 0 and clip.max() <= 1 and torch.all(clip[0] == 0.5)
    s = g[1].std(unbiased=False).item()
    for v, c in zip(g[1].flatten().tolist(), clip[1].flatten().tolist()):
        assert c == pytest.approx((max(min(v, 3 * s), -3 * s) / (3 * s) + 1) / 2, rel=1e-5)
    signed = M.normalize_saliency(g, "signed")
    assert torch.all(signed[0] == 0)
    assert torch.allclose(signed[1:].flatten(1).abs().amax(1), torch.ones(4))
    assert torch.equal(torch.sign(signed), torch.sign(g))
    with pytest.raises(ValueError):
        M.normalize_saliency(g, "bogus")
    maps = M.saliency_maps(Constant(0), (torch.rand(3, 1, 2, 2), torch.zeros(3, dtype=torch.long)))
    assert torch.all(maps == 0.5)                        # a constant model has zero gradients


# --------------------------------------------------------------------------------------------
# Groups, background gap
# --------------------------------------------------------------------------------------------
def _fg_bg_data(n=400, seed=10):
    """Left half (foreground) encodes the label; right half (background) encodes `bg`, which equals
    the label on the majority (first 300) and not on the minority."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    bg = y.clone()
    bg[300:] = 1 - y[300:]
    img = lambda c: (0.25 + 0.5 * c.float())[:, None, None, None].expand(-1, 1, 4, 4)
    return torch.cat([img(y), img(bg)], dim=3), y, (bg == y)


def test_group_accuracies():
    x, y, majority = _fg_bg_data()
    groups = majority.long() * 2 + y                       # 4 groups: (minority/majority) x class
    bg_model, fg_model = HalfModel("right"), HalfModel("left")
    acc = M.group_accuracy(bg_model, (x, y), groups)
    assert set(acc) == set(torch.unique(groups).tolist())
    assert acc[0] == 0.0 and acc[1] == 0.0 and acc[2] == 1.0 and acc[3] == 1.0
    assert M.worst_group_accuracy(bg_model, (x, y), groups) == 0.0
    assert M.worst_group_accuracy(fg_model, (x, y), groups) == 1.0
    assert M.majority_minority_gap(bg_model, (x, y), majority) == 1.0
    assert M.majority_minority_gap(bg_model, (x, y), groups, majority=[2, 3]) == 1.0
    assert M.majority_minority_gap(fg_model, (x, y), majority) == 0.0
    with pytest.raises(ValueError, match="majority"):
        M.majority_minority_gap(bg_model, (x, y), groups)
    assert M.group_accuracy(bg_model, (x, y), majority) == {False: 0.0, True: 1.0}


def test_groups_given_as_callable_or_in_batches():
    x, y, majority = _fg_bg_data()
    model = HalfModel("right")
    expected = M.group_accuracy(model, (x, y), majority.long())
    # the majority indicator computed from the image: does the background (right half) show the label?
    from_fn = M.group_accuracy(model, (x, y), lambda xb, yb: (xb[..., 4:].mean((1, 2, 3)) > 0.5).long() == yb)
    batches = [(x[i:i + 64], y[i:i + 64], majority[i:i + 64].long()) for i in range(0, 400, 64)]
    assert M.group_accuracy(model, batches) == expected
    assert from_fn == M.group_accuracy(model, (x, y), majority) == {False: 0.0, True: 1.0}
    assert M.group_accuracy(model, (x, y, majority.long())) == expected
    with pytest.raises(TypeError, match="Loader"):
        M.group_accuracy(model, batches, majority)
    with pytest.raises(ValueError, match="groups"):
        M.group_accuracy(model, (x, y))


def test_background_gap():
    g = torch.Generator().manual_seed(11)
    y = torch.randint(0, 3, (300,), generator=g)
    rand_bg = torch.randint(0, 3, (300,), generator=g)
    img = lambda c: (0.1 + 0.4 * c.float())[:, None, None, None].expand(-1, 1, 4, 4)
    same = (torch.cat([img(y), img(y)], 3), y)
    rand = (torch.cat([img(y), img(rand_bg)], 3), y)

    class HalfClass(nn.Module):                    # reads the class off one half's brightness
        def __init__(self, side):
            super().__init__()
            self.side = side

        def forward(self, x):
            h = (x[..., :2] if self.side == "left" else x[..., 2:]).mean((1, 2, 3))
            centres = torch.tensor([0.1, 0.5, 0.9])
            return -(h[:, None] - centres).abs()
    agree = (rand_bg == y).float().mean().item()
    assert M.background_gap(HalfClass("right"), same, rand) == pytest.approx(1 - agree)
    assert M.background_gap(HalfClass("right"), same, rand, relative=True) == pytest.approx(1 - agree)
    assert M.background_gap(HalfClass("left"), same, rand) == 0.0


# --------------------------------------------------------------------------------------------
# Relative foreground / core sensitivity
# --------------------------------------------------------------------------------------------
def _two_half_task(n=128, seed=12):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = (0.45 + 0.1 * y.float())[:, None, None, None].expand(n, 1, 8, 8).clone()
    fg = torch.zeros(8, 8)
    fg[:, :4] = 1
    return x, y, fg


def test_relative_sensitivity_formula():
    assert M.relative_sensitivity(0.6, 0.8) == pytest.approx(0.2 / 0.6)
    assert M.relative_sensitivity(0.2, 0.4) == pytest.approx(0.2 / 0.6)
    assert M.relative_sensitivity(0.8, 0.6) == pytest.approx(-0.2 / 0.6)
    assert M.relative_sensitivity(0.0, 1.0) == pytest.approx(1.0)
    assert M.relative_sensitivity(1.0, 1.0) == 0.0 and M.relative_sensitivity(0.0, 0.0) == 0.0


def test_rfs_sign_and_value():
    x, y, fg = _two_half_task()
    fg_model, bg_model = HalfModel("left"), HalfModel("right")
    r = M.region_noise_accuracy(fg_model, (x, y), fg, sigma=1.0)
    assert r["clean"] == 1.0 and r["noise_outside_mask"] == 1.0 and r["noise_in_mask"] < 0.9
    assert M.relative_foreground_sensitivity(fg_model, (x, y), fg, sigma=1.0) == pytest.approx(1.0)
    assert M.relative_foreground_sensitivity(bg_model, (x, y), fg, sigma=1.0) == pytest.approx(-1.0)
    assert M.relative_foreground_sensitivity(Constant(0, 2), (x, y), fg, sigma=1.0) == 0.0
    # soft mask 1/2 everywhere: both noisy copies are the same image, so RCS is exactly 0
    assert M.relative_core_sensitivity(fg_model, (x, y), torch.full((8, 8), 0.5), sigma=1.0) == 0.0
    # small noise changes nothing
    assert M.relative_foreground_sensitivity(fg_model, (x, y), fg, sigma=1e-4) == 0.0


def test_rfs_mask_formats_agree():
    x, y, fg = _two_half_task(n=96)
    model = HalfModel("left")
    n = len(x)
    ref = M.region_noise_accuracy(model, (x, y), fg, sigma=1.0, batch_size=32)
    variants = [fg[None, None], fg.bool(), fg.to(torch.uint8), (fg * 255).to(torch.uint8),
                fg.expand(n, 8, 8), fg.expand(n, 1, 8, 8), fg.expand(n, 1, 8, 8).bool()]
    for m in variants:
        assert M.region_noise_accuracy(model, (x, y), m, sigma=1.0, batch_size=32) == ref
    assert M.region_noise_accuracy(model, (x, y), lambda xb, yb: fg, sigma=1.0, batch_size=32) == ref
    assert M.region_noise_accuracy(model, (x, y, fg.expand(n, 8, 8)), sigma=1.0, batch_size=32) == ref
    with pytest.raises(ValueError, match="masks"):
        M.region_noise_accuracy(model, (x, y), sigma=1.0)


# --------------------------------------------------------------------------------------------
# Input types, modes, progress, NFS
# --------------------------------------------------------------------------------------------
def test_three_input_types_give_identical_numbers():
    x, y = uint8_images(n=150, hw=8, classes=3)
    bs = 32
    model = Linear(torch.randn(3, 64, generator=torch.Generator().manual_seed(13)) * 0.1)
    fg = torch.zeros(8, 8)
    fg[:, :4] = 1
    forms = {"ImageData": make_image_data(x, y), "Loader": make_loader(x, y, bs),
             "uint8 tuple": (x, y), "float tuple": (x.float() / 255, y)}

    def numbers(data):
        return (M.accuracy(model, data, batch_size=bs),
                M.attack_metrics(model, data, functools.partial(fgsm_test, eps=0.05), batch_size=bs),
                M.invariance_metrics(model, data, random_rot90, seed=3, batch_size=bs),
                M.region_noise_accuracy(model, data, fg, sigma=0.5, seed=3, batch_size=bs),
                M.input_gradients(model, data, batch_size=bs).sum().item(),
                M.robustness_profile(model, data, fgsm_test, [0.0, 0.1], batch_size=bs))
    results = {k: numbers(d) for k, d in forms.items()}
    first = results["ImageData"]
    for k, r in results.items():
        assert r[:4] == first[:4], k
        assert r[4] == pytest.approx(first[4], rel=1e-6), k
        assert r[5] == first[5], k


def test_model_modes_are_restored_and_eval_is_used():
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.5), nn.BatchNorm1d(8))
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            seen.append(all(not m.training for m in self.modules()))
            return self.head(self.body(x))
    x, y = uint8_images(n=40, hw=4)
    model = Recorder()
    model.train()
    model.head.eval()                                # a mixed state must come back as it was
    before = [m.training for m in model.modules()]
    bn_stats = model.body[3].running_mean.clone()
    M.accuracy(model, (x, y))
    M.attack_metrics(model, (x, y), functools.partial(fgsm_test, eps=0.1))
    M.invariance_rate(model, (x, y), random_rot90)
    M.input_gradients(model, (x, y))
    M.relative_foreground_sensitivity(model, (x, y), torch.ones(4, 4), sigma=0.1)
    M.group_accuracy(model, (x, y), y)
    assert [m.training for m in model.modules()] == before
    assert seen and all(seen)
    assert torch.equal(model.body[3].running_mean, bn_stats)   # BatchNorm statistics untouched

    def boom(model, x, y):
        raise RuntimeError("attack failed")
    with pytest.raises(RuntimeError):
        M.attack_metrics(model, (x, y), boom)
    assert [m.training for m in model.modules()] == before


def test_robust_accuracy_with_robbook_pgd():
    attacks = pytest.importorskip("robbook.attacks")
    g = torch.Generator().manual_seed(14)
    x, y = uint8_images(n=64, hw=4)
    model = Linear(torch.randn(3, 16, generator=g))
    acc = M.accuracy(model, (x, y))
    prof = M.robustness_profile(model, (x, y), functools.partial(attacks.pgd, steps=5), [0, 0.05, 0.2])
    assert prof["robust_accuracy"][0] == pytest.approx(acc)
    assert all(0 <= r <= acc for r in prof["robust_accuracy"])
    assert prof["robust_accuracy"][2] <= prof["robust_accuracy"][1] + 1e-9
    assert prof["one_minus_fooling_rate"][0] == 1.0 and prof["one_minus_fooling_rate"][2] < 1.0


def test_progress_bar_does_not_change_results(capsys):
    x, y = uint8_images(n=64)
    model = Linear(torch.randn(3, 64, generator=torch.Generator().manual_seed(15)))
    assert M.accuracy(model, (x, y), progress=True, batch_size=8) == M.accuracy(model, (x, y), progress=False)


def test_bad_inputs():
    x, y = uint8_images(n=10)
    with pytest.raises(ValueError, match="length"):
        M.accuracy(Constant(0), (x, y[:5]))
    with pytest.raises(TypeError, match="Dataset"):
        M.accuracy(Constant(0), torch.utils.data.TensorDataset(x, y))


def test_nfs_is_reexported():
    moayeri = pytest.importorskip("robbook.theory.moayeri")
    assert M.nfs is moayeri.nfs
    with pytest.raises(AttributeError):
        M.not_a_metric

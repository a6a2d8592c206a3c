"""Tests of robbook.models: shapes, features/head split, normalisation inside, gradients,
exact p4 equivariance (Cohen & Welling 2016) and robustness-checkpoint loading."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from robbook.models import (MODELS, NORMALIZATION, KamathGCNN, P4ConvP4, P4ConvZ2, RobModel, arch_kwargs, build_model,
                            count_parameters, load_robustness_checkpoint, p4_group_max_pool,
                            p4_spatial_avg_pool, p4_spatial_max_pool, rotate_p4)

EXPECTED = ["mnist_cnn", "kamath_stdcnn", "kamath_gcnn", "linear", "resnet18", "resnet50", "preact_resnet18",
            "vgg16", "wrn34_10", "p4_resnet18", "imagenet_resnet18", "imagenet_resnet50"]

# small but faithful settings for the forward-pass tests: (kwargs, input shape)
CASES = {
    "mnist_cnn": ({}, (2, 1, 28, 28)),
    "kamath_stdcnn": ({}, (2, 1, 28, 28)),
    "kamath_gcnn": ({}, (2, 1, 28, 28)),
    "linear": ({"num_classes": 2}, (2, 1, 28, 28)),
    "resnet18": ({}, (2, 3, 32, 32)),
    "resnet50": ({}, (2, 3, 32, 32)),
    "preact_resnet18": ({}, (2, 3, 32, 32)),
    "vgg16": ({}, (2, 3, 32, 32)),
    "wrn34_10": ({"depth": 10, "widen_factor": 1}, (2, 3, 32, 32)),
    "p4_resnet18": ({"width": 8}, (2, 3, 32, 32)),
    "imagenet_resnet18": ({"num_classes": 7}, (2, 3, 64, 64)),
    "imagenet_resnet50": ({"num_classes": 7}, (2, 3, 64, 64)),
}
FEATURE_DIM = {"mnist_cnn": 1024, "kamath_stdcnn": 50, "kamath_gcnn": 50, "linear": 784, "resnet18": 512,
               "resnet50": 2048, "preact_resnet18": 512, "vgg16": 512, "wrn34_10": 64, "p4_resnet18": 64,
               "imagenet_resnet18": 512, "imagenet_resnet50": 2048}


def rot(x, k=1):
    return torch.rot90(x, k, dims=(-2, -1))


def test_model_names():
    assert MODELS == EXPECTED
    assert set(CASES) == set(MODELS)


def test_unknown_model_lists_names():
    with pytest.raises(ValueError) as e:
        build_model("resnet19")
    msg = str(e.value)
    assert "resnet19" in msg and all(n in msg for n in MODELS)


def test_unknown_kwarg_is_named():
    with pytest.raises(TypeError, match="widen"):
        build_model("resnet18", widen=3)


@pytest.mark.parametrize("name", EXPECTED)
def test_shapes_features_head_and_gradients(name):
    torch.manual_seed(0)
    kw, shape = CASES[name]
    m = build_model(name, **kw).eval()
    assert isinstance(m, RobModel) and isinstance(m.head, nn.Linear) and isinstance(m.normalize, nn.Module)
    k = kw.get("num_classes", 10)
    x = torch.rand(shape, requires_grad=True)
    out = m(x)
    assert out.shape == (shape[0], k)
    f = m.features(x)
    assert f.shape == (shape[0], FEATURE_DIM[name]) == (shape[0], m.feature_dim)
    assert torch.allclose(m.head(f), out, atol=1e-5, rtol=1e-5)
    # gradients reach the input (attacks need them) and are not all zero
    F.cross_entropy(out, torch.arange(shape[0]) % k).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert m.arch == name and m.num_classes == k and m.in_channels == shape[1]


def test_train_mode_batch_forward():
    m = build_model("resnet18", width=8).train()
    out = m(torch.rand(4, 3, 32, 32))
    assert out.shape == (4, 10)


@pytest.mark.parametrize("name,size", [("resnet18", 64), ("vgg16", 64), ("p4_resnet18", 64),
                                       ("kamath_gcnn", 32), ("mnist_cnn", 32)])
def test_other_input_sizes(name, size):
    kw = {"width": 8} if name == "p4_resnet18" else {}
    if name in ("kamath_gcnn", "mnist_cnn"):
        kw["input_size"] = size
    m = build_model(name, num_classes=5, **kw).eval()
    assert m(torch.rand(1, m.in_channels, size, size)).shape == (1, 5)


def test_parameter_counts_match_the_standard_architectures():
    with torch.device("meta"):
        counts = {n: count_parameters(build_model(n, num_classes=1000 if n.startswith("imagenet") else 10))
                  for n in ("mnist_cnn", "kamath_stdcnn", "resnet18", "resnet50", "wrn34_10",
                            "imagenet_resnet18", "imagenet_resnet50", "p4_resnet18")}
    assert counts["mnist_cnn"] == 3_274_634          # Madry et al. MNIST challenge model
    assert counts["kamath_stdcnn"] == 23_010         # Kamath et al. Table 1
    assert counts["resnet18"] == 11_173_962
    assert counts["resnet50"] == 23_520_842
    assert counts["wrn34_10"] == 46_160_474          # TRADES WRN-34-10
    assert counts["imagenet_resnet18"] == 11_689_512  # torchvision
    assert counts["imagenet_resnet50"] == 25_557_032
    assert abs(counts["p4_resnet18"] / counts["resnet18"] - 1) < 0.01


def test_kamath_gcnn_layers_follow_table1():
    m = build_model("kamath_gcnn")
    convs = [m.conv1, m.conv2, m.conv3, m.conv4]
    assert isinstance(convs[0], P4ConvZ2) and all(isinstance(c, P4ConvP4) for c in convs[1:])
    assert [c.out_channels for c in convs] == [10, 10, 20, 20]
    assert all(c.kernel_size == 3 and c.padding == 0 for c in convs)
    assert m.pooled(torch.rand(1, 1, 28, 28)).shape == (1, 20, 4, 4, 4)
    assert m.head.in_features == 50 and isinstance(m.dropout, nn.Dropout) and m.dropout.p == 0.5


def test_wrn_depth_validation_and_width():
    m = build_model("wrn34_10", depth=16, widen_factor=2)
    assert m.feature_dim == 128 and len(m.block1) == 2
    with pytest.raises(ValueError, match="6n"):
        build_model("wrn34_10", depth=33)


def test_narrow_imagenet_resnets_and_mnist_cnn_keep_every_layer():
    """`width` cuts channels, never layers: a tiny run's ImageNet ResNet has torchvision's modules in the same order
    (every width scaled by width / 64), width 64 is torchvision's network, and `mnist_cnn` keeps its 2 convs."""
    import torchvision
    for name, depth in (("imagenet_resnet18", 18), ("imagenet_resnet50", 50)):
        full, narrow = build_model(name, num_classes=9), build_model(name, num_classes=9, width=8)
        tv = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        assert [k for k, _ in full.net.named_parameters()] == [k for k, _ in tv.named_parameters() if not k.startswith("fc.")]
        assert [k for k, _ in narrow.net.named_parameters()] == [k for k, _ in full.net.named_parameters()]
        assert narrow.net.conv1.out_channels == 8 and narrow.net.layer1[0].conv1.out_channels == 8
        assert narrow.head.in_features == full.head.in_features // 8
        assert narrow(torch.rand(2, 3, 32, 32)).shape == (2, 9)
    m = build_model("mnist_cnn", width=8, hidden=64)
    assert (m.conv1.out_channels, m.conv2.out_channels, m.fc1.in_features) == (8, 16, 16 * 7 * 7)
    with pytest.raises(ValueError, match="width"):
        build_model("imagenet_resnet18", width=0)


# --- normalisation -------------------------------------------------------------------------

def test_default_normalisation_per_family():
    assert build_model("mnist_cnn").normalize.mean.flatten().tolist() == pytest.approx(NORMALIZATION["mnist"][0])
    assert build_model("vgg16").normalize.std.flatten().tolist() == pytest.approx(NORMALIZATION["cifar10"][1])
    m = build_model("imagenet_resnet18")
    assert m.normalize.mean.flatten().tolist() == pytest.approx(NORMALIZATION["imagenet"][0])
    m = build_model("resnet18", dataset="cifar100", num_classes=100)
    assert m.normalize.mean.flatten().tolist() == pytest.approx(NORMALIZATION["cifar100"][0])
    # channel count follows in_channels, statistics follow the channel count
    m = build_model("resnet18", in_channels=1, width=8)
    assert m.in_channels == 1 and m.normalize.mean.item() == pytest.approx(0.1307)
    m = build_model("kamath_gcnn", in_channels=3, dataset="cifar10", input_size=32)
    assert m.in_channels == 3
    assert build_model("resnet18", width=8, dataset="none").in_channels == 3
    with pytest.raises(ValueError, match="known"):
        build_model("resnet18", dataset="svhn")
    with pytest.raises(ValueError, match="input channels"):
        build_model("resnet18", mean=[0.5, 0.5], std=[0.2, 0.2], in_channels=3)


def test_normalisation_is_inside_the_model():
    torch.manual_seed(0)
    mean, std = [0.2, 0.4, 0.6], [0.3, 0.2, 0.1]
    m = build_model("resnet18", width=8, mean=mean, std=std).eval()
    assert "normalize.mean" in m.state_dict() and "normalize.std" in m.state_dict()
    x = torch.rand(2, 3, 32, 32)
    z = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    # the model applied to [0,1] images equals the body applied to the normalised images
    assert torch.allclose(m(x), m.head(m._embed(z)), atol=1e-5)
    # and differs from feeding normalised images (normalisation is not done twice by accident ...)
    assert not torch.allclose(m(x), m(z.clamp(0, 1)), atol=1e-3)
    # ... and the statistics matter
    m2 = build_model("resnet18", width=8, mean=0.5, std=0.5).eval()
    m2.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("normalize")}, strict=False)
    assert not torch.allclose(m(x), m2(x), atol=1e-3)
    assert m2.normalize.mean.flatten().tolist() == [0.5] * 3


def test_normalize_rejects_wrong_channels():
    m = build_model("mnist_cnn")
    with pytest.raises(ValueError, match=r"\[N, 1, H, W\]"):
        m(torch.rand(1, 3, 28, 28))


# --- p4 equivariance --------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,padding,stride,size", [(3, 0, 1, 28), (3, 1, 1, 32), (5, 2, 1, 16), (1, 0, 1, 8),
                                                        (3, 1, 2, 33), (4, 0, 1, 4), (4, 1, 2, 16)])
def test_p4_layers_are_exactly_equivariant(kernel, padding, stride, size):
    torch.manual_seed(0)
    lift = P4ConvZ2(3, 5, kernel, stride=stride, padding=padding).double()
    conv = P4ConvP4(5, 4, kernel, stride=stride, padding=padding).double()
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    y = torch.randn(2, 5, 4, size, size, dtype=torch.float64)
    for k in (1, 2, 3):
        # rotating the input rotates the planes and cyclically shifts the rotation axis (eq. p4equiv)
        assert torch.allclose(lift(rot(x, k)), rotate_p4(lift(x), k), atol=1e-12)
        assert torch.allclose(conv(rotate_p4(y, k)), rotate_p4(conv(y), k), atol=1e-12)
    if kernel > 1:  # and the shift is really there: the output is not merely spatially rotated
        assert not torch.allclose(lift(rot(x)), rot(lift(x)), atol=1e-3)


def test_asymmetric_sampling_grid_breaks_equivariance():
    "A 3x3 stride-2 layer on an even size is not exactly equivariant: the check can fail."
    torch.manual_seed(0)
    lift = P4ConvZ2(3, 5, 3, stride=2, padding=1).double()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    assert not torch.allclose(lift(rot(x)), rotate_p4(lift(x)), atol=1e-3)
    conv = nn.Conv2d(3, 5, 3, padding=1).double()          # an ordinary conv is not rotation-equivariant
    assert not torch.allclose(conv(rot(x)), rot(conv(x)), atol=1e-3)


@settings(max_examples=12, deadline=None)
@given(kernel=st.integers(1, 5), padding=st.integers(0, 2), size=st.integers(10, 13),
       k=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_p4_stack_equivariance_property(kernel, padding, size, k, seed):
    torch.manual_seed(seed)
    lift = P4ConvZ2(2, 3, kernel, padding=padding).double()
    conv = P4ConvP4(3, 2, kernel, padding=padding).double()
    bn = nn.BatchNorm3d(3).double().train()               # batch statistics shared over the rotation axis

    def phi(z):
        return conv(F.relu(bn(lift(z))))
    x = torch.randn(2, 2, size, size, dtype=torch.float64)
    assert torch.allclose(phi(rot(x, k)), rotate_p4(phi(x), k), atol=1e-9)


def test_filter_bank_cache_follows_the_weights():
    torch.manual_seed(0)
    conv = P4ConvP4(3, 2, 3, padding=1)
    y = torch.randn(2, 3, 4, 6, 6)
    ref = conv(y)                                           # grad enabled: bank rebuilt, weights get gradients
    ref.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert torch.equal(conv(y), ref.detach())           # cached bank, same result
        conv.weight.mul_(2.0)                               # an optimiser-style in-place update ...
        assert torch.allclose(conv(y), 2 * (ref.detach() - conv.bias.view(1, -1, 1, 1, 1)) + conv.bias.view(1, -1, 1, 1, 1), atol=1e-5)
    conv.load_state_dict({"weight": torch.zeros_like(conv.weight), "bias": torch.zeros(2)})
    with torch.no_grad():
        assert conv(y).abs().max() == 0                     # ... and load_state_dict invalidate the cache
    # frozen weights, gradients w.r.t. the input (how attacks use a model): twice, through the cached bank
    lift = P4ConvZ2(1, 2, 3).requires_grad_(False)
    x = torch.randn(1, 1, 7, 7, requires_grad=True)
    for _ in range(2):
        g, = torch.autograd.grad(lift(x).pow(2).sum(), x)
    lift.requires_grad_(True)
    g2, = torch.autograd.grad(lift(x).pow(2).sum(), x)
    assert torch.allclose(g, g2)


def test_rotate_p4_is_a_group_action():
    y = torch.randn(1, 2, 4, 5, 5)
    assert torch.equal(rotate_p4(y, 4), y)
    assert torch.equal(rotate_p4(rotate_p4(y, 1), 2), rotate_p4(y, 3))
    assert torch.equal(rotate_p4(y, 1)[:, :, 1], rot(y[:, :, 0]))


def test_pooling_helpers():
    y = torch.randn(2, 3, 4, 8, 8, dtype=torch.float64)
    for k in (1, 2, 3):
        assert torch.allclose(p4_spatial_max_pool(rotate_p4(y, k)), rotate_p4(p4_spatial_max_pool(y), k))
        assert torch.allclose(p4_spatial_avg_pool(rotate_p4(y, k)), rotate_p4(p4_spatial_avg_pool(y), k))
        assert torch.allclose(p4_group_max_pool(rotate_p4(y, k)), rot(p4_group_max_pool(y), k))
    assert p4_spatial_max_pool(y).shape == (2, 3, 4, 4, 4) and p4_group_max_pool(y).shape == (2, 3, 8, 8)


def test_kamath_gcnn_pooled_map_equivariant_and_output_invariant():
    torch.manual_seed(0)
    m = build_model("kamath_gcnn").double().eval()
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    for k in (1, 2, 3):
        assert torch.allclose(m.pooled(rot(x, k)), rotate_p4(m.pooled(x), k), atol=1e-10)
        assert torch.allclose(m.features(rot(x, k)), m.features(x), atol=1e-10)
        assert torch.allclose(m(rot(x, k)), m(x), atol=1e-10)
    # the StdCNN of Table 1 is not invariant (so the check above can fail)
    s = build_model("kamath_stdcnn").double().eval()
    assert not torch.allclose(s(rot(x)), s(x), atol=1e-4)
    # nor is the GCNN with a flattening readout
    f = build_model("kamath_gcnn", readout="flatten").double().eval()
    assert not torch.allclose(f(rot(x)), f(x), atol=1e-4)


def test_p4_resnet18_is_rotation_invariant():
    torch.manual_seed(0)
    m = build_model("p4_resnet18").eval()               # full width, batch 1, small image
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        out, feats = m(x), m.equivariant_features(x)
        for k in (1, 2, 3):
            assert torch.allclose(m(rot(x, k)), out, atol=1e-4, rtol=1e-4)
        assert torch.allclose(m.equivariant_features(rot(x)), rotate_p4(feats), atol=1e-4, rtol=1e-4)
    r = build_model("resnet18").eval()
    with torch.no_grad():
        assert not torch.allclose(r(rot(x)), r(x), atol=1e-4)


def test_p4_resnet18_invariant_in_train_mode_too():
    torch.manual_seed(1)
    m = build_model("p4_resnet18", width=4).double().train()
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    assert torch.allclose(m(rot(x, 1)), m(x), atol=1e-9)


# --- robustness checkpoints --------------------------------------------------------------------

def _robustness_state_dict(weights: dict, mean, std):
    "The layout of a MadryLab robustness checkpoint's 'model' entry (DataParallel-wrapped AttackerModel)."
    sd = {}
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    for prefix in ("module.", "module.attacker."):
        sd[prefix + "normalizer.new_mean"], sd[prefix + "normalizer.new_std"] = m, s
        sd.update({f"{prefix}model.{k}": v for k, v in weights.items()})
    return sd


def _perturb_bn(model):
    "Give batch-norm buffers non-default values, so that loading them is tested too."
    g = torch.Generator().manual_seed(0)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)


def test_load_robustness_checkpoint_imagenet(tmp_path):
    import torchvision
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None, num_classes=9).eval()
    _perturb_bn(tv)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    path = tmp_path / "robust.pt"
    torch.save({"model": _robustness_state_dict(tv.state_dict(), mean, std), "epoch": 90}, path)
    m = load_robustness_checkpoint(path, arch="resnet18", num_classes=9)
    assert m.arch == "imagenet_resnet18" and not m.training
    x = torch.rand(2, 3, 64, 64)
    z = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(m(x), tv(z), atol=1e-5)
    assert m.normalize.std.flatten().tolist() == pytest.approx(std)
    # 'state_dict' instead of 'model', num_classes taken from the file
    torch.save({"state_dict": _robustness_state_dict(tv.state_dict(), mean, std)}, tmp_path / "old.pt")
    m2 = load_robustness_checkpoint(tmp_path / "old.pt", arch="imagenet_resnet18", num_classes=None)
    assert m2.num_classes == 9
    with torch.no_grad():
        assert torch.allclose(m2(x), tv(z), atol=1e-5)


def test_load_robustness_checkpoint_cifar_layout(tmp_path):
    torch.manual_seed(0)
    ref = build_model("resnet18").eval()
    _perturb_bn(ref)
    body = {("linear." + k[5:] if k.startswith("head.") else k): v
            for k, v in ref.state_dict().items() if not k.startswith("normalize.")}
    mean, std = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]
    torch.save({"model": _robustness_state_dict(body, mean, std)}, tmp_path / "cifar.pt")
    m = load_robustness_checkpoint(tmp_path / "cifar.pt", arch="resnet18", num_classes=10)
    assert m.arch == "resnet18"
    x = torch.rand(2, 3, 32, 32)
    ref.normalize.mean.copy_(torch.tensor(mean).view(1, 3, 1, 1))
    ref.normalize.std.copy_(torch.tensor(std).view(1, 3, 1, 1))
    with torch.no_grad():
        assert torch.allclose(m(x), ref(x), atol=1e-5)


def test_load_robustness_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_robustness_checkpoint(tmp_path / "nope.pt")
    torch.save({"model": {"encoder.conv.weight": torch.zeros(1)}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"module\.model\..*encoder\.conv"):
        load_robustness_checkpoint(tmp_path / "bad.pt")
    torch.save({"optimizer": {}, "epoch": 1}, tmp_path / "nomodel.pt")
    with pytest.raises(ValueError, match="'model' or 'state_dict'.*epoch"):
        load_robustness_checkpoint(tmp_path / "nomodel.pt")
    import torchvision
    tv = torchvision.models.resnet18(weights=None, num_classes=4)
    sd = _robustness_state_dict(tv.state_dict(), [0.5] * 3, [0.5] * 3)
    torch.save({"model": sd}, tmp_path / "four.pt")
    with pytest.raises(ValueError, match="4 classes"):
        load_robustness_checkpoint(tmp_path / "four.pt", arch="resnet18", num_classes=1000)
    with pytest.raises(ValueError, match="do not fit"):       # a resnet18 file read as a resnet50
        load_robustness_checkpoint(tmp_path / "four.pt", arch="resnet50", num_classes=4)
    no_norm = {k: v for k, v in sd.items() if "normalizer" not in k}
    torch.save({"model": no_norm}, tmp_path / "nonorm.pt")
    with pytest.raises(ValueError, match="new_mean"):
        load_robustness_checkpoint(tmp_path / "nonorm.pt", arch="resnet18", num_classes=4)
    m = load_robustness_checkpoint(tmp_path / "nonorm.pt", arch="resnet18", num_classes=4, mean=0.5, std=0.25)
    assert m.normalize.std.flatten().tolist() == [0.25] * 3
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read"):
        load_robustness_checkpoint(tmp_path / "junk.pt")


def test_tiny_arch_kwargs_keep_every_layer_and_cut_the_width():
    "A tiny run's widths (`profiles.TINY_ARCH_KWARGS`): the same layers (bar WRN's first 1x1 shortcut), far fewer weights."
    from robbook.profiles import TINY_ARCH_KWARGS
    convs = lambda m: sum(isinstance(x, nn.Conv2d) or "P4Conv" in type(x).__name__ for x in m.modules())
    for name, kw in TINY_ARCH_KWARGS.items():
        full, tiny = build_model(name), build_model(name, **arch_kwargs(name, {}, TINY_ARCH_KWARGS))
        assert convs(full) - convs(tiny) in ((0, 1) if name == "wrn34_10" else (0,)), name
        assert count_parameters(tiny) < count_parameters(full) / 6, name
        shape = (2, 1, 28, 28) if name == "mnist_cnn" else (2, 3, 32, 32)
        assert tiny(torch.rand(shape)).shape == (2, 10)


def test_arch_kwargs_lays_overrides_over_the_chapters_and_checks_names():
    assert arch_kwargs("wrn34_10", {"depth": 34, "widen_factor": 10}, {"wrn34_10": {"widen_factor": 1}}) == \
        {"depth": 34, "widen_factor": 1}
    assert arch_kwargs("vgg16", {"cfg": [8, "M"]}, {"resnet18": {"width": 8}}) == {"cfg": [8, "M"]}
    assert arch_kwargs("vgg16", None, None) == {}
    with pytest.raises(ValueError, match="unknown architecture"):
        arch_kwargs("vgg16", {}, {"resnet_18": {"width": 8}})
    with pytest.raises(TypeError, match="must be a dict"):
        arch_kwargs("vgg16", {}, [("vgg16", {})])

"""Tests of robbook.ilyas: dataset constructions of Ilyas et al. (2019) (eq. (6), eq. (7)), the controls, the
on-disk dataset cache, the reader of the authors' released datasets, and a robustness checkpoint as source model."""
import numpy as np
import pytest
import torch

from robbook import ilyas as IL
from robbook.data import ImageData
from robbook.models import build_model, load_robustness_checkpoint
from robbook.train import TrainConfig, train

CLASSES = [str(i) for i in range(10)]


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny batches: one torch thread is faster


def _data(n=40, seed=0, shape=(1, 28, 28)):
    g = torch.Generator().manual_seed(seed)
    return ImageData((torch.rand((n, *shape), generator=g) * 255).to(torch.uint8), torch.arange(n) % 10, CLASSES, "toy")


def _net(seed=0, name="kamath_stdcnn"):
    torch.manual_seed(seed)
    return build_model(name, dropout=0.0).eval() if name == "kamath_stdcnn" else build_model(name).eval()


def test_l2_scale_and_to_image_data():
    assert IL.l2_scale((3, 32, 32)) == pytest.approx(1.0)
    assert IL.l2_scale((1, 28, 28)) == pytest.approx(np.sqrt(784 / 3072))
    x = torch.rand(8, 1, 5, 5) * 1.2 - 0.1
    d = IL.to_image_data(x, torch.arange(8), CLASSES, "t")
    assert d.x.dtype == torch.uint8
    assert (d.float() - x.clamp(0, 1)).abs().max() <= 0.5 / 255 + 1e-6


def test_cached_dataset_builds_once_and_keys_matter(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return _data(6, seed=len(calls))

    a = IL.cached_dataset(tmp_path, {"kind": "k", "p": 1}, build)
    b = IL.cached_dataset(tmp_path, {"kind": "k", "p": 1}, build)
    assert len(calls) == 1 and torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.classes == b.classes
    c = IL.cached_dataset(tmp_path, {"kind": "k", "p": 2}, build)
    assert len(calls) == 2 and not torch.equal(a.x, c.x)
    assert not list(tmp_path.rglob("*.tmp*"))


def test_model_fingerprint_tracks_weights():
    a, b = _net(0), _net(0)
    assert IL.model_fingerprint(a) == IL.model_fingerprint(b)
    with torch.no_grad():
        b.head.bias += 1e-3
    assert IL.model_fingerprint(a) != IL.model_fingerprint(b)


@pytest.mark.parametrize("start", ["image", "noise"])
def test_robust_dataset_matches_representations_and_keeps_labels(start):
    net, d = _net(), _data(24)
    out = IL.robust_dataset(net, d, steps=80, step_size=0.3, start=start, seed=1, batch_size=10, progress=False)
    assert torch.equal(out.y, d.y) and out.x.shape == d.x.shape and out.x.dtype == torch.uint8
    before = IL.representation_gap(net, d.subset(torch.roll(torch.arange(24), 3)), d)
    after = IL.representation_gap(net, out, d)
    assert after < 0.5 * before
    assert (out.x != d.x).any(dim=(1, 2, 3)).all()                # never the target image itself


def test_robust_dataset_start_is_independent_of_the_image():
    d = _data(10)
    out = IL.robust_dataset(_net(), d, steps=0, step_size=0.1, start="image", seed=0, progress=False)
    # with zero steps each x_r is its start image: another image of the set, never x itself
    idx = [next(j for j in range(10) if torch.equal(out.x[i], d.x[j])) for i in range(10)]
    assert all(j != i for i, j in enumerate(idx)) and sorted(idx) == list(range(10))
    with pytest.raises(ValueError, match="start"):
        IL.robust_dataset(_net(), d, steps=1, step_size=0.1, start="zeros")


def test_target_labels():
    y = torch.arange(100) % 10
    assert torch.equal(IL.target_labels(y, 10, "det"), (y + 1) % 10)
    r = IL.target_labels(y, 10, "rand", seed=3)
    assert torch.equal(r, IL.target_labels(y, 10, "rand", seed=3)) and r.min() >= 0 and r.max() <= 9
    assert len(r.unique()) > 5
    with pytest.raises(ValueError, match="kind"):
        IL.target_labels(y, 10, "perm")


@pytest.mark.parametrize("kind", ["rand", "det"])
def test_nonrobust_dataset_targets_and_budget(kind):
    net, d = _net(2, "linear"), _data(30)
    eps = 3.0
    out = IL.nonrobust_dataset(net, d, eps=eps, steps=40, step_size=0.3, kind=kind, seed=4, progress=False)
    assert torch.equal(out.y, IL.target_labels(d.y, 10, kind, 4))
    norms = (out.float() - d.float()).flatten(1).norm(dim=1)
    assert norms.max() <= eps + 28 * 0.5 / 255 + 1e-4
    with torch.no_grad():
        hit = (net(out.float()).argmax(1) == out.y).float().mean()
    assert hit > 0.9                                           # the source model assigns the new labels


def test_targeted_success_matches_the_dataset_and_grows_with_eps():
    net, d = _net(2, "linear"), _data(30)
    small = IL.targeted_success(net, d, eps=0.01, steps=10, step_size=0.002, kind="det", seed=1)
    big = IL.targeted_success(net, d, eps=3.0, steps=40, step_size=0.3, kind="det", seed=1)
    adv = IL.nonrobust_dataset(net, d, eps=3.0, steps=40, step_size=0.3, kind="det", seed=1, progress=False)
    with torch.no_grad():
        direct = float((net(adv.float()).argmax(1) == adv.y).float().mean())
    assert big == pytest.approx(direct) and big > 0.9
    assert small < 0.5 < big


def test_calibrate_eps_returns_the_first_budget_that_reaches_the_target():
    net, d = _net(2, "linear"), _data(30)
    grid = [4.0, 0.01, 0.3, 1.0, 3.0]                           # unsorted on purpose
    eps, rates = IL.calibrate_eps(net, d, grid, steps=40, rel_step=0.1, target=0.9, seed=1)
    tried = sorted(rates)
    assert tried == sorted(grid)[:len(tried)] and eps == tried[-1]   # scanned upwards, stopped at the first hit
    assert rates[eps] >= 0.9 and all(r < 0.9 for e, r in rates.items() if e < eps)
    # an unreachable target scans the whole grid and returns its largest budget, with the shortfall in the dict
    eps2, rates2 = IL.calibrate_eps(net, d, [0.001, 0.002], steps=5, rel_step=0.2, target=1.0, seed=1)
    assert eps2 == 0.002 and sorted(rates2) == [0.001, 0.002] and max(rates2.values()) < 1.0
    with pytest.raises(ValueError, match="eps_grid"):
        IL.calibrate_eps(net, d, [0.0, 1.0], steps=5, rel_step=0.2)
    with pytest.raises(ValueError, match="target"):
        IL.calibrate_eps(net, d, [1.0], steps=5, rel_step=0.2, target=1.5)


def test_nontransferable_dataset_keeps_other_models_on_y():
    src, other = _net(0, "linear"), _net(1, "linear")
    d = _data(30)
    plain = IL.nonrobust_dataset(src, d, eps=8.0, steps=60, step_size=0.8, kind="det", progress=False)
    bug = IL.nontransferable_dataset(src, [other], d, eps=8.0, steps=60, step_size=0.8, kind="det", progress=False)
    assert torch.equal(bug.y, plain.y)
    with torch.no_grad():
        other_y = lambda s: (other(s.float()).argmax(1) == d.y).float().mean()
        src_t = (src(bug.float()).argmax(1) == bug.y).float().mean()
    assert src_t > 0.8 and other_y(bug) > other_y(plain) + 0.3
    assert (bug.float() - d.float()).flatten(1).norm(dim=1).max() <= 8.0 + 0.1
    assert src.training is False and other.training is False


def test_pattern_dataset_is_one_pattern_per_target():
    grey = ImageData(torch.full((30, 1, 8, 8), 128, dtype=torch.uint8), torch.arange(30) % 10, CLASSES, "grey")
    out = IL.pattern_dataset(grey, eps=0.5, kind="det", seed=0)
    dp = out.float() - grey.float()
    assert torch.equal(out.y, (grey.y + 1) % 10)
    assert torch.allclose(dp[0], dp[10], atol=1.01 / 255) and not torch.allclose(dp[0], dp[1], atol=0.01)
    assert torch.allclose(dp.flatten(1).norm(dim=1), torch.full((30,), 0.5), atol=0.02)


def test_pgd_minimize_stays_in_ball_and_box():
    x = torch.rand(5, 1, 6, 6)
    target = torch.zeros(1, 1, 6, 6)
    out = IL.pgd_minimize(lambda z: (z - target).flatten(1).norm(dim=1), x, eps=0.7, steps=30, step_size=0.1)
    assert ((out - x).flatten(1).norm(dim=1) <= 0.7 + 1e-5).all() and out.min() >= 0 and out.max() <= 1
    assert ((out - target).flatten(1).norm(dim=1) < (x - target).flatten(1).norm(dim=1) - 0.5).all()


# ---- released datasets -------------------------------------------------------------------------------
def _write_release(root, names=("d_robust_CIFAR", "ddet_CIFAR"), n=(6, 4), nhwc=False, scale=1.0):
    for sub in names:
        (root / sub).mkdir(parents=True)
        ims = [torch.rand(k, 3, 32, 32) * scale for k in n]
        if nhwc:
            ims = [t.permute(0, 2, 3, 1) for t in ims]
        torch.save(ims, root / sub / "CIFAR_ims")                       # a list of batches, as released
        torch.save([torch.arange(k) % 10 for k in n], root / sub / "CIFAR_lab")
    return root


def test_read_released_layout_and_training_on_it(tmp_path):
    root = _write_release(tmp_path / "release")
    got = IL.read_released(root)
    assert set(got) == {"robust", "det"}
    d = got["robust"]
    assert d.x.shape == (10, 3, 32, 32) and d.x.dtype == torch.uint8 and d.y.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    assert d.classes[0] == "airplane"
    raw = torch.cat(torch.load(root / "d_robust_CIFAR" / "CIFAR_ims"))
    assert (d.float() - raw).abs().max() <= 0.5 / 255 + 1e-6
    res = train(TrainConfig(model="linear", num_classes=10, epochs=1, batch_size=4, optimizer="adam", lr=1e-3,
                            weight_decay=0.0), d, device="cpu", cache_dir=tmp_path / "cache", progress=False)
    assert len(res.history) == 1
    status = IL.released_status(root)
    assert status["robust"].startswith("found") and status["non_robust"].startswith("not run here")
    assert "d_non_robust_CIFAR/CIFAR_ims" in status["non_robust"]
    assert all(v.startswith("not run here") for v in IL.released_status(None).values())


def test_read_released_single_tensor_nhwc_and_errors(tmp_path):
    root = _write_release(tmp_path / "a", names=("drand_CIFAR",), n=(5,), nhwc=True)
    torch.save(torch.load(root / "drand_CIFAR" / "CIFAR_lab")[0], root / "drand_CIFAR" / "CIFAR_lab")  # a plain tensor
    got = IL.read_released(root)
    assert list(got) == ["rand"] and got["rand"].x.shape == (5, 3, 32, 32)
    bad = _write_release(tmp_path / "b", names=("ddet_CIFAR",), n=(3,), scale=255.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        IL.read_released(bad)
    with pytest.raises(FileNotFoundError, match="released_dir"):
        IL.read_released(tmp_path / "missing")


# ---- a robustness checkpoint as the robust source model ---------------------------------------------------
def test_robustness_checkpoint_as_source_model(tmp_path):
    torch.manual_seed(0)
    net = build_model("resnet18", num_classes=10)
    sd = {("module.model." + ("linear." + k[5:] if k.startswith("head.") else k)): v
          for k, v in net.state_dict().items() if not k.startswith("normalize.")}
    sd["module.normalizer.new_mean"] = net.normalize.mean.detach().clone().view(3, 1, 1)   # the robustness layout
    sd["module.normalizer.new_std"] = net.normalize.std.detach().clone().view(3, 1, 1)
    torch.save({"model": sd, "epoch": 1}, tmp_path / "cifar_l2_0_5.pt")
    src = load_robustness_checkpoint(tmp_path / "cifar_l2_0_5.pt", arch="resnet18", num_classes=10)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(src(x), net.eval()(x), atol=1e-5)
    d = ImageData((x * 255).to(torch.uint8), torch.arange(3), CLASSES, "cifar-toy")
    out = IL.robust_dataset(src, d, steps=3, step_size=0.5, seed=0, progress=False)
    assert out.x.shape == d.x.shape and torch.equal(out.y, d.y)

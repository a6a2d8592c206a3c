"""robbook.distshift: spurious-feature data set builders and the ImageNet-suite readers, each reader
exercised on a tiny synthetic copy of its published directory layout (generated in tmp_path)."""
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from fakedata import (code, wnid_tree, write_imagenet9, write_imagenet_c, write_objectnet,
                      write_rival10, write_salient_imagenet, write_suite_checkpoint, write_waterbirds, wnids)
from robbook import distshift as D
from robbook import metrics as M
from robbook.data import DatasetNotFoundError, ImageData


# --- builders -----------------------------------------------------------------------------------

def _objects(n=400, k=10, size=28, seed=0):
    "Grey 'objects': a bright square (varying size) on black, labels balanced."
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    for i in range(n):
        r = 4 + int(torch.randint(0, 6, (1,), generator=g))
        c = size // 2
        x[i, 0, c - r:c + r, c - r:c + r] = 120 + int(torch.randint(0, 130, (1,), generator=g))
    y = torch.arange(n) % k
    return ImageData(x, y, [f"c{j}" for j in range(k)], "objects")


def test_majority_assignment_exact_per_class():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    m = D.majority_assignment(y, 0.8, seed=1)
    for c, n in [(0, 50), (1, 30), (2, 20)]:
        assert int(m[y == c].sum()) == round(0.8 * n)
    assert not D.majority_assignment(y, 0.0).any() and D.majority_assignment(y, 1.0).all()
    with pytest.raises(ValueError):
        D.majority_assignment(y, 1.5)


@pytest.mark.parametrize("rho", [1.0, 4.0, 32.0])
def test_color_shift_groups_and_channels(rho):
    data = _objects(400)
    s = D.color_shift(data, rho, shift=0.1, seed=0)
    assert s.data.x.shape == (400, 3, 28, 28) and s.data.x.dtype == torch.uint8
    # majority fraction rho / (1 + rho) within every class
    for c in range(10):
        assert s.majority[data.y == c].float().mean().item() == pytest.approx(rho / (1 + rho), abs=0.03)
    # majority: red for classes 0-4, green for 5-9; minority the reverse
    first = data.y < 5
    expect = torch.where(first == s.majority, D.RED, D.GREEN)
    assert torch.equal(s.spurious, expect)
    # exactly that channel is raised by round(0.1 * 255), clipped at 255
    grey = data.x[:, 0].to(torch.int16)
    add = round(0.1 * 255)
    for i in range(0, 400, 37):
        ch = int(s.spurious[i])
        raised = s.data.x[i, ch].to(torch.int16)
        assert torch.equal(raised, (grey[i] + add).clamp(max=255))
        assert torch.equal(s.data.x[i, 1 - ch].to(torch.int16), grey[i])
        assert torch.equal(s.data.x[i, 2].to(torch.int16), grey[i])
    with pytest.raises(ValueError):
        D.color_shift(data, 0.0)


def test_background_types_definitions():
    k, n = 10, 5000
    y = torch.arange(n) % k
    t, maj = D.background_types(y, k, "train", majority=0.9, seed=0)
    assert torch.equal(maj, t == y) and (t == y).float().mean().item() == pytest.approx(0.9, abs=1e-3)
    # minority backgrounds: uniform over the other classes' types
    other = t[~maj]
    assert (other != y[~maj]).all()
    # MIXED-SAME: the same class-conditional distribution as training, a fresh draw
    ts, ms = D.background_types(y, k, "mixed_same", majority=0.9, seed=5)
    assert (ts == y).float().mean().item() == pytest.approx(0.9, abs=1e-3) and not torch.equal(ts, t)
    # MIXED-RAND: independent of the label
    tr, mr = D.background_types(y, k, "mixed_rand", seed=0)
    assert (tr == y).float().mean().item() == pytest.approx(1 / k, abs=0.02)
    counts = torch.bincount(tr, minlength=k).float()
    assert counts.min() > 0.8 * n / k and counts.max() < 1.2 * n / k
    assert torch.equal(mr, tr == y)
    # groups: balanced majority / minority
    tg, mg = D.background_types(y, k, "groups", seed=0)
    assert mg.float().mean().item() == pytest.approx(0.5, abs=1e-3) and torch.equal(mg, tg == y)
    to, _ = D.background_types(y, k, "only_fg")
    assert (to == -1).all()
    with pytest.raises(ValueError):
        D.background_types(y, k, "mixed_next")


def test_background_dataset_composites():
    objs = _objects(200, size=28)
    s = D.background_dataset(objs, "train", majority=0.9, seed=0)
    assert s.data.x.shape == (200, 3, 28, 28) and s.mask.shape == (200, 1, 28, 28)
    assert s.majority_fraction == pytest.approx(0.9, abs=0.01)
    # object pixels are the grey object in all three channels; background pixels are not black
    m = s.mask.expand(-1, 3, -1, -1)
    assert torch.equal(s.data.x[m], objs.x.expand(-1, 3, -1, -1)[m])
    assert s.data.x[~m].float().mean() > 30
    # only_fg: black background
    f = D.background_dataset(objs, "only_fg")
    assert (f.data.x[~f.mask.expand(-1, 3, -1, -1)] == 0).all()
    # different background types look different (mean colour), the same type similar
    bg = D.render_backgrounds(torch.tensor([0] * 50 + [1] * 50), 10, 28, seed=0).float()
    m0, m1 = bg[:50].mean((0, 2, 3)), bg[50:].mean((0, 2, 3))
    assert (m0 - m1).abs().max() > 10
    assert torch.equal(D.render_backgrounds(torch.tensor([3, 4]), 10, seed=1),
                       D.render_backgrounds(torch.tensor([3, 4]), 10, seed=1))
    c = D.render_backgrounds(torch.tensor([2, 2]), 10, 28, kind="color", seed=0).float()
    assert c.std((2, 3)).max() < 15        # a colour field is flat up to the pixel noise
    with pytest.raises(ValueError):
        D.background_dataset(D.to_rgb(objs))


def test_spurious_data_subset_and_checks():
    s = D.background_dataset(_objects(50), "groups", seed=0)
    sub = s.subset(torch.arange(10))
    assert len(sub) == 10 and torch.equal(sub.majority, s.majority[:10]) and sub.mask.shape[0] == 10
    with pytest.raises(ValueError):
        D.SpuriousData(s.data, s.majority[:3], s.spurious)


# --- synthetic copies of the benchmark layouts ------------------------------------------------------

class CentreOracle(nn.Module):
    """Reads the centre pixel and scores class k by closeness to code(k): noise on the centre changes
    its prediction, noise elsewhere does not."""

    def __init__(self, num_classes=1000):
        super().__init__()
        ks = torch.arange(num_classes)
        self.register_buffer("codes", torch.stack([(ks // 32) * 8, (ks % 32) * 8], 1).float())
        self.dummy = nn.Parameter(torch.zeros(1))

    def features(self, x):
        h, w = x.shape[-2:]
        return x[:, :, h // 2, w // 2] * 255

    def forward(self, x):
        c = self.features(x)[:, :2]
        return -((c[:, None, :] - self.codes[None]) ** 2).sum(-1) / 64 + 0 * self.dummy


SIZE = 32


def test_imagenet_val_and_c(tmp_path):
    wnid_tree(tmp_path / "imagenet" / "val", with_images=(0, 5, 999))
    ds = D.imagenet_val(tmp_path / "imagenet", size=SIZE)
    assert len(ds) == 6 and sorted(set(ds.y.tolist())) == [0, 5, 999]
    x, y = ds[0]
    assert x.shape == (3, SIZE, SIZE) and x.dtype == torch.uint8
    oracle = CentreOracle()
    assert D.imagenet_accuracy(oracle, tmp_path / "imagenet", size=SIZE) == 1.0
    assert D.imagenet_accuracy(oracle, tmp_path / "imagenet", size=SIZE, max_images=3) == 1.0
    # ImageNet-C: <root>/<corruption>/<severity>/<wnid>/
    write_imagenet_c(tmp_path / "inc")                  # gaussian_noise and fog, severities 1 and 2, classes 3 and 7
    assert D.imagenet_c_corruptions(tmp_path / "inc") == ["fog", "gaussian_noise"]
    r = D.imagenet_c_accuracy(oracle, tmp_path / "inc", severities=(1, 2), size=SIZE)
    assert r == {"fog": 1.0, "gaussian_noise": 1.0, "mean": 1.0}
    assert D.imagenet_c_accuracy(oracle, tmp_path / "inc", size=SIZE) == r       # severities present: 1, 2
    # a folder without the 1000 wnids is refused, saying why
    (tmp_path / "bad" / "val" / "n00000001").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="1000"):
        D.imagenet_val(tmp_path / "bad")


def test_objectnet(tmp_path):
    root = write_objectnet(tmp_path / "objectnet-1.0")  # 3 of its 4 ImageNet-mapped images read right
    ds, groups = D.objectnet(root, size=SIZE)
    assert ds.classes == ["Alarm clock", "Banana"] and groups == [[10, 11], [12]]
    assert len(ds) == 4 and ds.y.tolist() == [0, 0, 1, 1]
    x, _ = ds[0]
    assert x.shape == (3, SIZE, SIZE) and not (x[0] == 255).all(0).any()     # the red frame is gone
    assert D.objectnet_accuracy(CentreOracle(), root, size=SIZE) == 0.75
    with pytest.raises(DatasetNotFoundError):
        D.objectnet(tmp_path / "nowhere")


def test_pooled_head():
    oracle = CentreOracle(1000)
    x = torch.zeros(3, 3, 8, 8)
    for i, k in enumerate([4, 7, 900]):
        r, g = code(k)
        x[i, 0], x[i, 1] = r / 255, g / 255
    pooled = D.PooledHead(oracle, [[1, 4], [7]], other=True)
    assert pooled(x).argmax(1).tolist() == [0, 1, 2]              # 900 falls in "other"
    assert D.PooledHead(oracle, [[1, 4], [7]], other=False)(x).shape == (3, 2)
    with pytest.raises(ValueError):
        D.PooledHead(oracle, [[1], []])


def test_rival10_masks_and_rfs(tmp_path):
    write_rival10(tmp_path / "RIVAL10")
    ds = D.rival10(tmp_path / "RIVAL10", "test", size=SIZE)
    assert len(ds) == 6 and ds.classes == ["truck", "car"] and sorted(ds.y.tolist()) == [0, 0, 0, 1, 1, 1]
    x, y, m = ds[0]
    assert x.shape == (3, SIZE, SIZE) and m.shape == (1, SIZE, SIZE)
    assert m[0, SIZE // 2, SIZE // 2] == 255 and m[0, 0, 0] == 0           # mask aligned with the object
    # the oracle looks only at the object: noise on it breaks it, noise elsewhere does not -> RFS = 1
    oracle = CentreOracle()
    r = M.region_noise_accuracy(oracle, D.batches(ds, 4), sigma=0.25, seed=0)
    assert r["clean"] == 1.0 and r["noise_outside_mask"] == 1.0 and r["noise_in_mask"] < 0.5
    assert M.relative_foreground_sensitivity(oracle, D.batches(ds, 4), sigma=0.25) > 0.5
    # the full path: linear probe on frozen features, then RFS of the probe
    out = D.rival10_rfs(oracle, tmp_path / "RIVAL10", sigma=0.25, probe_epochs=2, size=SIZE, batch_size=4)
    assert -1.0 <= out["rfs"] <= 1.0 and 0.0 <= out["probe_test_acc"] <= 1.0 and 1 <= out["best_epoch"] <= 2
    with pytest.raises(ValueError):
        D.rival10(tmp_path / "RIVAL10", "val")


def test_salient_imagenet_union_of_core_masks(tmp_path):
    sal = write_salient_imagenet(tmp_path / "salient", tmp_path / "imagenet")
    ds = D.salient_imagenet(sal, tmp_path / "imagenet", size=SIZE)
    assert len(ds) == 4 and sorted(ds.y.tolist()) == [3, 3, 8, 8]
    _, _, m = ds[0]
    full = D.MaskedFolderDataset([ds.paths[0]], [3], [[str(sal / wnids()[3] / "11" / f"{wnids()[3]}_0.JPEG")]],
                                 ds.classes, size=SIZE)[0][2]
    assert (m >= full).all() and m.sum() > full.sum()                  # the union of both core halves
    assert m[0, SIZE // 2, SIZE // 2] == 255 and m[0, 0, 0] == 0
    rcs = D.salient_rcs(CentreOracle(), sal, tmp_path / "imagenet", sigma=0.25, size=SIZE)
    assert rcs > 0.5


def test_imagenet9_background_gap(tmp_path):
    root = write_imagenet9(tmp_path / "bg_challenge")
    ds, groups = D.imagenet9(root, "mixed_same", size=SIZE)
    assert ds.classes[0] == "name0" and len(groups) == 9 and groups[0][:3] == [0, 9, 18]
    assert len(ds) == 18
    g = D.imagenet9_gap(CentreOracle(), root, size=SIZE)
    assert g["mixed_same"] == 1.0 and g["mixed_rand"] == 0.5
    assert g["gap"] == pytest.approx(0.5) and g["relative_gap"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        D.imagenet9(root, "mixed_other")


def test_waterbirds_groups_and_probe(tmp_path):
    root = write_waterbirds(tmp_path / "waterbird_complete95_forest2water2")
    te = D.waterbirds(root, "test", size=SIZE)
    assert len(te) == 8 and te.classes == ["landbird", "waterbird"]
    x, y, g = te[3]
    assert g == 2 * y + ((3 // 2) % 2)
    maj = D.waterbirds_majority(te.groups)
    assert maj.tolist() == [(int(a) in (0, 3)) for a in te.groups]
    assert maj.float().mean() == 0.5                         # the fixture's test set is balanced
    # the oracle predicts class = code, and code(y) encodes the label: every group is right
    acc = M.group_accuracy(CentreOracle(), D.batches(te, 4))
    assert set(acc) == {0, 1, 2, 3} and all(v == 1.0 for v in acc.values())
    out = D.waterbirds_probe(CentreOracle(), root, probe_epochs=2, size=SIZE, batch_size=4)
    assert {"majority", "minority", "gap", "best_epoch"} <= set(out)
    assert out["gap"] == pytest.approx(out["majority"] - out["minority"])
    with pytest.raises(DatasetNotFoundError):
        D.waterbirds(tmp_path / "nowhere")


def test_suite_checkpoints_and_evaluate_suite(tmp_path):
    d = tmp_path / "suite"
    d.mkdir()
    write_suite_checkpoint(d / "resnet18_l2_eps0.ckpt")
    for name in ("resnet18_l2_eps3.ckpt", "resnet18_linf_eps4.0.ckpt"):     # same weights, other names
        os.link(d / "resnet18_l2_eps0.ckpt", d / name)
    models = D.suite_checkpoints(d, archs=["resnet18", "resnet50"], eps_l2=[0.25, 3.0], eps_linf=[4.0, 8.0])
    assert len(models) == 2 * (1 + 2 + 2)
    found = [(m.arch, m.norm, m.eps) for m in models if m.path is not None]
    assert found == [("resnet18", "standard", 0.0), ("resnet18", "l2", 3.0), ("resnet18", "linf", 4.0)]
    assert models[0].label == "resnet18 standard" and "eps=4/255" in models[3].label
    assert all(m.path is None for m in D.suite_checkpoints(None))
    wnid_tree(tmp_path / "imagenet" / "val", with_images=(1, 2), per_class=1)
    paths = {"imagenet_root": str(tmp_path / "imagenet"), "objectnet_root": None, "waterbirds_root": "/nonexistent"}
    have = D.suite_availability(paths)
    assert have["imagenet_root"] and not have["objectnet_root"] and not have["waterbirds_root"]
    rows = D.evaluate_suite(models, paths, size=SIZE, batch_size=4, progress=False)
    assert len(rows) == 3 and [r["norm"] for r in rows] == ["standard", "l2", "linf"]
    for r in rows:
        assert 0.0 <= r["imagenet"] <= 1.0 and "objectnet" not in r and "wb_gap" not in r


# ---------- background strength and feature scales (the theory-designed background sweep) ----------

def test_background_strength_scales_the_class_signal():
    objs = _objects(200)
    t = objs.y % objs.num_classes
    grey = D.render_backgrounds(t, objs.num_classes, kind="color", seed=0, strength=0.0).float()
    full = D.render_backgrounds(t, objs.num_classes, kind="color", seed=0, strength=1.0).float()
    # strength 0: every type is the same grey up to brightness and noise, so the class means nearly coincide
    spread = lambda x: torch.stack([x[t == c].mean(0) for c in range(objs.num_classes)]).std(0).mean()
    assert spread(grey) < 0.1 * spread(full)
    with pytest.raises(ValueError, match="strength"):
        D.render_backgrounds(t, objs.num_classes, strength=-1.0)


def test_feature_scales_grow_linearly_with_strength():
    objs = _objects(400)
    s = {st: D.feature_scales(objs, strength=st, seed=0) for st in (0.5, 1.0)}
    assert s[0.5]["object_l2"] == pytest.approx(s[1.0]["object_l2"])     # the object does not change
    assert s[1.0]["background_l2"] == pytest.approx(2 * s[0.5]["background_l2"], rel=0.15)
    assert s[1.0]["ratio_linf"] > s[0.5]["ratio_linf"] > 0


def test_batches_decode_in_workers_for_large_sets_only():
    "Large lazily read sets are decoded by worker processes; small ones in-process; an explicit count wins."
    import os
    from robbook.distshift import batches

    class Sized(torch.utils.data.Dataset):
        def __init__(self, n): self.n = n
        def __len__(self): return self.n
        def __getitem__(self, i): return torch.zeros(3, 8, 8), 0

    assert batches(Sized(100)).num_workers == 0
    assert batches(Sized(5000)).num_workers == min(8, os.cpu_count() or 1)
    assert batches(Sized(5000), num_workers=1).num_workers == 1
    xb, yb = next(iter(batches(Sized(10), batch_size=4)))
    assert xb.shape == (4, 3, 8, 8) and yb.tolist() == [0] * 4


# --- gap changes between models, judged by the verdict engine ----------------------------------------

def test_gap_change_is_the_difference_of_the_two_models_gaps():
    rng = np.random.default_rng(0)
    a1, a2, b1, b2 = (rng.integers(0, 2, 50).astype(float) for _ in range(4))
    assert D.gap_change(a1, a2, b1, b2) == pytest.approx((a1.mean() - a2.mean()) - (b1.mean() - b2.mean()))
    assert D.gap_change(a1, a2, a1, a2) == 0.0


def test_group_gap_change_matches_majority_minority_gap():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 2, 80).astype(float), rng.integers(0, 2, 80).astype(float)
    maj = rng.integers(0, 2, 80).astype(bool)
    gap = lambda c: c[maj].mean() - c[~maj].mean()
    assert D.group_gap_change(a, b, maj) == pytest.approx(gap(a) - gap(b))
    assert D.group_gap_change(a, b, maj.astype(float)) == pytest.approx(gap(a) - gap(b))
    assert np.isnan(D.group_gap_change(a, b, np.ones(80)))          # one group only: no gap


def test_gap_changes_through_the_verdict_engine():
    "A clear rise of the gap is reproduced, a reversed one is not, a null one on few examples is inconclusive."
    from robbook.report import effect
    rng = np.random.default_rng(2)
    n = 2000
    same_std, rand_std = rng.random(n) < 0.85, rng.random(n) < 0.80          # standard model: gap ≈ 0.05
    same_at, rand_at = rng.random(n) < 0.80, rng.random(n) < 0.60            # AT model: gap ≈ 0.20
    rise = effect("AT − standard", D.gap_change, same_at, rand_at, same_std, rand_std, op=">", bound=0.0)
    assert rise.verdict == "reproduced"
    fall = effect("standard − AT", D.gap_change, same_std, rand_std, same_at, rand_at, op=">", bound=0.0)
    assert fall.verdict == "not reproduced"
    m = 40
    x = [rng.random(m) < 0.7 for _ in range(4)]                              # no effect, small n
    assert effect("null", D.gap_change, *x, op=">", bound=0.0).verdict == "inconclusive"
    maj = np.arange(n) % 2 == 0
    a = np.where(maj, rng.random(n) < 0.9, rng.random(n) < 0.5)              # group gap ≈ 0.4
    b = np.where(maj, rng.random(n) < 0.8, rng.random(n) < 0.7)              # group gap ≈ 0.1
    assert effect("groups", D.group_gap_change, a, b, maj, op=">", bound=0.0).verdict == "reproduced"

"robbook.data: IDX/CIFAR/ImageFolder readers on generated fixtures, the real Fashion-MNIST, errors, subsets, Loader."
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robbook import data as D
from robbook.data import DatasetNotFoundError, ImageData, Loader

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


# ---------- fixtures ----------

def write_idx(path: Path, arr: np.ndarray, gz: bool):
    code = {np.uint8: 0x08, np.int32: 0x0C}[arr.dtype.type]
    raw = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def fake_idx_set(folder: Path, n_train=40, n_test=20, gz=True, seed=0):
    "Four IDX files with random 6x5 images and labels 0..9 (every label present)."
    rng = np.random.default_rng(seed)
    out = {}
    for split, n, stem in [("train", n_train, "train"), ("test", n_test, "t10k")]:
        x = rng.integers(0, 256, (n, 6, 5), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(y)
        write_idx(folder / f"{stem}-images-idx3-ubyte", x, gz)
        write_idx(folder / f"{stem}-labels-idx1-ubyte", y, gz)
        out[split] = (x, y)
    return out


@pytest.fixture
def no_system_dirs(monkeypatch):
    "Hide /usr/share/datasets so that only the test's root counts."
    monkeypatch.setattr(D, "SYSTEM_DIRS", {"fashion_mnist": [], "mnist": []})


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def fail(name, root):
        calls.append((name, Path(root)))
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
    monkeypatch.setattr(D, "_download", fail)
    return calls


def png(path: Path, arr: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def write_cifar10(root: Path, per_batch=4, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    arrays = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = list(rng.integers(0, 10, per_batch))
        arrays[name] = (x, y)
        with open(d / name, "wb") as f:
            pickle.dump({"data": x, "labels": y}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return arrays


# ---------- IDX ----------

@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_roundtrip(tmp_path, gz):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    b = np.array([1, -5, 70000], dtype=np.int32)
    pa, pb = write_idx(tmp_path / "a", a, gz), write_idx(tmp_path / "b", b, gz)
    assert np.array_equal(D.read_idx(pa), a)
    assert np.array_equal(D.read_idx(pb), b) and D.read_idx(pb).dtype.isnative


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x08\x03\x00\x00garbage")
    with pytest.raises(ValueError, match="not an IDX file"):
        D.read_idx(tmp_path / "bad")
    p = write_idx(tmp_path / "t", np.zeros((4, 4), np.uint8), False)
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        D.read_idx(p)


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_idx_under_root(tmp_path, gz, no_system_dirs, no_network):
    ref = fake_idx_set(tmp_path / "MNIST" / "raw", gz=gz)
    for split in ("train", "test"):
        d = D.load("mnist", split, root=tmp_path)
        x, y = ref[split]
        assert d.x.dtype == torch.uint8 and d.x.shape == (len(x), 1, 6, 5)
        assert np.array_equal(d.x[:, 0].numpy(), x) and np.array_equal(d.y.numpy(), y)
        assert d.y.dtype == torch.int64 and d.classes == [str(i) for i in range(10)]
    assert no_network == []  # found, so no download attempted


def test_load_fashion_mnist_from_root_and_env(tmp_path, monkeypatch, no_system_dirs, no_network):
    ref = fake_idx_set(tmp_path / "fashion-mnist", gz=False, seed=3)
    d = D.load("fashion_mnist", "test", root=tmp_path)
    assert np.array_equal(d.x[:, 0].numpy(), ref["test"][0]) and d.classes[0] == "T-shirt/top"
    monkeypatch.setenv("ROBBOOK_DATA", str(tmp_path))
    assert D.data_root() == tmp_path
    assert D.load("fashion-mnist", "test").fingerprint() == d.fingerprint()


def test_mnist_and_fashion_files_are_not_confused(tmp_path, no_system_dirs, no_network):
    fake_idx_set(tmp_path / "MNIST" / "raw")
    with pytest.raises(DatasetNotFoundError):
        D.load("fashion_mnist", root=tmp_path)


def test_binary_mnist_is_5_vs_7(tmp_path, no_system_dirs, no_network):
    ref = fake_idx_set(tmp_path / "MNIST" / "raw", n_train=60)
    d = D.load("binary_mnist", "train", root=tmp_path)
    x, y = ref["train"]
    keep = (y == 5) | (y == 7)
    assert len(d) == keep.sum() and d.classes == ["5", "7"]
    assert np.array_equal(d.y.numpy(), (y[keep] == 7).astype(np.int64))
    assert np.array_equal(d.x[:, 0].numpy(), x[keep])


def test_download_path_is_taken_when_missing(tmp_path, monkeypatch, no_system_dirs):
    "With download=True a missing set is fetched (here: a fake downloader writing the files) and read."
    calls = []

    def fake_download(name, root):
        calls.append(name)
        fake_idx_set(Path(root) / "MNIST" / "raw")
    monkeypatch.setattr(D, "_download", fake_download)
    assert len(D.load("mnist", "test", root=tmp_path)) == 20 and calls == ["mnist"]
    D.load("mnist", "train", root=tmp_path)
    assert calls == ["mnist"]


# ---------- missing data sets: clear errors ----------

def test_missing_fashion_mnist_names_paths_and_fix(tmp_path, no_system_dirs, no_network):
    with pytest.raises(DatasetNotFoundError) as e:
        D.load("fashion_mnist", "train", root=tmp_path)
    err = e.value
    assert isinstance(err, FileNotFoundError) and err.dataset == "fashion_mnist"
    msg = str(err)
    assert "fashion_mnist" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert str(tmp_path / "FashionMNIST" / "raw") in msg and str(tmp_path / "fashion-mnist") in msg
    assert "download" in msg and "Temporary failure in name resolution" in msg  # the download was tried
    assert no_network == [("fashion_mnist", tmp_path)]


def test_fashion_mnist_search_includes_the_debian_path(tmp_path):
    assert FASHION_DIR in D._idx_dirs("fashion_mnist", tmp_path)


def test_missing_mnist_without_download(tmp_path, no_system_dirs, no_network):
    with pytest.raises(DatasetNotFoundError) as e:
        D.load("mnist", "test", root=tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "t10k-images-idx3-ubyte" in msg
    assert "download=True" in msg and "yann.lecun.com" in msg
    assert no_network == []


def test_missing_cifar_and_tiny_imagenet(tmp_path, no_network):
    with pytest.raises(DatasetNotFoundError) as e:
        D.load("cifar10", "test", root=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in str(e.value)
    assert "cifar-10-python.tar.gz" in str(e.value) and "Traceback" not in str(e.value)
    with pytest.raises(DatasetNotFoundError) as e:
        D.load("cifar100", "train", root=tmp_path, download=False)
    assert "cifar-100-python" in str(e.value)
    with pytest.raises(DatasetNotFoundError) as e:
        D.load("tiny_imagenet", "val", root=tmp_path, download=False)
    assert str(tmp_path / "tiny-imagenet-200" / "wnids.txt") in str(e.value)
    assert D.TINY_IMAGENET_URL in str(e.value)


def test_missing_imagenet_explains_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        D.restricted_imagenet(tmp_path, "train")
    assert str(tmp_path / "train") in str(e.value) and "image-net.org" in str(e.value)


def test_unknown_names_and_splits(tmp_path):
    with pytest.raises(ValueError, match="fashion_mnist"):
        D.load("svhn", root=tmp_path)
    with pytest.raises(ValueError, match="restricted_imagenet"):
        D.load("restricted_imagenet", root=tmp_path)
    with pytest.raises(ValueError, match="'train', 'test'"):
        D.load("mnist", "validation", root=tmp_path)


# ---------- CIFAR ----------

def test_load_cifar10_from_pickles(tmp_path, no_network):
    arrays = write_cifar10(tmp_path)
    tr, te = D.load("cifar10", "train", root=tmp_path), D.load("cifar10", "test", root=tmp_path)
    assert tr.x.shape == (20, 3, 32, 32) and te.x.shape == (4, 3, 32, 32)
    assert tr.classes == [f"c{i}" for i in range(10)]
    x, y = arrays["data_batch_2"]
    assert np.array_equal(tr.x[4:8].reshape(4, -1).numpy(), x) and tr.y[4:8].tolist() == y
    assert no_network == []


# ---------- image folders ----------

def test_load_folder_reads_exact_pixels(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {c: [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(n)] for c, n in [("dog", 2), ("cat", 3)]}
    for c, arrs in imgs.items():
        for i, a in enumerate(arrs):
            png(tmp_path / "f" / c / "sub" / f"{i}.png", a)
    (tmp_path / "f" / "cat" / "notes.txt").write_text("not an image")
    ds = D.load_folder(tmp_path / "f")
    assert ds.classes == ["cat", "dog"] and len(ds) == 5 and ds.y.tolist() == [0, 0, 0, 1, 1]
    x, y = ds[3]
    assert x.dtype == torch.uint8 and x.shape == (3, 5, 7) and y == 1
    assert np.array_equal(x.permute(1, 2, 0).numpy(), imgs["dog"][0])
    mem = ds.load_all(num_workers=0, progress=False)
    assert isinstance(mem, ImageData) and mem.x.shape == (5, 3, 5, 7) and torch.equal(mem.x[3], x)


def test_folder_dataset_resizes_and_random_crop_is_seeded(tmp_path):
    png(tmp_path / "f" / "a" / "0.png", np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    ev = D.load_folder(tmp_path / "f", size=16)
    assert ev[0][0].shape == (3, 16, 16)
    tr = D.load_folder(tmp_path / "f", size=16, train=True)
    a, b, c = tr[(0, 1)][0], tr[(0, 1)][0], tr[(0, 2)][0]
    assert a.shape == (3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)


def test_load_folder_missing_and_empty(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="<class name>"):
        D.load_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no class subfolders"):
        D.load_folder(tmp_path / "empty")


def make_imagenet(root: Path, split="train", filled=(), n_classes=1000):
    d = root / split
    for k in range(n_classes):
        (d / f"n{k:08d}").mkdir(parents=True)
    for k in filled:
        png(d / f"n{k:08d}" / f"img_{k}.JPEG.png", np.full((8, 8, 3), k % 256, np.uint8))


def test_restricted_imagenet_maps_inclusive_ranges(tmp_path):
    inside = {151: 0, 268: 0, 281: 1, 285: 1, 30: 2, 32: 2, 33: 3, 37: 3, 80: 4, 100: 4, 365: 5, 382: 5,
              389: 6, 397: 6, 118: 7, 121: 7, 300: 8, 319: 8}
    outside = [0, 29, 38, 79, 101, 117, 122, 150, 269, 280, 286, 299, 320, 364, 383, 388, 398, 999]
    make_imagenet(tmp_path, "val", filled=list(inside) + outside)
    ds = D.restricted_imagenet(tmp_path, "test", size=8)
    assert ds.classes == ["dog", "cat", "frog", "turtle", "bird", "primate", "fish", "crab", "insect"]
    assert len(ds) == len(inside) and not ds.train
    got = {int(Path(p).parent.name[1:]): int(y) for p, y in zip(ds.paths, ds.y)}
    assert got == inside
    x, y = ds[0]
    assert x.shape == (3, 8, 8)


def test_restricted_imagenet_needs_1000_folders(tmp_path):
    make_imagenet(tmp_path, "train", n_classes=999)
    with pytest.raises(DatasetNotFoundError, match="found 999 class folders"):
        D.restricted_imagenet(tmp_path, "train")


def make_tiny(root: Path, per_class=3, val_per_class=2):
    base = root / "tiny-imagenet-200"
    wnids = ["n02", "n01", "n03"]  # unsorted in wnids.txt, as in the real file
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\ttabby, tabby cat\nn03\tlemon\nn99\tother\n")
    rng = np.random.default_rng(0)
    ann = []
    for w in wnids:
        (base / "train" / w / "images").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
                base / "train" / w / "images" / f"{w}_{i}.JPEG", format="JPEG")
        for i in range(val_per_class):
            name = f"val_{w}_{i}.JPEG"
            (base / "val" / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(base / "val" / "images" / name, format="JPEG")
            ann.append(f"{name}\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    return base


def test_tiny_imagenet_layout_labels_and_cache(tmp_path, no_network):
    base = make_tiny(tmp_path)
    tr = D.load("tiny_imagenet", "train", root=tmp_path)
    assert tr.x.shape == (9, 3, 64, 64) and tr.classes == ["goldfish", "tabby", "lemon"]
    assert torch.bincount(tr.y).tolist() == [3, 3, 3]
    lazy = D.tiny_imagenet(tmp_path, "train")
    for i in range(len(lazy)):
        assert lazy.classes[lazy.y[i]] == {"n01": "goldfish", "n02": "tabby", "n03": "lemon"}[Path(lazy.paths[i]).parent.parent.name]
    te = D.load("tiny_imagenet", "test", root=tmp_path)  # test = the labelled val split; gray JPEGs become RGB
    assert te.x.shape == (6, 3, 64, 64) and torch.bincount(te.y).tolist() == [2, 2, 2]
    assert (base / "robbook-train.pt").is_file() and (base / "robbook-val.pt").is_file()
    again = D.load("tiny_imagenet", "train", root=tmp_path)
    assert again.fingerprint() == tr.fingerprint()


# ---------- the real Fashion-MNIST ----------

@pytest.mark.skipif(not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_from_debian_package(tmp_path, no_network):
    tr = D.load("fashion_mnist", "train", root=tmp_path)  # empty root: found in /usr/share/datasets
    te = D.load("fashion_mnist", "test", root=tmp_path)
    assert tr.x.shape == (60000, 1, 28, 28) and te.x.shape == (10000, 1, 28, 28)
    assert tr.x.dtype == torch.uint8 and tr.y.dtype == torch.int64
    assert torch.bincount(tr.y).tolist() == [6000] * 10 and torch.bincount(te.y).tolist() == [1000] * 10
    m = tr.float().mean().item()
    assert 0.27 < m < 0.30 and tr.x.max() == 255 and tr.x.min() == 0   # Fashion-MNIST mean is 0.286
    assert tr.fingerprint() != te.fingerprint() and no_network == []


# ---------- ImageData ----------

def small_data(n=30, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageData(torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g),
                     torch.arange(n) % classes, [f"k{i}" for i in range(classes)], "small")


def test_imagedata_basics():
    d = small_data()
    assert len(d) == 30 and d.num_classes == 5 and d.shape == (1, 4, 4)
    f = d.float()
    assert f.dtype == torch.float32 and torch.allclose(f * 255, d.x.float())
    s = d.subset([3, 1, 2])
    assert torch.equal(s.x, d.x[[3, 1, 2]]) and s.y.tolist() == [3, 1, 2]
    assert len(d.subset(d.y == 0)) == 6 and len(d.subset(slice(0, 10))) == 10
    assert d.to("cpu") is d
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.rand(2, 1, 4, 4), torch.zeros(2), ["a"])
    with pytest.raises(ValueError, match=r"\[N\]"):
        ImageData(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3), ["a"])


def test_fingerprint_is_a_content_hash():
    a, b = small_data(), small_data()
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 32
    c = small_data()
    c.x[0, 0, 0, 0] ^= 1
    assert c.fingerprint() != a.fingerprint()
    d = small_data()
    d.y[0] = (d.y[0] + 1) % 5
    assert d.fingerprint() != a.fingerprint()
    assert a.subset(slice(0, 29)).fingerprint() != a.fingerprint()


# ---------- subsets ----------

def test_class_subset_relabels_in_given_order():
    d = small_data()
    s = D.class_subset(d, ["k3", 1])
    assert len(s) == 12 and s.classes == ["k3", "k1"]
    orig = d.y[(d.y == 3) | (d.y == 1)]
    assert torch.equal(s.y, (orig == 1).long())
    keep = D.class_subset(d, [3, 1], relabel=False)
    assert set(keep.y.tolist()) == {1, 3} and keep.classes == d.classes
    with pytest.raises(ValueError, match="not in"):
        D.class_subset(d, ["k9"])


def test_binary_subset_labels_0_1():
    b = D.binary_subset(small_data(), 4, 2)
    assert b.classes == ["k4", "k2"] and sorted(set(b.y.tolist())) == [0, 1] and len(b) == 12


def test_random_subset_size_determinism_and_nesting():
    d = ImageData(torch.zeros(200, 1, 2, 2, dtype=torch.uint8), torch.arange(200) % 4, list("abcd"))
    d.x[:, 0, 0, 0] = torch.arange(200) % 256
    d.x[:, 0, 0, 1] = torch.arange(200) // 256
    ids = lambda s: set((s.x[:, 0, 0, 0].long() + 256 * s.x[:, 0, 0, 1].long()).tolist())  # noqa: E731
    for n in (0, 1, 17, 200):
        assert len(D.random_subset(d, n, seed=1)) == n
    a, b = D.random_subset(d, 50, seed=1), D.random_subset(d, 50, seed=1)
    assert ids(a) == ids(b) and ids(a) != ids(D.random_subset(d, 50, seed=2))
    assert ids(D.random_subset(d, 20, seed=1)) <= ids(a) <= ids(D.random_subset(d, 120, seed=1))
    bal = D.random_subset(d, 42, seed=0, balanced=True)
    assert sorted(torch.bincount(bal.y).tolist()) == [10, 10, 11, 11]
    assert ids(D.random_subset(d, 20, seed=0, balanced=True)) <= ids(bal)
    assert D.random_subset(d, None) is d
    with pytest.raises(ValueError, match="outside 0..200"):
        D.random_subset(d, 201)


def test_subsets_work_on_folder_datasets(tmp_path):
    for c in "abc":
        for i in range(4):
            png(tmp_path / "f" / c / f"{i}.png", np.zeros((3, 3, 3), np.uint8))
    ds = D.load_folder(tmp_path / "f")
    b = D.binary_subset(ds, "c", "a")
    assert len(b) == 8 and b.classes == ["c", "a"] and all(("/c/" in p) == (y == 0) for p, y in zip(b.paths, b.y.tolist()))
    assert len(D.random_subset(ds, 5, seed=0)) == 5


# ---------- Loader ----------

def indexed_data(n=103):
    "Images whose first pixel stores the example index, labels = index."
    x = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(n) % 256
    return ImageData(x, torch.arange(n), [str(i) for i in range(n)], "indexed")


def test_loader_covers_every_index_once_per_epoch():
    d = indexed_data()
    ld = Loader(d, 10, shuffle=True, seed=0)
    assert len(ld) == 11
    orders = []
    for _ in range(2):
        batches = list(ld)
        assert len(batches) == len(ld)
        ys = torch.cat([y for _, y in batches])
        assert sorted(ys.tolist()) == list(range(103))
        xs = torch.cat([x for x, _ in batches])
        assert xs.dtype == torch.float32 and torch.allclose(xs[:, 0, 0, 0] * 255, (ys % 256).float())
        orders.append(ys)
    assert not torch.equal(orders[0], orders[1])      # a new order each epoch
    ld.set_epoch(0)
    assert torch.equal(torch.cat([y for _, y in ld]), orders[0])   # deterministic given the epoch
    same = Loader(d, 10, shuffle=True, seed=0)
    assert torch.equal(torch.cat([y for _, y in same]), orders[0])
    other = Loader(d, 10, shuffle=True, seed=1)
    assert not torch.equal(torch.cat([y for _, y in other]), orders[0])


def test_loader_without_shuffle_and_drop_last():
    d = indexed_data()
    assert torch.equal(torch.cat([y for _, y in Loader(d, 10, shuffle=False)]), torch.arange(103))
    ld = Loader(d, 10, shuffle=False, drop_last=True)
    batches = list(ld)
    assert len(ld) == len(batches) == 10 and all(len(y) == 10 for _, y in batches)


@pytest.mark.parametrize("n, world", [(100, 4), (103, 4), (7, 3), (2, 4)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_ddp_sharding_partitions_the_data(n, world, drop_last):
    d = indexed_data(n)
    shards = []
    for r in range(world):
        ld = Loader(d, 4, seed=5, rank=r, world_size=world, drop_last=drop_last)
        ld.set_epoch(3)
        ys = [y for _, y in ld]
        assert len(ys) == len(ld)
        shards.append(torch.cat(ys).tolist() if ys else [])
    assert len({len(s) for s in shards}) == 1                         # same number of examples per rank
    assert len({len(Loader(d, 4, rank=r, world_size=world, drop_last=drop_last)) for r in range(world)}) == 1
    flat = [i for s in shards for i in s]
    if n % world == 0 and not drop_last:
        assert sorted(flat) == list(range(n))                          # an exact partition
    elif not drop_last:
        assert set(flat) == set(range(n))                              # covers all, padded by repeats
        assert len(flat) == world * -(-n // world)
    else:
        assert len(set(flat)) == len(flat)                             # no repeats, tails dropped
        assert len(flat) == world * ((n // world) // 4 * 4)


def test_loader_augment_is_seeded_and_accepts_names():
    d = ImageData(torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)),
                  torch.zeros(40, dtype=torch.long), ["a"])
    run = lambda **kw: torch.cat([x for x, _ in Loader(d, 16, shuffle=False, **kw)])  # noqa: E731
    plain = run()
    a, b = run(augment="crop_flip", seed=1), run(augment="crop_flip", seed=1)
    assert torch.equal(a, b) and not torch.equal(a, plain) and not torch.equal(a, run(augment="crop_flip", seed=2))
    assert a.min() >= 0 and a.max() <= 1
    with pytest.raises(ValueError, match="allowed"):
        Loader(d, 4, augment="mixup")


def test_loader_places_batches_on_device():
    d = indexed_data(20)
    x, y = next(iter(Loader(d, 8, device="cpu")))
    assert x.device.type == "cpu" and y.device.type == "cpu" and x.shape == (8, 1, 2, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_loader_holds_data_on_gpu():
    d = indexed_data(50)
    ld = Loader(d, 8, device="cuda", augment="crop_flip")
    assert ld.data.x.is_cuda
    ys = []
    for x, y in ld:
        assert x.is_cuda and y.is_cuda and x.dtype == torch.float32
        ys.append(y.cpu())
    assert sorted(torch.cat(ys).tolist()) == list(range(50))


def test_loader_over_a_folder_dataset(tmp_path):
    for c in "ab":
        for i in range(5):
            png(tmp_path / "f" / c / f"{i}.png", np.full((6, 6, 3), 10 * i + (c == "b"), np.uint8))
    ds = D.load_folder(tmp_path / "f")
    ld = Loader(ds, 4, num_workers=0, seed=0, augment="flip")
    assert len(ld) == 3
    xs, ys = zip(*ld)
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (10, 3, 6, 6) and x.dtype == torch.float32 and sorted(y.tolist()) == [0] * 5 + [1] * 5
    assert sorted((x[:, 0, 0, 0] * 255).round().long().tolist()) == sorted([10 * i + k for k in (0, 1) for i in range(5)])
    shards = [Loader(ds, 4, num_workers=0, rank=r, world_size=2).indices(0).tolist() for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(10))


def test_loader_rejects_bad_arguments():
    d = indexed_data(10)
    with pytest.raises(ValueError, match="rank"):
        Loader(d, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        Loader(d, 0)


def test_loader_unpadded_shards_deal_out_the_one_process_batches():
    "pad=False: disjoint shards covering the data once, and step j of all ranks is batch j of one process."
    d = indexed_data(103)
    for world in (2, 3):
        lds = [Loader(d, 4, seed=7, rank=r, world_size=world, pad=False) for r in range(world)]
        shards = [ld.indices(1) for ld in lds]
        assert sorted(torch.cat(shards).tolist()) == list(range(103))          # nothing repeated, nothing lost
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        assert [len(ld) for ld in lds] == [len(range(r, 103, world)) // 4 + bool(len(range(r, 103, world)) % 4)
                                           for r in range(world)]
        whole = Loader(d, 4 * world, seed=7).indices(1)
        for j in range(103 // (4 * world)):
            step = torch.cat([s[4 * j:4 * j + 4] for s in shards])
            assert sorted(step.tolist()) == sorted(whole[4 * world * j:4 * world * (j + 1)].tolist())


def _noise_folder(root, n, size=8, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        png(root / f"c{i % 3}" / f"{i:05d}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return root


def test_folder_fingerprint_and_shape(tmp_path):
    a = D.load_folder(_noise_folder(tmp_path / "a", 12))
    assert a.shape == (3, 8, 8) and len(a.fingerprint()) == 32
    assert D.load_folder(tmp_path / "a").fingerprint() == a.fingerprint()          # a new object, same files
    import shutil
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b")
    assert D.load_folder(tmp_path / "elsewhere" / "b").fingerprint() == a.fingerprint()   # moved: same data
    assert D.load_folder(tmp_path / "a", size=4).fingerprint() != a.fingerprint()      # other decoding
    assert D.load_folder(tmp_path / "a", size=4).shape == (3, 4, 4)
    assert a.subset([0, 1, 2]).fingerprint() != a.fingerprint()
    png(tmp_path / "a" / "c0" / "00000.png", np.zeros((9, 9, 3), np.uint8))           # another file size
    assert D.load_folder(tmp_path / "a").fingerprint() != a.fingerprint()


def test_folder_errors_name_the_file_or_the_fix(tmp_path):
    root = _noise_folder(tmp_path / "f", 4)
    (root / "c0" / "broken.png").write_bytes(b"not a png")
    ds = D.load_folder(root)
    with pytest.raises(ValueError, match="broken.png.*replace or remove"):
        ds[ds.paths.index(str(root / "c0" / "broken.png"))]
    png(root / "c1" / "big.png", np.zeros((12, 12, 3), np.uint8))
    (root / "c0" / "broken.png").unlink()
    with pytest.raises(ValueError, match="differ in size.*size="):
        list(Loader(D.load_folder(root), 8, num_workers=0, shuffle=False))
    with pytest.raises(DatasetNotFoundError, match="class name"):
        D.load_folder(tmp_path / "missing")


def test_folder_loader_is_the_same_for_any_number_of_workers(tmp_path):
    ds = D.load_folder(_noise_folder(tmp_path / "f", 20, size=12), size=8, train=True)    # random crops
    run = lambda w: [(x.clone(), y.clone()) for x, y in Loader(ds, 6, num_workers=w, seed=3, rank=1, world_size=2,
                                                               pad=False)]  # noqa: E731
    a, b = run(0), run(2)
    assert len(a) == len(b) == 2
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    ld = Loader(ds, 6, num_workers=0, seed=3)
    e0, e1 = torch.cat([x for x, _ in ld]), torch.cat([x for x, _ in ld])    # two epochs: other crops and order
    assert not torch.equal(e0, e1)
    ld.set_epoch(0)
    assert torch.equal(torch.cat([x for x, _ in ld]), e0)                   # an epoch is a function of (seed, epoch)

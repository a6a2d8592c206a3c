"""Generated data sets in the real on-disk formats that the chapters read under `quick` and `full`, for tiny runs.

Images are class-structured (each class a fixed random template plus noise), so that a tiny model learns
something and every evaluation has correctly classified points to attack. Nothing here is a result: these files
only let the real loaders and the chapters' real code paths run without the real data."""
from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def class_images(n: int, shape: tuple, n_classes: int = 10, seed: int = 0, noise: float = 40.0):
    "n uint8 images of `shape` (H, W) or (H, W, C) and labels 0..n_classes-1 (every class present when n >= n_classes)."
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(1234).integers(30, 226, (n_classes, *shape)).astype(np.float32)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    x = templates[y] + rng.normal(0, noise, (n, *shape))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def _idx(path: Path, arr: np.ndarray) -> None:
    raw = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))


def write_mnist(root, n_train: int = 256, n_test: int = 128, seed: int = 0) -> Path:
    "MNIST as torchvision keeps it: `<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`."
    d = Path(root) / "MNIST" / "raw"
    for stem, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        x, y = class_images(n, (28, 28), seed=s)
        _idx(d / f"{stem}-images-idx3-ubyte", x)
        _idx(d / f"{stem}-labels-idx1-ubyte", y.astype(np.uint8))
    return d


def write_cifar(root, name: str = "cifar10", per_batch: int = 64, n_test: int = 128, seed: int = 0) -> Path:
    "CIFAR-10 (`cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta`) or CIFAR-100 (`cifar-100-python/`)."
    n_cls = 10 if name == "cifar10" else 100
    if name == "cifar10":
        d, files, key = Path(root) / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "labels"
        meta, names = "batches.meta", "label_names"
    else:
        d, files, key, meta, names = Path(root) / "cifar-100-python", ["train"], "fine_labels", "meta", "fine_label_names"
    d.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files + ["test_batch" if name == "cifar10" else "test"]):
        n = n_test if f.startswith("test") else per_batch * (5 if name == "cifar100" else 1)
        x, y = class_images(n, (3, 32, 32), n_cls, seed=seed + i)
        with open(d / f, "wb") as fh:
            pickle.dump({"data": x.reshape(n, -1), key: y.tolist()}, fh)
    with open(d / meta, "wb") as fh:
        pickle.dump({names: [f"class{i}" for i in range(n_cls)]}, fh)
    return d


# Restricted ImageNet's classes are ranges of the 1,000 ImageNet classes (Tsipras et al. 2019, App. A.3.1)
RIMAGENET_CLASSES = [151, 281, 30, 33, 80, 365, 389, 118, 300]   # one ImageNet class in each of the nine ranges


def wnids(n: int = 1000) -> list[str]:
    "Stand-in WordNet ids, sorted as ImageNet's are (their order is the class index)."
    return [f"n{k:08d}" for k in range(n)]


def write_imagenet(root, per_class: int = 8, classes=RIMAGENET_CLASSES, size: int = 40, splits=("train", "val"),
                   seed: int = 0) -> Path:
    "An ImageNet folder: `<root>/{train,val}/<wnid>/*.JPEG` with all 1,000 class folders, images in `classes`."
    root = Path(root)
    for si, split in enumerate(splits):
        for w in wnids():
            (root / split / w).mkdir(parents=True, exist_ok=True)
        x, y = class_images(per_class * len(classes), (size, size, 3), len(classes), seed=seed + si)
        for i, (img, c) in enumerate(zip(x, y)):
            Image.fromarray(img).save(root / split / wnids()[classes[c]] / f"{split}_{i}.JPEG", format="JPEG")
    return root

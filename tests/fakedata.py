"""Generated data sets in the real on-disk formats that the chapters read under `quick` and `full`, for tiny runs.

Images are class-structured (each class a fixed random template plus noise), so that a tiny model learns
something and every evaluation has correctly classified points to attack. Nothing here is a result: these files
only let the real loaders and the chapters' real code paths run without the real data."""
from __future__ import annotations

import csv
import gzip
import json
import os
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


def write_ilyas_release(root, names=("d_robust_CIFAR", "d_non_robust_CIFAR", "drand_CIFAR", "ddet_CIFAR"),
                        n=(40, 24), nhwc: bool = False, scale: float = 1.0, seed: int = 0) -> Path:
    """Ilyas et al.'s released CIFAR-10 datasets: `<root>/<name>/CIFAR_ims` (a list of float batches in [0, 1], NCHW
    or NHWC) and `CIFAR_lab` (a list of label batches), as `torch.save` wrote them."""
    import torch
    root = Path(root)
    for i, sub in enumerate(names):
        (root / sub).mkdir(parents=True, exist_ok=True)
        parts = [class_images(k, (3, 32, 32), seed=seed + 10 * i + j) for j, k in enumerate(n)]
        ims = [torch.from_numpy(x).float() / 255 * scale for x, _ in parts]
        if nhwc:
            ims = [t.permute(0, 2, 3, 1) for t in ims]
        torch.save(ims, root / sub / "CIFAR_ims")
        torch.save([torch.from_numpy(y) for _, y in parts], root / sub / "CIFAR_lab")
    return root


def write_robustness_checkpoint(path, arch: str = "resnet18", num_classes: int = 10, seed: int = 0) -> Path:
    """A checkpoint in the layout of the `robustness` library (`{"model": state_dict, "epoch"}`, keys under
    `module.model.`, the classifier as `linear.`, the normaliser's `new_mean` / `new_std`), of a randomly initialised
    robbook `arch`: what `robbook.models.load_robustness_checkpoint` reads."""
    import torch
    from robbook.models import build_model
    torch.manual_seed(seed)
    net = build_model(arch, num_classes=num_classes)
    sd = {("module.model." + ("linear." + k[5:] if k.startswith("head.") else k)): v
          for k, v in net.state_dict().items() if not k.startswith("normalize.")}
    sd["module.normalizer.new_mean"] = net.normalize.mean.detach().clone().view(-1, 1, 1)
    sd["module.normalizer.new_std"] = net.normalize.std.detach().clone().view(-1, 1, 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sd, "epoch": 1}, path)
    return path


# --- Moayeri et al.'s ImageNet-scale suite: every benchmark layout the distshift readers take ----------------------

def code(k: int) -> tuple[int, int]:
    "The colour (R, G) that encodes ImageNet class k in these images (a model reading it can be exact)."
    return (k // 32) * 8, (k % 32) * 8


def disk(size: int = 40, r: int = 12) -> np.ndarray:
    "A boolean image of a centred disk: the 'object' of every suite image, and its mask."
    yy, xx = np.mgrid[:size, :size]
    return (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 <= r * r


def save_image(path, k: int, size: int = 40, bg=None, seed: int = 0, border: bool = False) -> None:
    "An image whose central disk has colour code(k) and whose background is another colour (PNG bytes)."
    rng = np.random.default_rng(seed)
    a = np.zeros((size, size, 3), np.uint8)
    a[:] = bg if bg is not None else rng.integers(0, 256, 3)
    r, g = code(k)
    a[disk(size)] = (r, g, 100)
    if border:
        a[0, :] = a[-1, :] = a[:, 0] = a[:, -1] = (255, 0, 0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, format="PNG")     # lossless, whatever the file name says


def save_mask(path, mask: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask * 255).astype(np.uint8)).save(path, format="PNG")


def wnid_tree(root, with_images=(0, 1, 2), per_class: int = 2, seed: int = 0) -> Path:
    "`<root>/<wnid>/` for all 1,000 classes, `per_class` images in the classes `with_images`."
    root, ids = Path(root), wnids()
    for w in ids:
        (root / w).mkdir(parents=True, exist_ok=True)
    for k in with_images:
        for j in range(per_class):
            save_image(root / ids[k] / f"{ids[k]}_{j}.JPEG", k, seed=seed + 10 * k + j)
    return root


def write_imagenet_c(root, corruptions=("gaussian_noise", "fog"), severities=(1, 2), with_images=(3, 7)) -> Path:
    "ImageNet-C: `<root>/<corruption>/<severity>/<wnid>/*.JPEG`."
    for c in corruptions:
        for s in severities:
            wnid_tree(Path(root) / c / str(s), with_images=with_images, per_class=1, seed=s)
    return Path(root)


def write_objectnet(root) -> Path:
    """ObjectNet 1.0: `<root>/images/<folder>/*.png` (a red frame) and `<root>/mappings/`: two classes that map to
    ImageNet (alarm clock -> analog, digital clock; banana), one that does not (whisk); 3 of 4 mapped images read right."""
    root = Path(root)
    (root / "mappings").mkdir(parents=True, exist_ok=True)
    torch_to_id = {str(i): (i + 1) % 1000 for i in range(1000)}   # 2012 ids are shifted against pytorch indices
    labels = [f"label {i}" for i in range(1000)]
    labels[11], labels[12], labels[13] = "analog clock", "digital clock", "banana"
    (root / "mappings" / "pytorch_to_imagenet_2012_id.json").write_text(json.dumps(torch_to_id))
    (root / "mappings" / "imagenet_to_label_2012_v2").write_text("\n".join(labels) + "\n")
    (root / "mappings" / "folder_to_objectnet_name.json").write_text(json.dumps(
        {"alarm_clock": "Alarm clock", "banana": "Banana", "whisk": "Whisk"}))
    (root / "mappings" / "objectnet_to_imagenet_1k.json").write_text(json.dumps(
        {"Alarm clock": "analog clock; digital clock", "Banana": "banana"}))
    save_image(root / "images" / "alarm_clock" / "a.png", 10, border=True)     # analog clock: right
    save_image(root / "images" / "alarm_clock" / "b.png", 11, border=True)     # digital clock: right
    save_image(root / "images" / "banana" / "c.png", 12, border=True)          # banana: right
    save_image(root / "images" / "banana" / "d.png", 10, border=True, seed=1)  # a clock: wrong
    save_image(root / "images" / "whisk" / "e.png", 500, border=True)          # not in ImageNet: dropped
    return root


def write_rival10(root, n_per=(3, 3)) -> Path:
    "RIVAL10: `<root>/{train,test}/{ordinary,entire_object_masks}/<wnid>_<j>.JPEG`, `<root>/meta/wnid_to_class.json`."
    root, ids = Path(root), wnids()
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "wnid_to_class.json").write_text(json.dumps({ids[0]: ["truck", 0], ids[1]: ["car", 1]}))
    for split in ("train", "test"):
        for c, w in enumerate(ids[:2]):
            for j in range(n_per[c]):
                name = f"{w}_{j}.JPEG"
                save_image(root / split / "ordinary" / name, c, seed=j + 10 * c)
                save_mask(root / split / "entire_object_masks" / name, disk())
        save_image(root / split / "ordinary" / f"{ids[7]}_0.JPEG", 7)   # a wnid RIVAL10 does not list: ignored
    return root


def write_salient_imagenet(root, imagenet_root) -> Path:
    """Salient ImageNet-1M: `<root>/core_spurious_dict.json` and masks `<root>/<wnid>/<feature>/<stem>.JPEG` of
    ImageNet training images (written into `imagenet_root/train`): class 3 has two core features (the disk's left
    and right halves) and a spurious one (the background), class 8 one core feature."""
    root, ids, train = Path(root), wnids(), Path(imagenet_root) / "train"
    wnid_tree(train, with_images=())
    root.mkdir(parents=True, exist_ok=True)
    (root / "core_spurious_dict.json").write_text(json.dumps(
        {"3": {"core": [11, 12], "spurious": [13]}, "8": {"core": [4], "spurious": []}}))
    d = disk()
    left, right = d.copy(), d.copy()
    left[:, 20:] = False
    right[:, :20] = False
    for k, feats in ((3, {11: left, 12: right, 13: ~d}), (8, {4: d})):
        for j in range(2):
            stem = f"{ids[k]}_{j}"
            save_image(train / ids[k] / f"{stem}.JPEG", k, seed=j)
            for f, m in feats.items():
                save_mask(root / ids[k] / str(f) / f"{stem}.JPEG", m)
    return root


def write_imagenet9(root) -> Path:
    """The backgrounds challenge (ImageNet-9): `<root>/in_to_in9.json`, `<root>/{mixed_same,mixed_rand}/val/<NN_name>/`:
    MIXED-SAME images all of their super-class, MIXED-RAND half of them outside every super-class."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "in_to_in9.json").write_text(json.dumps({str(i): (i % 9 if i < 90 else -1) for i in range(1000)}))
    for c, f in enumerate(f"{c:02d}_name{c}" for c in range(9)):
        for j in range(2):
            save_image(root / "mixed_same" / "val" / f / f"s{j}.JPEG", c + 9 * j, seed=j)
            save_image(root / "mixed_rand" / "val" / f / f"r{j}.JPEG", c if j == 0 else 500, seed=j)
    return root


def write_waterbirds(root) -> Path:
    "Waterbirds: `<root>/metadata.csv` (img_id, img_filename, y, split, place) and the images it names."
    root, rows, i = Path(root), [], 0
    root.mkdir(parents=True, exist_ok=True)
    for split, n in ((0, 8), (1, 4), (2, 8)):
        for j in range(n):
            y, place = j % 2, (j // 2) % 2
            fn = f"{'001.Albatross' if y else '002.Sparrow'}/img_{i}.jpg"
            save_image(root / fn, y, seed=i)
            rows.append({"img_id": i, "img_filename": fn, "y": y, "split": split, "place": place})
            i += 1
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["img_id", "img_filename", "y", "split", "place"])
        w.writeheader()
        w.writerows(rows)
    return root


def write_suite_checkpoint(path, arch: str = "resnet18", seed: int = 0) -> Path:
    "A `robustness` checkpoint of a randomly initialised torchvision ImageNet `arch` (keys under `module.model.`)."
    import torch
    import torchvision
    torch.manual_seed(seed)
    tv = getattr(torchvision.models, arch)(weights=None, num_classes=1000).eval()
    sd = {f"module.model.{k}": v for k, v in tv.state_dict().items()}
    sd["module.normalizer.new_mean"] = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    sd["module.normalizer.new_std"] = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sd, "epoch": 1}, path)
    return path


def write_moayeri_suite(root, archs=("resnet18", "resnet50"), eps_l2=(0.25, 0.5, 1.0, 3.0, 5.0),
                        eps_linf=(0.5, 1.0, 2.0, 4.0, 8.0)) -> dict:
    """Everything the Moayeri chapter's ImageNet-scale suite reads, under `root`; returns its parameters
    ({"suite_dir": ..., "imagenet_root": ..., ...}). The checkpoints of one architecture share one file (hard
    links): the suite's code path, not its numbers."""
    root = Path(root)
    wnid_tree(root / "imagenet" / "val", with_images=(0, 1, 2, 3, 7), per_class=2)
    paths = {"imagenet_root": root / "imagenet",
             "imagenet_c_root": write_imagenet_c(root / "imagenet-c"),
             "objectnet_root": write_objectnet(root / "objectnet-1.0"),
             "rival10_root": write_rival10(root / "RIVAL10"),
             "salient_imagenet_root": write_salient_imagenet(root / "salient", root / "imagenet"),
             "imagenet9_root": write_imagenet9(root / "bg_challenge"),
             "waterbirds_root": write_waterbirds(root / "waterbirds")}
    suite = root / "suite"
    for a in archs:
        first = write_suite_checkpoint(suite / f"{a}_l2_eps0.ckpt", a)
        for norm, grid in (("l2", eps_l2), ("linf", eps_linf)):
            for e in grid:
                os.link(first, suite / f"{a}_{norm}_eps{e:g}.ckpt")
    paths["suite_dir"] = suite
    return {k: str(v) for k, v in paths.items()}


def write_all(root) -> Path:
    "Every data set the four chapters read under `quick` and `full`, generated under `root` (`tiny_run_params` finds them)."
    root = Path(root)
    write_mnist(root)
    write_cifar(root)
    write_imagenet(root / "imagenet", per_class=12)
    write_ilyas_release(root / "ilyas_release")
    write_robustness_checkpoint(root / "checkpoints" / "cifar_l2_0_5.pt", "resnet18")
    (root / "moayeri_suite.json").write_text(json.dumps(write_moayeri_suite(root / "moayeri")))
    return root


def tiny_run_params(chapter: str, profile: str, root) -> dict:
    """The parameters of a tiny run of `chapter` under `profile` that point every data set it reads at the copies
    `write_all(root)` generated: the data root, Restricted ImageNet where the profile trains on it, Ilyas et al.'s
    released datasets and a robustness checkpoint (full: the checkpoint replaces the trained robust source, quick
    trains it), Moayeri et al.'s ImageNet suite."""
    from robbook.profiles import PROFILES
    root = Path(root)
    p = {"data_root": str(root)}
    if "rimagenet" in PROFILES[chapter][profile].get("deep_slots", []) or chapter == "ilyas":
        p["imagenet_root"] = str(root / "imagenet")
    if chapter == "ilyas":
        p["released_dir"] = str(root / "ilyas_release")
    if chapter == "ilyas" and profile == "full":
        p.update(checkpoint=str(root / "checkpoints" / "cifar_l2_0_5.pt"), checkpoint_arch="resnet18")
    if chapter == "moayeri":
        p.update(json.loads((root / "moayeri_suite.json").read_text()))
    return p

"""An easy synthetic 4-class image task for the training tests: the class is the bright quadrant."""
from __future__ import annotations

import hashlib

import torch


def easy_data(n: int = 256, seed: int = 0, size: int = 8, noise: float = 0.3):
    "`n` images 1×size×size in [0, 255]: noise in [0, noise], plus 0.6 on the quadrant of the label."
    from robbook.data import ImageData
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.rand(n, 1, size, size, generator=g) * noise
    h = size // 2
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, :, r * h:(r + 1) * h, c * h:(c + 1) * h] += 0.6
    return ImageData((x.clamp(0, 1) * 255).round().to(torch.uint8), y, ["tl", "tr", "bl", "br"], f"easy{seed}")


def weights_digest(model) -> str:
    "SHA-256 of a model's state dict (names and exact bytes)."
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def without_time(history):
    return [{k: v for k, v in e.items() if k != "time_s"} for e in history]


def helpful_attack(model, x, y, eps: float = 0.3):
    "An 'attack' that steps *down* the loss (a sign-gradient step of size eps towards the label): it repairs points."
    import torch.nn.functional as F
    x = x.detach().clone().requires_grad_(True)
    g, = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return (x - eps * g.sign()).clamp(0, 1).detach()


def write_folder(root, data, ext: str = ".png"):
    """Write `data` (an ImageData) as an ImageFolder tree root/c<label>/<index>.<ext>; returns root.
    PNG is lossless, so `load_folder(root, mode=...)` decodes the same pixels and labels."""
    from pathlib import Path
    from PIL import Image
    root = Path(root)
    for k in range(len(data.classes)):
        (root / f"c{k}").mkdir(parents=True, exist_ok=True)
    for i in range(len(data)):
        a = data.x[i].permute(1, 2, 0).numpy()
        im = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
        im.save(root / f"c{int(data.y[i])}" / f"{i:06d}{ext}")
    return root


def folder_order(data):
    "The permutation of `data` that load_folder's order (class, then file name) gives."
    return torch.argsort(data.y * len(data) + torch.arange(len(data)))

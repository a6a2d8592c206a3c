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

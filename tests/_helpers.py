"""Small pieces several test modules share: the ℓp size of a batch of perturbations, a small MNIST-shaped CNN, and
folders of smooth images for the peak-memory tests of streamed work."""
import numpy as np
import torch.nn as nn


def lp(d, norm):
    "Per-example ℓ∞, ℓ2 or ℓ1 norm of a batch of perturbations."
    d = d.flatten(1)
    return {"linf": d.abs().amax(1), "l2": d.norm(dim=1), "l1": d.abs().sum(1)}[norm]


class SmallCNN(nn.Module):
    "Two strided convolutions and two linear layers on 1×28×28 inputs, with `features` for representation tests."
    def __init__(self, num_classes=10, width=16):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 5, stride=2, padding=2), nn.ReLU(),
                                  nn.Conv2d(width, 2 * width, 5, stride=2, padding=2), nn.ReLU(),
                                  nn.Flatten(), nn.Linear(2 * width * 49, 64), nn.ReLU())
        self.head = nn.Linear(64, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def write_smooth_folders(root, sizes=(64, 512), side=96):
    """`root/<n>/c<k>/<i>.png` for each n in `sizes`: n smooth RGB images of side x side in 4 classes (27 kB decoded
    at 96 px), different from each other, cheap to write and to decode."""
    from PIL import Image
    yy, xx = np.mgrid[0:side, 0:side]
    for n in sizes:
        for i in range(n):
            d = root / str(n) / f"c{i % 4}"
            d.mkdir(parents=True, exist_ok=True)
            a = np.stack([(xx * (i % 7 + 1)) % 256, (yy * (i % 5 + 1)) % 256, np.full_like(xx, i % 256)], -1)
            Image.fromarray(a.astype(np.uint8)).save(d / f"{i:05d}.png")

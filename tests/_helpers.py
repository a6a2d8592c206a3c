"Small pieces several test modules share: the ℓp size of a batch of perturbations and a small MNIST-shaped CNN."
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

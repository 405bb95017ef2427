"""Prune whole units of your own model, remove them physically, save, load back.

    python examples/shrink_and_save.py

``prunekit.shrink`` picks a backend that can follow the model (prunekit's surgery, the
Hugging Face MLP rule, or Torch-Pruning's dependency graph) and checks that the smaller
model computes the same outputs. ``prunekit.save`` writes safetensors + JSON (no pickle);
``prunekit.load(dir, model=fresh)`` resizes a fresh instance of your class and loads it.
"""

from __future__ import annotations

import tempfile

import torch
import torch.nn.functional as F
from torch import nn

import prunekit


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.gn = nn.GroupNorm(4, 32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 64)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(x + self.bn2(self.conv2(x)))  # residual: conv1 and conv2 share channels
        x = F.relu(self.gn(self.conv3(x)))  # GroupNorm: conv3 keeps its channels
        return self.head(F.relu(self.fc(torch.flatten(self.pool(x), 1))))


def main() -> None:
    torch.manual_seed(0)
    model = Net().eval()
    x = torch.rand(8, 1, 16, 16)
    prunekit.prune(model, "l1-filter", 0.5)  # half of the units of every removable layer
    small = prunekit.shrink(model, x)  # outputs checked equal to the masked model's
    info = small.prunekit_shrink
    print(
        f"backend {info['backend']}: {info['params_before']} -> {info['params_after']} params; "
        f"conv1 {small.conv1.out_channels} channels, fc {small.fc.out_features} units"
    )
    with tempfile.TemporaryDirectory() as d:
        prunekit.save(small, d)
        again = prunekit.load(d, model=Net())  # resized to the saved shapes
    with torch.no_grad():
        same = torch.equal(small(x), again(x))
    print(f"reloaded outputs equal: {same}")


if __name__ == "__main__":
    main()

"""Your own CNN, DataLoader, loss and optimizer, pruned by prunekit's L0 method.

    python examples/own_cnn_pruner.py [--method l0] [--sparsity 0.8] [--epochs 3]

Any registered method works the same way (`prunekit list` shows them). The data here
are made up (class k lights quadrant k of an 8x8 image) so that the script runs
anywhere in seconds; swap in your own Dataset.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import prunekit


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(64, 32)
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(x + self.bn2(self.conv2(x)))  # a residual connection
        return self.head(F.relu(self.fc(torch.flatten(self.pool(x), 1))))


def quadrants(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.3 * torch.rand(n, 1, 8, 8, generator=g)
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 0.6
    return TensorDataset(x.clamp(0, 1), y)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="l0")
    ap.add_argument("--sparsity", type=float, default=0.8)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()

    torch.manual_seed(0)
    train, test = quadrants(1024, seed=1), quadrants(512, seed=2)
    loader = DataLoader(train, batch_size=64, shuffle=True)
    model = SmallCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    calib = train.tensors[0][:256], train.tensors[1][:256]

    pruner = prunekit.Pruner(
        model,
        args.method,
        args.sparsity,
        steps=args.epochs * len(loader),
        optimizer=optimizer,
        data=calib,  # only data-driven criteria (entropy) use it
    )
    # A method's own parameters (L0's gate logits) are now one more group of `optimizer`
    # (lr gate_lr): build a learning-rate scheduler, if any, after the Pruner.
    model.train()
    for _ in range(args.epochs):
        for x, y in loader:
            x, y = pruner.transform(x, y)  # noise methods corrupt x; others: unchanged
            loss = F.cross_entropy(model(x), y) + pruner.penalty()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            pruner.step()
    pruner.finalize()  # plain weights, zeros baked in, no hooks

    model.eval()
    with torch.no_grad():
        x, y = test.tensors
        acc = (model(x).argmax(1) == y).float().mean().item()
    print(f"{args.method}: sparsity {prunekit.sparsity(model):.3f}, test accuracy {acc:.3f}")


if __name__ == "__main__":
    main()

"""The data types of prunekit's datasets: a split of images and labels, a dataset of
train/val/test splits with its input statistics, and what a registered loader returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


@dataclass
class Split:
    """Images ``x``: float32 (N, C, H, W) in [0, 1]; labels ``y``: int64 (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: torch.Tensor) -> Split:
        """The examples at ``index`` (a 1-D int64 tensor), copied."""
        return Split(self.x[index], self.y[index])


@dataclass
class Dataset:
    """Train/val/test splits plus what a model needs to know about the inputs.

    ``mean``/``std``: per-pixel statistics of the train split, in [0, 1] units.
    ``input_shape``: (C, H, W). ``source``: where the data came from.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: float
    std: float
    source: str


class RawData(NamedTuple):
    """What a registered loader returns, before limits and the validation split."""

    train: Split
    test: Split
    num_classes: int
    source: str

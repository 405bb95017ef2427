"""The dataset registry and the one way a dataset is loaded: a registered loader's train
and test splits, capped by ``limit``/``test_limit``, with a seeded validation split
carved out of train; batching and the calibration set of a run."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..registry import PrunekitError, Registry
from .splits import Dataset, RawData, Split

if TYPE_CHECKING:
    from ..config import RunConfig

DATASETS: Registry = Registry("dataset")

#: Calibration data of data-driven criteria (Wanda, SparseGPT, noise-sensitivity), of
#: BatchNorm recalibration and of the entropy export: this many first examples of the
#: seeded validation split (see :func:`calibration_set`).
CALIBRATION_EXAMPLES = 512


def dataset_for(cfg: RunConfig) -> Dataset:
    """The dataset a run config runs on (same seed -> same validation split)."""
    return load_dataset(
        cfg.dataset,
        data_dir=cfg.data_dir,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        limit=cfg.limit,
        test_limit=cfg.test_limit,
        download=cfg.download,
    )


def calibration_set(
    data: Dataset, k: int = CALIBRATION_EXAMPLES
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` examples ``(x, y)`` of the validation split, or of the training
    split when there is no validation split: the one calibration set of a zoo run."""
    split = data.val if len(data.val) else data.train
    return split.x[:k], split.y[:k]


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
    test_limit: int | None = None,
    download: bool = False,
    **kwargs: object,
) -> Dataset:
    """Load dataset ``name`` and carve a validation split out of its training set.

    ``limit``/``test_limit`` keep only the first N train/test examples (train is
    capped before the split). The validation split is a ``seed``-ed random
    ``val_fraction`` of the (capped) training set; the test split is never used
    for it. Extra ``kwargs`` are dataset options (e.g. ``n_train`` for synthetic).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise PrunekitError(f"val_fraction must be in [0, 1), got {val_fraction}")
    for arg, value in (("limit", limit), ("test_limit", test_limit)):
        if value is not None and value < 1:
            raise PrunekitError(f"{arg} must be a positive number of examples, got {value}")
    loader = DATASETS.get(name)
    options = sorted(set(inspect.signature(loader).parameters) - {"data_dir", "download"})
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise PrunekitError(
            f"dataset {name!r} has no option(s) {', '.join(unknown)}; "
            f"known: {', '.join(options) or '(none)'}"
        )
    raw: RawData = loader(data_dir=data_dir, download=download, **kwargs)
    train, test = raw.train, raw.test
    if limit is not None and limit < len(train):
        train = train.subset(torch.arange(limit))
    if test_limit is not None and test_limit < len(test):
        test = test.subset(torch.arange(test_limit))
    n_val = round(len(train) * val_fraction)
    if len(train) - n_val < 1:
        raise PrunekitError(f"{name}: val_fraction={val_fraction} leaves no training examples")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    val = train.subset(perm[:n_val].sort().values)
    train = train.subset(perm[n_val:].sort().values)
    mean, std = _pixel_stats(train.x)
    c, h, w = train.x.shape[1:]
    return Dataset(name, train, val, test, raw.num_classes, (c, h, w), mean, std, raw.source)


def iterate_batches(
    split: Split, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches of up to ``batch_size`` examples; the last may be smaller."""
    if batch_size < 1:
        raise PrunekitError(f"batch_size must be >= 1, got {batch_size}")
    n = len(split)
    if not shuffle:
        for i in range(0, n, batch_size):
            yield split.x[i : i + batch_size], split.y[i : i + batch_size]
        return
    order = torch.randperm(n, generator=generator)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        yield split.x[idx], split.y[idx]


def _pixel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[float, float]:
    """Mean and std over all pixels of ``x``, accumulated in float64 without a full copy."""
    total = total_sq = 0.0
    for i in range(0, x.shape[0], chunk):
        part = x[i : i + chunk].double()
        total += part.sum().item()
        total_sq += part.square().sum().item()
    count = max(x.numel(), 1)
    mean = total / count
    return mean, max(total_sq / count - mean * mean, 0.0) ** 0.5

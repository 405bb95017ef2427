"""Datasets as in-memory tensors: Fashion-MNIST, MNIST, scikit-learn digits, synthetic.

Every dataset is returned as a :class:`Dataset` whose splits hold images as
float32 ``(N, C, H, W)`` tensors in ``[0, 1]`` and labels as int64 ``(N,)``.
Normalization is left to the model, which gets the train-split ``mean``/``std``.

A loader registered in :data:`DATASETS` is called as
``loader(data_dir=..., download=..., **options)`` and returns a :class:`RawData`
(train and test splits); :func:`load_dataset` applies limits and carves the
validation split out of train.

The package: :mod:`.splits` (the data types), :mod:`.loading` (the registry,
:func:`load_dataset`, batching, the calibration set), :mod:`.idx_files` (finding and
downloading IDX files) and :mod:`.builtin` (the datasets registered here).
"""

from __future__ import annotations

from .._idx import read_idx, write_idx
from . import builtin  # noqa: F401  (registers the shipped datasets)
from .idx_files import (
    APT_PACKAGES,
    IDX_FILES,
    MIRRORS,
    SYSTEM_DATA_DIRS,
    cache_dir,
    candidate_dirs,
    download_idx,
    find_idx_files,
)
from .loading import (
    CALIBRATION_EXAMPLES,
    DATASETS,
    calibration_set,
    dataset_for,
    iterate_batches,
    load_dataset,
)
from .splits import Dataset, RawData, Split

__all__ = [
    "APT_PACKAGES",
    "CALIBRATION_EXAMPLES",
    "DATASETS",
    "IDX_FILES",
    "MIRRORS",
    "SYSTEM_DATA_DIRS",
    "Dataset",
    "RawData",
    "Split",
    "cache_dir",
    "calibration_set",
    "candidate_dirs",
    "dataset_for",
    "download_idx",
    "find_idx_files",
    "iterate_batches",
    "load_dataset",
    "read_idx",
    "write_idx",
]

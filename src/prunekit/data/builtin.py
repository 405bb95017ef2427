"""The datasets prunekit ships, registered in :data:`~prunekit.data.DATASETS`:
Fashion-MNIST and MNIST (IDX files), scikit-learn's digits and a generated one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import PrunekitError
from .idx_files import _read_idx_cached, download_idx, find_idx_files
from .loading import DATASETS
from .splits import RawData, Split


def _idx_split(images_path: Path, labels_path: Path, num_classes: int = 10) -> Split:
    images, labels = _read_idx_cached(images_path), _read_idx_cached(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise PrunekitError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise PrunekitError(
            f"{labels_path}: expected 1-D integer labels, got {labels.dtype} {labels.shape}"
        )
    if len(labels) != len(images):
        raise PrunekitError(
            f"{labels_path}: {len(labels)} labels but {images_path} has {len(images)} images"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise PrunekitError(
            f"{labels_path}: labels must be in 0..{num_classes - 1}, "
            f"found {labels.min()}..{labels.max()}"
        )
    x = torch.from_numpy(images.astype(np.float32)).div_(255.0).unsqueeze(1)
    return Split(x, torch.from_numpy(labels.astype(np.int64)))


def _load_idx_dataset(name: str, data_dir: str | Path | None, download: bool) -> RawData:
    try:
        files = find_idx_files(name, data_dir)
    except PrunekitError:
        if not download:
            raise
        files = download_idx(name)
    train_x, train_y, test_x, test_y = files
    source = str(train_x.parent.resolve())
    return RawData(_idx_split(train_x, train_y), _idx_split(test_x, test_y), 10, source)


@DATASETS.register("fashion-mnist")
def _fashion_mnist(*, data_dir: str | Path | None = None, download: bool = False) -> RawData:
    """Zalando Fashion-MNIST: 60000 train / 10000 test, 1x28x28, 10 classes."""
    return _load_idx_dataset("fashion-mnist", data_dir, download)


@DATASETS.register("mnist")
def _mnist(*, data_dir: str | Path | None = None, download: bool = False) -> RawData:
    """LeCun MNIST digits: 60000 train / 10000 test, 1x28x28, 10 classes."""
    return _load_idx_dataset("mnist", data_dir, download)


# --- bundled / generated datasets ------------------------------------------------


@DATASETS.register("digits")
def _digits(
    *, data_dir: object = None, download: bool = False, test_fraction: float = 0.2, size: int = 8
) -> RawData:
    """scikit-learn's 1797 8x8 digits (values 0..16 scaled to [0, 1]), optionally resized.

    The test split is a fixed (seed 0) ``test_fraction`` of the examples, so it
    is the same whatever ``seed`` is passed to :func:`load_dataset`.
    """
    from .._optional import require

    load_digits = require("sklearn.datasets", "the digits dataset").load_digits

    if not 0.0 < test_fraction < 1.0:
        raise PrunekitError(f"digits: test_fraction must be in (0, 1), got {test_fraction}")
    images, labels = load_digits(return_X_y=True)
    x = torch.from_numpy(images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    data = Split(x, torch.from_numpy(labels.astype(np.int64)))
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    n_test = round(len(data) * test_fraction)
    test, train = data.subset(perm[:n_test].sort().values), data.subset(perm[n_test:].sort().values)
    return RawData(train, test, 10, "sklearn.datasets.load_digits")


@DATASETS.register("synthetic")
def _synthetic(
    *,
    data_dir: object = None,
    download: bool = False,
    n_train: int = 2000,
    n_test: int = 500,
    input_shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    noise: float = 0.5,
    max_shift: int = 3,
    data_seed: int = 0,
) -> RawData:
    """Generated classes: a smooth random prototype per class, shifted by up to
    ``max_shift`` pixels, plus Gaussian ``noise`` (std, [0, 1] units), clipped to [0, 1].
    """
    c, h, w = input_shape
    if min(n_train, n_test, c, h, w) < 1 or num_classes < 2:
        raise PrunekitError("synthetic: sizes must be positive and num_classes >= 2")
    g = torch.Generator().manual_seed(data_seed)
    coarse = torch.rand(num_classes, c, max(h // 4, 2), max(w // 4, 2), generator=g)
    protos = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)

    def sample(n: int) -> Split:
        y = torch.randint(num_classes, (n,), generator=g)
        x = protos[y]
        shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=g)
        for dy, dx in shifts.unique(dim=0).tolist():
            rows = (shifts == torch.tensor([dy, dx])).all(dim=1)
            x[rows] = x[rows].roll((dy, dx), dims=(2, 3))
        x = (x + noise * torch.randn(x.shape, generator=g)).clamp_(0.0, 1.0)
        return Split(x, y)

    train, test = sample(n_train), sample(n_test)
    return RawData(train, test, num_classes, f"synthetic(data_seed={data_seed})")

"""Datasets as in-memory tensors: Fashion-MNIST, MNIST, scikit-learn digits, synthetic.

Every dataset is returned as a :class:`Dataset` whose splits hold images as
float32 ``(N, C, H, W)`` tensors in ``[0, 1]`` and labels as int64 ``(N,)``.
Normalization is left to the model, which gets the train-split ``mean``/``std``.

A loader registered in :data:`DATASETS` is called as
``loader(data_dir=..., download=..., **options)`` and returns a :class:`RawData`
(train and test splits); :func:`load_dataset` applies limits and carves the
validation split out of train.
"""

from __future__ import annotations

import functools
import http.client
import inspect
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from prunekit._idx import read_idx, write_idx  # noqa: F401  (re-exported)
from prunekit.registry import PrunekitError, Registry

if TYPE_CHECKING:
    from prunekit.config import RunConfig

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# System-wide install locations (Debian: `apt-get install dataset-fashion-mnist`).
SYSTEM_DATA_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
    "mnist": (Path("/usr/share/datasets/mnist"),),
}
MIRRORS: dict[str, str] = {
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
}
APT_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}


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


# --- MNIST-style IDX datasets -------------------------------------------------


def cache_dir(name: str) -> Path:
    """Per-user download location: ``$XDG_CACHE_HOME/prunekit/<name>`` or ``~/.cache/...``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prunekit" / name


def candidate_dirs(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Directories searched for ``name``'s IDX files, in order (``root/name`` before ``root``)."""
    dirs: list[Path] = []
    for root in (data_dir, os.environ.get("PRUNEKIT_DATA")):
        if root:
            dirs += [Path(root).expanduser() / name, Path(root).expanduser()]
    dirs += [*SYSTEM_DATA_DIRS.get(name, ()), cache_dir(name)]
    return list(dict.fromkeys(dirs))


def _files_in(directory: Path) -> tuple[list[Path], list[str]]:
    found, missing = [], []
    for stem in IDX_FILES:
        path = next((p for p in (directory / stem, directory / f"{stem}.gz") if p.is_file()), None)
        if path is None:
            missing.append(stem)
        else:
            found.append(path)
    return found, missing


def find_idx_files(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """The four IDX files of ``name`` (order of ``IDX_FILES``), from the first complete dir."""
    looked = []
    for directory in candidate_dirs(name, data_dir):
        found, missing = _files_in(directory)
        if not missing:
            return found
        partial = found and f" (missing {', '.join(missing)})"
        looked.append(f"{directory}{partial or ''}")
    apt = f"`apt-get install {APT_PACKAGES[name]}`, " if name in APT_PACKAGES else ""
    raise PrunekitError(
        f"{name} data not found; looked in: {', '.join(looked)}. Get it with {apt}"
        f"--data-dir DIR (holding {', '.join(IDX_FILES)}, optionally .gz), "
        f"or --download (into {cache_dir(name)})"
    )


def download_idx(name: str) -> list[Path]:
    """Download ``name``'s gzipped IDX files from ``MIRRORS`` into :func:`cache_dir`."""
    dest = cache_dir(name)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PrunekitError(f"cannot create download dir {dest}: {exc.strerror or exc}") from None
    for stem in IDX_FILES:
        if not any((dest / f).is_file() for f in (stem, f"{stem}.gz")):
            _download(MIRRORS[name] + f"{stem}.gz", dest / f"{stem}.gz")
    return _files_in(dest)[0]


def _download(url: str, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, out)
        read_idx(tmp)  # refuse to cache an error page or a cut-off file
        os.replace(tmp, target)
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise PrunekitError(f"could not download {url}: {reason}") from None
    except PrunekitError as exc:
        raise PrunekitError(f"downloaded {url} is not a valid IDX file: {exc}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    array = read_idx(path)
    array.flags.writeable = False  # shared between loads
    return array


def _read_idx_cached(path: Path) -> np.ndarray:
    resolved = path.resolve()
    st = resolved.stat()
    return _read_cached(str(resolved), st.st_mtime_ns, st.st_size)


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
    from ._optional import require

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

"""Where the MNIST-style IDX files of a dataset are found (``--data-dir``,
``$PRUNEKIT_DATA``, system-wide installs, the user cache), how they are downloaded into
the cache, and a cache of the arrays read from them."""

from __future__ import annotations

import functools
import http.client
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from .._idx import read_idx
from ..registry import PrunekitError

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

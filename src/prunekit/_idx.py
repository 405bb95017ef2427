"""Reader/writer for the IDX format used by MNIST and Fashion-MNIST.

Layout: two zero bytes, a dtype code, the number of dimensions, one big-endian
uint32 per dimension, then the elements in big-endian C order. Files may be
gzip-compressed; compression is detected from the gzip magic bytes, so the
file name does not matter when reading.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

from prunekit.registry import PrunekitError

# IDX dtype code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
#: Ceiling on an IDX file's decompressed size (Fashion-MNIST's largest is 47 MB).
MAX_BYTES = 4 << 30


def _code_for(dtype: np.dtype) -> int | None:
    for code, idx_dtype in IDX_DTYPES.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    return None


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-byte-order array of the stored shape.

    Raises ``PrunekitError`` naming the file on bad magic, unknown dtype code,
    truncated/oversized data or corrupt gzip streams.
    """
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise PrunekitError(f"{path}: cannot read IDX file ({exc.strerror or exc})") from None
    if blob[:2] == _GZIP_MAGIC:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(blob)) as f:
                blob = f.read(MAX_BYTES + 1)  # a gzip bomb stops at the ceiling
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise PrunekitError(f"{path}: truncated or corrupt gzip data ({exc})") from None
        if len(blob) > MAX_BYTES:
            raise PrunekitError(f"{path}: decompresses to more than {MAX_BYTES:,} bytes")
    if len(blob) < 4:
        raise PrunekitError(f"{path}: file too short for an IDX header ({len(blob)} bytes)")
    if blob[:2] != b"\x00\x00":
        raise PrunekitError(
            f"{path}: bad magic 0x{blob[:4].hex()} (expected 0x0000 + dtype + ndim); not an IDX file"
        )
    code, ndim = blob[2], blob[3]
    if code not in IDX_DTYPES:
        raise PrunekitError(f"{path}: unknown IDX dtype code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise PrunekitError(f"{path}: truncated IDX header ({len(blob)} bytes, need {header})")
    shape = tuple(int(d) for d in np.frombuffer(blob, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    # Python integers: a header whose dimensions overflow int64 must not wrap around.
    expected = math.prod(shape) * dtype.itemsize
    if math.prod(d for d in shape if d) * dtype.itemsize > MAX_BYTES:  # even beside a 0
        raise PrunekitError(f"{path}: header dimensions {shape} are too large for an IDX file")
    if len(blob) - header != expected:
        raise PrunekitError(
            f"{path}: wrong size: header says shape {shape} ({expected} data bytes) "
            f"but file has {len(blob) - header} data bytes"
        )
    data = np.frombuffer(blob, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # copy: writable, native byte order


def write_idx(
    path: str | os.PathLike[str], array: np.ndarray, compress: bool | None = None
) -> None:
    """Write ``array`` as an IDX file, atomically (temp file in the same dir + rename).

    ``compress=None`` gzips iff the name ends with ``.gz``. Supported dtypes:
    uint8, int8, int16, int32, float32, float64 (any byte order).
    """
    path = Path(path)
    arr = np.asarray(array)
    code = _code_for(arr.dtype)
    if code is None:
        names = ", ".join(str(d.newbyteorder("=")) for d in IDX_DTYPES.values())
        raise PrunekitError(f"{path}: cannot write dtype {arr.dtype} to IDX; supported: {names}")
    if arr.ndim > 255 or any(d >= 2**32 for d in arr.shape):
        raise PrunekitError(f"{path}: shape {arr.shape} does not fit an IDX header")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    blob = header + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    if compress if compress is not None else path.name.endswith(".gz"):
        blob = gzip.compress(blob, mtime=0)
    atomic_write_bytes(path, blob)


def atomic_write_bytes(path: Path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` via a temp file in the same directory + ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""Writing files so that a crash never leaves half of one: single files and whole run
directories.

A single file is written under a temporary name, fsynced, then ``os.replace``d. A run
directory is written as a whole: staged in a hidden sibling, then one rename or atomic
exchange (:func:`commit`), so a crash or a kill leaves the old run or the new one, never
a mix. Files get the mode a normal tool would give them (umask respected).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import PrunekitError


def _umask() -> int:
    # os.umask can only be read by setting it; this process is single-threaded here.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_mode(path: Path, *, directory: bool = False) -> None:
    """Give a file (0666) or folder (0777) the mode ``open``/``mkdir`` would, minus
    the umask: mkstemp/mkdtemp make private 0600/0700 entries, and a shared results
    folder must stay readable by the others a normal tool would let read it."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the run directory as a whole ------------------------------------------------------
#
# A run is staged in a hidden sibling ``.NAME.new-PID-XXXX`` and committed with one
# rename (a fresh directory) or one atomic exchange (``renameat2(RENAME_EXCHANGE)``,
# an overwrite), so a reader -- or a process killed at any instant -- sees the old run
# or the new one, never a mix. Where the exchange is not available the old run is
# first renamed to ``.NAME.old-PID-XXXX``; :func:`recover` puts it back if a kill
# came between the two renames.

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where unsupported."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _siblings(out: Path, kind: str) -> list[Path]:
    parent = out.parent
    if not parent.is_dir():
        return []
    return sorted(parent.glob(f".{out.name}.{kind}-*"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(out: Path) -> None:
    """Finish what a killed commit left: restore an old run moved aside if ``out`` is
    missing, and remove stale staging folders of dead processes."""
    out = Path(out)
    if not out.exists():
        old = _siblings(out, "old")
        if old:
            try:
                os.rename(old[-1], out)
            except OSError:  # read-only parent: the reader still gets a clear "not found"
                return
    for kind in ("new", "old"):
        for p in _siblings(out, kind):
            pid = p.name.rsplit(".", 1)[-1].split("-")[1]
            if pid.isdigit() and not _pid_alive(int(pid)) and p != out:
                shutil.rmtree(p, ignore_errors=True)


def stage(out: Path) -> Path:
    """A fresh hidden sibling folder of ``out`` to write a run into."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.new-{os.getpid()}-"))
    publish_mode(tmp, directory=True)
    return tmp


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    publish_mode(path)


def commit(staged: Path, out: Path) -> None:
    """Make the staged folder the run directory ``out`` in one step (see above)."""
    _fsync_dir(staged)
    if not out.exists():
        os.rename(staged, out)
    elif _exchange(staged, out):
        shutil.rmtree(staged)  # now holds the old run
    else:
        aside = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-{os.getpid()}-"))
        aside.rmdir()
        os.rename(out, aside)
        os.rename(staged, out)
        shutil.rmtree(aside, ignore_errors=True)
    _fsync_dir(out.parent)


def write_run(out: Path, files: dict[str, bytes]) -> None:
    """Write a whole run directory (name -> bytes) and commit it at once."""
    out = Path(out)
    staged = stage(out)
    try:
        for name, data in files.items():
            if "/" in name or name.startswith("."):
                raise PrunekitError(f"bad run file name {name!r}")
            _write_file(staged / name, data)
        commit(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise

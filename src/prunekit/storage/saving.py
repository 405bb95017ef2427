"""Run directories: ``model.safetensors`` + ``model.json`` + ``result.json``.

Nothing is ever unpickled: tensors come from safetensors, structure from JSON.
``model.json`` holds the zoo name, the constructor kwargs and the shape of every
tensor, so a structurally smaller model is rebuilt by constructing the original
architecture and resizing each layer whose saved shape differs.
A run directory is written as a whole (staged in a hidden sibling, then one rename
or atomic exchange, see :func:`commit`), so a crash or a kill leaves the old run or
the new one, never a mix; single files are written atomically (temporary name, then
``os.replace``). Files get the mode a normal tool would give them (umask respected).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn

from ..checks import Check
from ..evaluation.cost import effective_tensors
from ..models import create_model
from ..registry import PrunekitError
from .integrity import check_state
from .resize import resize

FORMAT = "prunekit.model/v1"
RUN_FILES = ("model.safetensors", "model.json", "result.json")


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


def model_files(model: nn.Module, arch: dict[str, Any]) -> dict[str, bytes]:
    """``model.safetensors`` (masks applied, plain names) and ``model.json``, as bytes."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in effective_tensors(model).items()}
    spec = {
        "format": FORMAT,
        "name": arch["name"],
        "kwargs": arch.get("kwargs", {}),
        "input_shape": list(arch.get("input_shape", [])),
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
    }
    if arch.get("identity"):  # depth pruning: residual blocks replaced by nn.Identity
        spec["identity"] = list(arch["identity"])
    return {
        "model.safetensors": save_safetensors(tensors, metadata={"format": FORMAT}),
        "model.json": json_bytes(spec),
    }


def save_run(
    out: str | Path,
    result: dict[str, Any],
    model: nn.Module | None = None,
    arch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``out`` as a whole: the model files (if a model is given) and
    ``result.json`` with the sha256 of each under ``"checksums"`` (verified by
    :func:`load`). Returns the result as written."""
    files = model_files(model, arch or {}) if model is not None else {}
    result = {**result, "checksums": {name: sha256(data) for name, data in files.items()}}
    files["result.json"] = json_bytes(result)
    write_run(Path(out), files)
    return result


def check_writable(out: Path) -> None:
    """Refuse, before any work, an output path that cannot be created or written:
    a file on the way (``--out FILE/x``), a read-only or virtual file system."""
    out = Path(out)
    anc = out.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    for p in [*reversed(out.parents), out]:
        if p.exists() and not p.is_dir():
            raise PrunekitError(f"cannot use output directory {out}: {p} is not a directory")
    if not anc.exists() or not anc.is_dir():
        raise PrunekitError(f"cannot use output directory {out}: {anc} is not a directory")
    try:
        probe = tempfile.mkdtemp(dir=anc, prefix=".prunekit-probe-")
        os.rmdir(probe)
    except OSError as e:
        raise PrunekitError(
            f"cannot write output directory {out}: {e.strerror or e} ({anc})"
        ) from None


def check_out_dir(out: Path, config_hash: str | None, *, overwrite: bool) -> None:
    """Refuse an output directory that holds a different run (unless ``overwrite``),
    holds files prunekit did not write, or cannot be written."""
    out = Path(out)
    check_writable(out)
    recover(out)
    if not out.exists():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES)
    if foreign:
        # The commit replaces the folder as a whole: never take files it did not write.
        raise PrunekitError(
            f"{out} holds files that are not part of a prunekit run "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); "
            "choose a new or empty --out"
        )
    if overwrite:
        return
    result = out / "result.json"
    if result.exists():
        try:
            old = json.loads(result.read_text()).get("config_hash")
        except (OSError, ValueError, AttributeError):
            old = None
        if old is None or old != config_hash:
            raise PrunekitError(
                f"{out} already holds a different run (config {old}); "
                "choose another --out or pass --overwrite"
            )
    elif any((out / f).exists() for f in RUN_FILES):
        raise PrunekitError(f"{out} holds a partial run; pass --overwrite to replace it")


def check_same_data(out: Path, fingerprint: str, *, overwrite: bool) -> None:
    """The same flags on other data are another run: refuse to replace a finished run
    of the same config whose data fingerprint differs (unless ``overwrite``)."""
    result = Path(out) / "result.json"
    if overwrite or not result.is_file():
        return
    try:
        old = json.loads(result.read_text()).get("data_fingerprint")
    except (OSError, ValueError, AttributeError):
        old = None
    if old != fingerprint:
        raise PrunekitError(
            f"{out} holds a run of the same config on other data (data fingerprint "
            f"{old}, this data is {fingerprint}); choose another --out or pass --overwrite"
        )


def save_model(out: Path, model: nn.Module, arch: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``model.json`` into ``out`` (each atomically; a
    whole run directory goes through :func:`save_run`)."""
    for name, data in model_files(model, arch).items():
        atomic_write_bytes(Path(out) / name, data)


#: Ceilings for untrusted run directories: far above any zoo model (seedcnn has 4.8 M
#: parameters), low enough that a model.json cannot make ``load`` allocate gigabytes.
MAX_ELEMENTS = 250_000_000  # 1 GB of float32
MAX_HEADER_BYTES = 16 << 20
_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
_SHAPE = Check("list", item=Check("int", lo=0, hi=MAX_ELEMENTS))


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise PrunekitError(f"{path} not found: not a prunekit run directory") from None
    except (OSError, ValueError) as e:
        raise PrunekitError(f"{path} is corrupted: {e}") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT or "name" not in spec:
        raise PrunekitError(f"{path} is not a {FORMAT} model description")
    Check("str")(f"{path}: name", spec["name"])
    Check("dict")(f"{path}: kwargs", spec.get("kwargs", {}))
    Check("list", item=Check("str"))(f"{path}: identity", spec.get("identity", []))
    _SHAPE(f"{path}: input_shape", spec.get("input_shape", []))
    shapes = Check("dict")(f"{path}: shapes", spec.get("shapes", {}))
    for key, shape in shapes.items():
        shapes[key] = _SHAPE(f"{path}: shapes[{key!r}]", shape)
    spec["shapes"] = shapes
    return spec


def read_header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """``{name: (dtype, shape)}`` from a safetensors header, checked against the file
    size before anything is allocated: offsets inside the file, each tensor's byte
    length equal to its shape times its dtype's size."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
                raise PrunekitError(f"{path} is corrupted or truncated: bad header length")
            header = json.loads(f.read(n))
    except FileNotFoundError:
        raise PrunekitError(f"{path} not found") from None
    except (OSError, ValueError) as e:
        raise PrunekitError(f"{path} is corrupted or truncated: {e}") from None
    if not isinstance(header, dict):
        raise PrunekitError(f"{path} is corrupted: its header is not a mapping")
    data_bytes = size - 8 - n
    out: dict[str, tuple[str, list[int]]] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise PrunekitError(f"{path} is corrupted: bad entry for {key!r}")
        dtype = entry.get("dtype")
        shape = _SHAPE(f"{path}: shape of {key!r}", entry.get("shape"))
        offsets = entry.get("data_offsets")
        numel = math.prod(shape)
        if (
            dtype not in _DTYPE_BYTES
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_bytes
            or offsets[1] - offsets[0] != numel * _DTYPE_BYTES[dtype]
        ):
            raise PrunekitError(f"{path} is corrupted or truncated: bad entry for {key!r}")
        out[key] = (dtype, shape)
    total = sum(math.prod(shape) for _, shape in out.values())
    if total > MAX_ELEMENTS:
        raise PrunekitError(f"{path} holds {total:,} values; the ceiling is {MAX_ELEMENTS:,}")
    return out


def verify_checksums(run_dir: Path) -> None:
    """Compare each file's sha256 with ``result.json``'s ``checksums`` (when it has them)."""
    try:
        saved = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return  # a model without a result (or an old run): nothing to compare with
    checksums = saved.get("checksums") if isinstance(saved, dict) else None
    if not isinstance(checksums, dict):
        return
    for name, expected in checksums.items():
        if name not in RUN_FILES:
            continue
        try:
            digest = hashlib.sha256((run_dir / name).read_bytes()).hexdigest()
        except OSError as e:
            raise PrunekitError(f"{run_dir / name} cannot be read: {e.strerror or e}") from None
        if digest != expected:
            raise PrunekitError(
                f"{run_dir / name} does not match the checksum in result.json "
                "(corrupted or changed after saving)"
            )


def _build(spec: dict[str, Any], where: Path) -> nn.Module:
    """The zoo model of ``spec``, sized on the meta device first: a model.json whose
    constructor arguments ask for more than the ceiling is refused before allocating."""
    try:
        with torch.device("meta"):
            probe = create_model(spec["name"], **spec.get("kwargs", {}))
        numel = sum(t.numel() for t in (*probe.parameters(), *probe.buffers()))
    except PrunekitError as e:
        raise PrunekitError(f"{where}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any failure to build is the file's fault
        raise PrunekitError(f"{where}: cannot build {spec['name']!r}: {e}") from None
    if numel > MAX_ELEMENTS:
        raise PrunekitError(
            f"{where}: {spec['name']!r} with these arguments has {numel:,} values; "
            f"the ceiling is {MAX_ELEMENTS:,}"
        )
    return create_model(spec["name"], **spec.get("kwargs", {}))


def load(run_dir: str | Path) -> nn.Module:
    """Rebuild the zoo model saved in the run directory ``run_dir`` (eval mode); no
    unpickling. ``prunekit.load`` (``userio.load``) also loads a user's own model."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PrunekitError(f"{run_dir} is not a directory")
    recover(run_dir)
    spec = _read_spec(run_dir / "model.json")
    weights = run_dir / "model.safetensors"
    header = read_header(weights)
    verify_checksums(run_dir)
    mismatch = sorted(
        k
        for k in set(header) | set(spec["shapes"])
        if spec["shapes"].get(k) != header.get(k, (0, None))[1]
    )
    if spec["shapes"] and mismatch:
        raise PrunekitError(
            f"{weights} does not match {run_dir / 'model.json'}: tensor(s) "
            f"{', '.join(mismatch[:5])} differ in name or shape"
        )
    model = _build(spec, run_dir / "model.json")
    try:
        state = load_file(str(weights))
    except FileNotFoundError:
        raise PrunekitError(f"{weights} not found") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise PrunekitError(f"{weights} is corrupted or truncated: {e}") from None
    for name in spec.get("identity", []):  # blocks removed by depth pruning
        parent, _, child = name.rpartition(".")
        try:
            setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
        except AttributeError:
            raise PrunekitError(
                f"{run_dir / 'model.json'} removes unknown block {name!r}"
            ) from None
    resize(model, spec.get("shapes", {}))
    check_state(state, model.state_dict(), str(weights))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[:2]
        raise PrunekitError(
            f"{weights} does not match {run_dir / 'model.json'}: {' '.join(first)}"
        ) from None
    return model.eval()

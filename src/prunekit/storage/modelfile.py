"""``model.safetensors`` + ``model.json``: a zoo model's files, written and checked.

``model.json`` holds the zoo name, the constructor kwargs and the shape of every tensor,
so a structurally smaller model is rebuilt by constructing the original architecture and
resizing each layer whose saved shape differs. A run directory may come from someone
else: :func:`read_model_json`, :func:`read_header` and :func:`build` check its files against
ceilings before anything is allocated, and nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors
from torch import nn

from ..checks import Check
from ..errors import PrunekitError
from ..evaluation.cost import effective_tensors
from ..models import create_model
from .atomic import atomic_write_bytes, json_bytes

FORMAT = "prunekit.model/v1"


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


def save_model(out: Path, model: nn.Module, arch: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``model.json`` into ``out`` (each atomically; a
    whole run directory goes through :func:`prunekit.storage.saving.save_run`)."""
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


def read_model_json(path: Path) -> dict[str, Any]:
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


def build(spec: dict[str, Any], where: Path) -> nn.Module:
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

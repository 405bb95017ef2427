"""Run directories: ``model.safetensors`` + ``model.json`` + ``result.json``.

Nothing is ever unpickled: tensors come from safetensors, structure from JSON.
``model.json`` holds the zoo name, the constructor kwargs and the shape of every
tensor, so a structurally smaller model is rebuilt by constructing the original
architecture and resizing each layer whose saved shape differs.
Every file is written atomically (temporary name in the same directory, then
``os.replace``), so a crash never leaves a half-written file under a real name.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .evaluation.cost import effective_tensors
from .models import create_model
from .registry import PrunekitError

FORMAT = "prunekit.model/v1"
RUN_FILES = ("model.safetensors", "model.json", "result.json")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def check_out_dir(out: Path, config_hash: str | None, *, overwrite: bool) -> None:
    """Refuse an output directory that holds a different run, unless ``overwrite``."""
    result = out / "result.json"
    if overwrite or not out.exists():
        return
    if not out.is_dir():
        raise PrunekitError(f"output path {out} exists and is not a directory")
    if result.exists():
        try:
            old = json.loads(result.read_text()).get("config_hash")
        except (OSError, ValueError):
            old = None
        if old is None or old != config_hash:
            raise PrunekitError(
                f"{out} already holds a different run (config {old}); "
                "choose another --out or pass --overwrite"
            )
    elif any(out.iterdir()) and any((out / f).exists() for f in RUN_FILES):
        raise PrunekitError(f"{out} holds a partial run; pass --overwrite to replace it")


def save_model(out: Path, model: nn.Module, arch: dict[str, Any]) -> None:
    """Write ``model.safetensors`` (masks applied, plain names) and ``model.json``."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in effective_tensors(model).items()}
    tmp = out / ".model.safetensors.tmp"
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp), metadata={"format": FORMAT})
    os.replace(tmp, out / "model.safetensors")
    spec = {
        "format": FORMAT,
        "name": arch["name"],
        "kwargs": arch.get("kwargs", {}),
        "input_shape": list(arch.get("input_shape", [])),
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
    }
    if arch.get("identity"):  # depth pruning: residual blocks replaced by nn.Identity
        spec["identity"] = list(arch["identity"])
    atomic_write_json(out / "model.json", spec)


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise PrunekitError(f"{path} not found: not a prunekit run directory") from None
    except (OSError, ValueError) as e:
        raise PrunekitError(f"{path} is corrupted: {e}") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT or "name" not in spec:
        raise PrunekitError(f"{path} is not a {FORMAT} model description")
    return spec


def _resize(model: nn.Module, shapes: dict[str, list[int]]) -> None:
    """Replace every tensor whose saved shape differs by an empty one of that shape.

    Linear/Conv/BatchNorm attributes (in/out features, channels) are updated too, so
    ``repr`` and later surgery see the real sizes.
    """
    for key, shape in shapes.items():
        mod_name, _, attr = key.rpartition(".")
        try:
            module = model.get_submodule(mod_name)
        except AttributeError:
            continue
        cur = getattr(module, attr, None)
        if not isinstance(cur, torch.Tensor) or list(cur.shape) == shape:
            continue
        new = torch.empty(shape, dtype=cur.dtype)
        if isinstance(cur, nn.Parameter):
            setattr(module, attr, nn.Parameter(new, requires_grad=cur.requires_grad))
        else:
            module.register_buffer(attr, new)
        if attr == "weight" and isinstance(module, nn.Linear):
            module.out_features, module.in_features = shape
        elif attr == "weight" and isinstance(module, nn.modules.conv._ConvNd):
            module.out_channels = shape[0]
            module.in_channels = shape[1] * module.groups
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and attr in (
            "weight",
            "running_mean",
        ):
            module.num_features = shape[0]


def load(run_dir: str | Path) -> nn.Module:
    """Rebuild the ``nn.Module`` saved in ``run_dir`` (eval mode); no unpickling."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PrunekitError(f"{run_dir} is not a directory")
    spec = _read_spec(run_dir / "model.json")
    weights = run_dir / "model.safetensors"
    try:
        state = load_file(str(weights))
    except FileNotFoundError:
        raise PrunekitError(f"{weights} not found") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise PrunekitError(f"{weights} is corrupted or truncated: {e}") from None
    model = create_model(spec["name"], **spec.get("kwargs", {}))
    for name in spec.get("identity", []):  # blocks removed by depth pruning
        parent, _, child = str(name).rpartition(".")
        try:
            setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
        except AttributeError:
            raise PrunekitError(
                f"{run_dir / 'model.json'} removes unknown block {name!r}"
            ) from None
    _resize(model, spec.get("shapes", {}))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[:2]
        raise PrunekitError(
            f"{weights} does not match {run_dir / 'model.json'}: {' '.join(first)}"
        ) from None
    return model.eval()

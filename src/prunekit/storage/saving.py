"""Run directories: ``model.safetensors`` + ``model.json`` + ``result.json``, saved as a
whole and loaded back with every check.

:func:`save_run` writes the model files and ``result.json`` (holding the sha256 of each)
in one commit (:mod:`.atomic`); :func:`load` rebuilds the zoo model from ``model.json``
(:mod:`.modelfile`), verifies the checksums and the weights, and loads them without
unpickling.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..errors import PrunekitError
from .atomic import json_bytes, recover, sha256, write_run
from .integrity import check_state
from .modelfile import build, model_files, read_header, read_model_json
from .resize import resize

RUN_FILES = ("model.safetensors", "model.json", "result.json")


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


def load(run_dir: str | Path) -> nn.Module:
    """Rebuild the zoo model saved in the run directory ``run_dir`` (eval mode); no
    unpickling. ``prunekit.load`` (``userio.load``) also loads a user's own model."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PrunekitError(f"{run_dir} is not a directory")
    recover(run_dir)
    spec = read_model_json(run_dir / "model.json")
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
    model = build(spec, run_dir / "model.json")
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

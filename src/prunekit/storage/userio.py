"""Saving and loading a user's own model (any ``nn.Module``, possibly shrunk).

``save(model, dir)`` writes ``model.safetensors`` (every parameter and persistent buffer
under its public name, masks applied) and ``model.json`` (format, class name and the
shape of every tensor). Nothing is pickled: the code of the model stays the user's, so
``load(dir, model=fresh_instance)`` takes an instance built by the user's constructor,
resizes each layer whose saved shape differs (a shrunk model) and loads the tensors
strictly. A Hugging Face model (``save_pretrained``) is saved in its own format too
(``config.json`` + ``model.safetensors``), after its masks are baked into a copy, so
``from_pretrained`` loads it when its shapes are the config's; a shrunk one has widths
its config cannot express and loads with ``prunekit.load(dir, model=fresh)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..evaluation.cost import effective_tensors
from ..pruning.masks import clone, finalize
from ..registry import PrunekitError
from .atomic import atomic_write_json
from .modelfile import read_model_json
from .resize import resize
from .saving import load as load_run

USER_FORMAT = "prunekit.user-model/v1"
SPEC = "model.json"
WEIGHTS = "model.safetensors"
HF_SPEC = "prunekit.json"  # beside a Hugging Face save_pretrained directory


def _is_hf(model: nn.Module) -> bool:
    return callable(getattr(model, "save_pretrained", None)) and hasattr(model, "config")


def save(model: nn.Module, directory: str | Path) -> Path:
    """Save ``model`` (masked, finalized or shrunk) to ``directory``; returns it."""
    out = Path(directory)
    tensors = {k: v.detach().cpu().contiguous() for k, v in effective_tensors(model).items()}
    spec: dict[str, Any] = {
        "format": USER_FORMAT,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    if _is_hf(model):
        plain = finalize(clone(model))  # save_pretrained of a masked model loses the masks
        plain.save_pretrained(str(out))
        spec["weights"] = "huggingface"
        atomic_write_json(out / HF_SPEC, spec)
        return out
    tmp = out / f".{WEIGHTS}.tmp"
    save_file(_unshared(tensors), str(tmp), metadata={"format": USER_FORMAT})
    tmp.replace(out / WEIGHTS)
    atomic_write_json(out / SPEC, spec)
    return out


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def read_spec(directory: Path) -> dict[str, Any] | None:
    """The user-model description in ``directory`` (None when it holds none)."""
    for name in (SPEC, HF_SPEC):
        path = directory / name
        if path.exists():
            try:
                spec = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise PrunekitError(f"{path} is corrupted: {e}") from None
            if isinstance(spec, dict) and spec.get("format") == USER_FORMAT:
                return spec
    return None


def load(run_dir: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild the ``nn.Module`` saved in ``run_dir`` (eval mode); no unpickling.

    Without ``model``: a zoo run directory (``prunekit.run`` / the CLI), rebuilt from
    its ``model.json``. With ``model``: a fresh instance of a user's model class saved
    with ``prunekit.save``, resized to the saved (possibly shrunk) shapes and loaded.
    """
    if model is not None:
        return load_into(run_dir, model)
    return load_run(run_dir)


def load_into(directory: str | Path, model: nn.Module) -> nn.Module:
    """Resize ``model`` (a fresh instance of the saved model's class) to the saved
    shapes, load the saved tensors into it and return it in eval mode."""
    d = Path(directory)
    if not d.is_dir():
        raise PrunekitError(f"{d} is not a directory")
    spec = read_spec(d)
    shapes = spec["shapes"] if spec is not None else _shapes_of_zoo_dir(d)
    try:
        state = load_file(str(d / WEIGHTS))
    except FileNotFoundError:
        raise PrunekitError(f"{d / WEIGHTS} not found: not a saved prunekit model") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise PrunekitError(f"{d / WEIGHTS} is corrupted or truncated: {e}") from None
    resize(model, shapes)
    tied = _tied_names(model)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in tied]  # save_pretrained drops tied copies
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise PrunekitError(
            f"{d} does not match the given {type(model).__name__}: {what}; pass a fresh "
            "instance of the saved model's class, built with the same arguments"
        )
    if callable(getattr(model, "tie_weights", None)):
        model.tie_weights()
    return model.eval()


def _shapes_of_zoo_dir(d: Path) -> dict[str, list[int]]:
    return read_model_json(d / "model.json").get("shapes", {})


def _tied_names(model: nn.Module) -> set[str]:
    """Names of parameters that share their tensor with an earlier-named one."""
    first: dict[int, str] = {}
    tied = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            tied.add(name)
        else:
            first[id(p)] = name
    return tied

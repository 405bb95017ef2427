"""Optional dependencies: imported where used, with the one command that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from .registry import PrunekitError

#: import name -> (pip distribution, prunekit extra)
EXTRAS: dict[str, tuple[str, str]] = {
    "torch_pruning": ("torch-pruning", "peers"),
    "sklearn": ("scikit-learn", "digits"),
    "sklearn.datasets": ("scikit-learn", "digits"),
    "transformers": ("transformers", "transformers"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "onnx": ("onnx", "onnx"),
    "ray": ("ray", "ray"),
}


def require(module: str, what: str) -> ModuleType:
    """``import module``, or a one-line PrunekitError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        dist, extra = EXTRAS[module]
        raise PrunekitError(
            f"{what} needs {dist}, which is not installed: pip install 'prunekit[{extra}]'"
        ) from None


def import_torch_pruning(what: str) -> ModuleType:
    return require("torch_pruning", what)

"""What makes a run trustworthy: the fingerprint of the data it read, and the sanity
checks a saved run must pass before it is used.

- :func:`data_fingerprint`: sha256 (16 hex digits) over every split's tensors as read
  (after limits and the validation split), dtypes and shapes included. Part of a
  run's identity: the same flags on other data are another run.
- :func:`check_state`: every tensor of a loaded model has the model's dtype, floats
  are finite, and a normalization's ``std`` is positive. A run directory may come from someone else;
  it must not evaluate as valid when its weights are NaN, integer or nonsense.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from .registry import PrunekitError


def data_fingerprint(data: Any) -> str:
    """sha256 (16 hex digits) of a :class:`prunekit.data.Dataset`'s splits."""
    h = hashlib.sha256()
    for split_name in ("train", "val", "test"):
        split = getattr(data, split_name)
        for part in (split.x, split.y):
            t = part.detach().cpu().contiguous()
            h.update(f"{split_name}:{t.dtype}:{tuple(t.shape)};".encode())
            if t.numel():
                h.update(t.view(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()[:16]


def check_state(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where: str
) -> None:
    """Refuse a tensor whose dtype differs from the model's own (int64 weights, say),
    non-finite float values, and a non-positive normalization std."""
    for key, t in state.items():
        want = expected.get(key)
        if want is not None and t.dtype != want.dtype:
            raise PrunekitError(
                f"{where}: tensor {key!r} has dtype {t.dtype}; the model expects {want.dtype}"
            )
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise PrunekitError(f"{where}: tensor {key!r} holds NaN or infinite values")
        if key.rpartition(".")[2] == "std" and not bool((t > 0).all()):
            raise PrunekitError(f"{where}: normalization {key!r} is not positive")

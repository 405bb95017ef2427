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

import contextlib
import hashlib
from typing import Any

import torch

from ..registry import PrunekitError


def data_fingerprint(data: Any) -> str:
    """sha256 (16 hex digits) of a :class:`prunekit.data.Dataset`'s splits.

    Kept on the dataset object once computed (0.65 s for Fashion-MNIST): a comparison
    runs every cell of a group on one dataset object, which is never modified."""
    cached = getattr(data, "_prunekit_fingerprint", None)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    for split_name in ("train", "val", "test"):
        split = getattr(data, split_name)
        for part in (split.x, split.y):
            t = part.detach().cpu().contiguous()
            h.update(f"{split_name}:{t.dtype}:{tuple(t.shape)};".encode())
            if t.numel():
                h.update(t.view(-1).view(torch.uint8).numpy().data)
    digest = h.hexdigest()[:16]
    # A frozen or slotted stand-in cannot keep it: recomputed next time.
    with contextlib.suppress(AttributeError):
        data._prunekit_fingerprint = digest
    return digest


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


def check_alive(model: Any, method: Any, sparsity: float) -> None:
    """Refuse a pruned model with a layer whose every output unit is zero: it computes
    a constant, whatever its input, and its accuracy is chance. The message names the
    layer and the option that emptied it (the method's lambda, else the sparsity)."""
    from ..pruning.masks import PRUNABLE_TYPES, effective

    for name, m in model.named_modules():
        if not isinstance(m, PRUNABLE_TYPES):
            continue
        w = effective(m).detach()
        if w.numel() and not bool(w.flatten(1).ne(0).any()):
            lam = (getattr(method, "objective_args", None) or {}).get("lam")
            cause = (
                f"lambda={lam:g} of method {method.name!r}; lower --lambda"
                if isinstance(lam, int | float) and getattr(method, "objective", None)
                else f"sparsity {sparsity:g} with method {method.name!r} "
                f"({method.granularity}, {method.scope} scope); lower --sparsity "
                "or use --scope layer"
            )
            raise PrunekitError(
                f"pruning left no unit of layer {name!r} alive (the model would output "
                f"a constant): {cause}"
            )

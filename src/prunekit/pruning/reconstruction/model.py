"""Wanda and SparseGPT on a whole model: allocation, then layer-sequential pruning.

``reconstruct(model, modules, x, algorithm=...)`` prunes the Linear / Conv layers in
``modules`` in forward order. For each layer: capture its inputs from the model
whose earlier layers are already pruned (``calibrate.capture``), choose the pruned
weights (Wanda: ``|W|·||X_j||`` per output row; SparseGPT: adaptive OBS masks), write
SparseGPT's updated weights into the layer's trainable tensor (``weight_orig`` once
masked) and intersect its mask. Already-pruned weights stay pruned and count.

Granularities: ``weight`` (the per-layer counts come from the allocation, see
``allocation.py``; ``scope="layer"`` is ``uniform``) and ``nm`` (every layer at N:M,
``n`` kept of every ``m`` consecutive inputs; ``skip_indivisible`` leaves layers whose
input dimension ``m`` does not divide dense).

Calibration inputs ``x``: the pipeline passes 512 examples of the seeded
validation split (``ctx.data``, the same batch every data-driven criterion uses).
"""

from __future__ import annotations

import torch
from torch import nn

from ...registry import PrunekitError
from ..granularity.nm import DEFAULT_M, DEFAULT_N, check_nm, check_nm_sparsity
from ..masks import apply_mask, effective, get_mask, original
from .allocation import allocate
from .calibrate import capture, forward_order
from .layers import from_2d, supports, to_2d
from .sparsegpt import sparsegpt_prune
from .wanda import wanda_mask

ALGORITHMS = ("wanda", "sparsegpt")
GRANULARITIES = ("weight", "nm")  # the granularities whose masks a solver chooses itself


def check_layers(modules: dict[str, nn.Module]) -> None:
    bad = [n for n, m in modules.items() if not supports(m)]
    if bad:
        raise PrunekitError(
            f"reconstruction needs Linear / Conv (groups=1, zero padding) layers; "
            f"cannot handle {bad}: exclude them"
        )


@torch.no_grad()
def reconstruct(
    model: nn.Module,
    modules: dict[str, nn.Module],
    x: torch.Tensor,
    *,
    algorithm: str,
    sparsity: float,
    scope: str = "global",
    granularity: str = "weight",
    allocation: str = "global",
    n: int = DEFAULT_N,
    m: int = DEFAULT_M,
    skip_indivisible: bool = False,
    blocksize: int = 128,
    percdamp: float = 0.01,
    batch_size: int = 512,
    **allocation_options: object,
) -> dict[str, torch.Tensor]:
    """Prune ``modules`` of ``model`` in place; returns the masks applied
    (``{"fc1.weight": keep-mask}``, 1 = keep)."""
    if algorithm not in ALGORITHMS:
        raise PrunekitError(f"unknown reconstruction {algorithm!r}; known: {ALGORITHMS}")
    if granularity not in GRANULARITIES:
        raise PrunekitError(
            f"{algorithm} prunes at granularity 'weight' or 'nm', not {granularity!r}"
        )
    if scope not in ("global", "layer"):
        raise PrunekitError(f"scope must be 'global' or 'layer', got {scope!r}")
    check_layers(modules)
    if x.shape[0] == 0:
        raise PrunekitError(f"{algorithm} needs calibration data (got 0 examples)")
    nm = granularity == "nm"
    if nm:
        n, m = check_nm(n, m)
        check_nm_sparsity(sparsity, n, m)
        targets = {}
        for name, mod in modules.items():
            fan_in = to_2d(mod, original(mod)).shape[1]
            if fan_in % int(m) == 0:
                targets[name] = mod
            elif not skip_indivisible:
                raise PrunekitError(
                    f"N:M {n}:{m}: M={m} does not divide the input dimension {fan_in} of "
                    f"layer {name!r}; exclude it or pass skip_indivisible=true"
                )
        modules = targets
        counts: dict[str, int] = {}
    else:
        how = "uniform" if scope == "layer" else allocation
        counts = allocate(how, model, modules, sparsity, x, **allocation_options)
    masks = {}
    for name in forward_order(model, modules, x):
        mod = modules[name]
        stats = capture(
            model, mod, x, hessian=algorithm == "sparsegpt", batch_size=batch_size, name=name
        )
        weight = original(mod)
        # the effective weight: masked entries of weight_orig may hold stale values
        # (weight decay only shrinks them), which must not be "compensated"
        w2d = to_2d(mod, effective(mod).detach())
        old = get_mask(mod)
        forced = to_2d(mod, old == 0) if old is not None else None
        select = dict(n=n, m=m) if nm else dict(sparsity=counts[name] / w2d.numel())
        if algorithm == "sparsegpt":
            new, pruned = sparsegpt_prune(
                w2d,
                stats.hessian(),
                blocksize=blocksize,
                percdamp=percdamp,
                forced=forced,
                **select,
            )
            weight.copy_(from_2d(mod, new).to(weight.dtype))
        else:
            pruned = wanda_mask(w2d, stats.column_norms(), forced=forced, **select)
        keep = from_2d(mod, (~pruned).to(weight.dtype)).contiguous()
        apply_mask(mod, keep)
        masks[f"{name}.weight"] = keep
    return masks

"""Pruning a causal LM's blocks: magnitude, Wanda, SparseGPT; uniform or OWL allocation.

Every method prunes the linear layers inside the transformer blocks (``nn.Linear`` or
GPT-2's ``Conv1D``, seen as ``W`` ``(out, in)``); embeddings, the final norm and the
output layer stay dense. Blocks are processed in order by
:func:`prunekit.lm.blocks.sequential`, so memory holds one block's statistics at a time.

==========  ===================================================================
method      per layer (the maths lives in ``prunekit.pruning.reconstruction``)
==========  ===================================================================
magnitude   the ``round(s · numel)`` smallest ``|W_ij|`` of the layer (per layer,
            as the Wanda paper's magnitude baseline); N:M: the ``m - n`` smallest
            of every ``m`` consecutive inputs. No data.
wanda       ``|W_ij| · ||X_j||_2`` compared within each output row (Sun et al. 2023)
sparsegpt   OBS pruning with weight updates from ``H = 2 X Xᵀ`` (Frantar & Alistarh
            2023); the weights that stay are changed to reconstruct ``W X``
==========  ===================================================================

``owl=True`` (OWL, Yin et al. 2024, "Outlier Weighed Layerwise Sparsity"): a first pass
through the dense blocks measures each block's outlier ratio ``D_b`` = share of its
layers' Wanda scores ``|W_ij| ||X_j||`` above ``owl_m`` times their mean; block
densities are then ``1 - s + 2λ (D̂_b - mean D̂)`` with ``D̂`` min-max normalised to
[0, 1] and ``λ = owl_lambda`` (capped, see :func:`owl_lambda`), so blocks rich in outliers keep more weights and the
mean block sparsity stays ``s``. Unstructured only (N:M fixes every layer's sparsity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..pruning.reconstruction import (
    InputStats,
    from_2d,
    inputs_2d,
    nm_prune,
    sparsegpt_prune,
    wanda_mask,
    wanda_scores,
    weight_2d,
)
from ..pruning.reconstruction.selection import lowest_per_row, target_count
from ..registry import PrunekitError
from .blocks import block_linears, find_blocks, observe, prunable_linears, sequential

LM_METHODS = ("magnitude", "wanda", "sparsegpt")
NEEDS_HESSIAN = {"magnitude": None, "wanda": False, "sparsegpt": True}


@dataclass(frozen=True)
class LMPruneSpec:
    """What to prune and how. ``n``/``m`` set: N:M (``sparsity`` is then ``1 - n/m``)."""

    method: str
    sparsity: float
    n: int | None = None
    m: int | None = None
    owl: bool = False
    owl_lambda: float = 0.08
    owl_m: float = 5.0
    percdamp: float = 0.01
    blocksize: int = 128
    exclude: tuple[str, ...] = ()

    @property
    def nm(self) -> bool:
        return self.n is not None


def check_spec(model: nn.Module, spec: LMPruneSpec) -> None:
    """Refuse bad input up front, in one line: unknown method, sparsity, N:M that does
    not divide a layer's input size, OWL with N:M, exclusions that match nothing."""
    if spec.method not in LM_METHODS:
        raise PrunekitError(
            f"method {spec.method!r} does not prune language models; LM methods: "
            f"{', '.join(LM_METHODS)}"
        )
    if not 0.0 <= spec.sparsity < 1.0:
        raise PrunekitError(f"sparsity must be in [0, 1), got {spec.sparsity}")
    layers = prunable_linears(model)
    unknown = sorted(set(spec.exclude) - set(layers))
    if unknown:
        raise PrunekitError(f"exclude: no block linear layer named {', '.join(unknown)}")
    if spec.nm:
        if spec.owl:
            raise PrunekitError("OWL allocates unstructured sparsity; it does not apply to N:M")
        for name, module in layers.items():
            fan_in = weight_2d(module).shape[1]
            if name not in spec.exclude and fan_in % spec.m:
                raise PrunekitError(
                    f"N:M {spec.n}:{spec.m}: M={spec.m} does not divide the input size "
                    f"{fan_in} of layer {name!r}"
                )
    if spec.owl and spec.owl_lambda < 0:
        raise PrunekitError(f"owl_lambda must be >= 0, got {spec.owl_lambda}")


def owl_lambda(spec: LMPruneSpec) -> float:
    """The λ OWL uses: ``owl_lambda`` capped at ``min(s, 1 - s) / 2``. Block densities
    span ``2λ`` around their mean, and a skewed set of outlier ratios can put one block
    the whole ``2λ`` from the mean, so this cap is what keeps every block sparsity in
    [0, 1] (OWL's λ = 0.08 at s = 0.9 could ask a block for 102 %)."""
    return min(spec.owl_lambda, min(spec.sparsity, 1 - spec.sparsity) / 2)


def magnitude_prune_mask(w: torch.Tensor, spec: LMPruneSpec, sparsity: float) -> torch.Tensor:
    """Prune mask of the smallest ``|W|``: per layer, or N:M along the inputs."""
    scores = w.detach().abs().float()
    if spec.nm:
        return nm_prune(scores, spec.n, spec.m)
    k = target_count(scores.numel(), sparsity)
    return lowest_per_row(scores.reshape(1, -1), torch.tensor([k])).view_as(scores)


@torch.no_grad()
def prune_layer(
    module: nn.Module, spec: LMPruneSpec, sparsity: float, stats: InputStats | None
) -> None:
    """Prune one layer in place (its weight keeps its layout; pruned entries become 0)."""
    w = weight_2d(module).detach()
    nm: dict[str, Any] = {"n": spec.n, "m": spec.m} if spec.nm else {}
    if spec.method == "magnitude":
        new = w.masked_fill(magnitude_prune_mask(w, spec, sparsity), 0.0)
    elif spec.method == "wanda":
        drop = wanda_mask(w, stats.column_norms(), None if spec.nm else sparsity, **nm)
        new = w.masked_fill(drop, 0.0)
    else:
        new, _ = sparsegpt_prune(
            w.float().contiguous(),  # Conv1D's (out, in) view is a transpose
            stats.hessian(),
            None if spec.nm else sparsity,
            blocksize=spec.blocksize,
            percdamp=spec.percdamp,
            **nm,
        )
    module.weight.copy_(from_2d(module, new.to(module.weight.dtype)))


def _collectors(
    block: nn.Module, names: list[str], hessian: bool
) -> tuple[dict[str, InputStats], dict[str, Any]]:
    linears = block_linears(block)
    stats = {n: InputStats(weight_2d(linears[n]).shape[1], hessian=hessian) for n in names}
    hooks = {n: (lambda x, n=n: stats[n].update(inputs_2d(linears[n], x))) for n in names}
    return stats, hooks


def owl_sparsities(
    model: nn.Module, calib: torch.Tensor, spec: LMPruneSpec, *, batch_size: int = 8
) -> list[float]:
    """Per-block sparsities from the dense model's outlier ratios (module docstring)."""
    ratios: list[float] = []

    def measure(_i: int, block: nn.Module, inputs: list) -> None:
        names = list(block_linears(block))
        stats, hooks = _collectors(block, names, hessian=False)
        observe(block, inputs, hooks)
        linears = block_linears(block)
        scores = torch.cat(
            [
                wanda_scores(weight_2d(linears[n]).float(), stats[n].column_norms()).flatten()
                for n in names
            ]
        )
        ratios.append(float((scores > spec.owl_m * scores.mean()).float().mean()))

    sequential(model, calib, measure, batch_size=batch_size)
    d = torch.tensor(ratios, dtype=torch.float64)
    spread = d.max() - d.min()
    normed = (d - d.min()) / spread if spread > 0 else torch.zeros_like(d)
    density = normed * 2 * owl_lambda(spec)
    density = density - density.mean() + (1 - spec.sparsity)
    return [float(1 - x) for x in density]


def prune_lm(
    model: nn.Module, spec: LMPruneSpec, calib: torch.Tensor | None, *, batch_size: int = 8
) -> dict[str, Any]:
    """Prune ``model``'s blocks in place; returns what was done (per-block sparsities)."""
    check_spec(model, spec)
    path, blocks = find_blocks(model)
    data_free = spec.method == "magnitude" and not spec.owl
    if not data_free and calib is None:
        raise PrunekitError(
            f"{spec.method}{' with OWL' if spec.owl else ''} needs calibration data"
        )
    per_block = (
        owl_sparsities(model, calib, spec, batch_size=batch_size)
        if spec.owl
        else [spec.sparsity] * len(blocks)
    )
    hessian = NEEDS_HESSIAN[spec.method]

    def prune_block(i: int, block: nn.Module, inputs: list | None) -> None:
        linears = block_linears(block)
        names = [n for n in linears if f"{path}.{i}.{n}" not in spec.exclude]
        stats: dict[str, InputStats] = {}
        if hessian is not None:
            stats, hooks = _collectors(block, names, hessian=hessian)
            observe(block, inputs, hooks)
        for n in names:
            prune_layer(linears[n], spec, per_block[i], stats.get(n))
            stats.pop(n, None)  # free an in x in Hessian as soon as its layer is done

    sequential(model, None if data_free else calib, prune_block, batch_size=batch_size)
    return {
        "block_sparsity": per_block,
        "blocks": f"{path}[0..{len(blocks) - 1}]",
        "owl_lambda": owl_lambda(spec) if spec.owl else None,
    }

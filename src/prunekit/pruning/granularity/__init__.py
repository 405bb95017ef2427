"""Granularities: turn importance scores into masks, at an exact target sparsity.

A *criterion* gives each prunable module a score tensor (higher = more important),
either weight-shaped or, for unit criteria, one score per output unit. A
*granularity* groups those scores into units of removal and zeroes the lowest
``round(sparsity * n_groups)`` groups:

=========  ======================================  ===============================
name       unit of removal                         group score
=========  ======================================  ===============================
weight     one weight (``weight.py``)                the score itself
neuron     an output unit (Linear row, conv        mean score over the unit's
           filter; its bias entry goes with it;    weights (= L1 norm / fan-in),
           ``prune_step`` adds the BatchNorm after  averaged over tied layers
           it and ties residual partners)
kernel     a kh x kw kernel W[o, i] (Linear: one   mean score over the kernel
           weight); ``kernel.py``
nm         the m-n lowest of every m consecutive   the score itself; sparsity is
           inputs (N:M); ``nm.py``     fixed at 1 - n/m
=========  ======================================  ===============================

The mean (not the sum) makes units of layers with different fan-in comparable
under ``scope="global"``; within a layer both rank identically.

Scope ``"layer"`` applies the sparsity to every module separately; ``"global"``
ranks all groups of all modules together. Sparsity is always the fraction of
*units of removal* (weights, kernels, neurons); already-pruned groups count
towards it and always stay pruned (their score is forced to -inf), so masks
only ever lose entries. Ties are broken by position (stable sort), so the count
is exact.

Masks are returned as ``{"<module>.weight": mask, "<module>.bias": mask}``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...registry import PrunekitError
from .base import GRANULARITIES, Granularity, check_sparsity, per_weight, unit_scores

__all__ = [
    "GRANULARITIES",
    "Granularity",
    "check_sparsity",
    "get",
    "implied_sparsity",
    "make_masks",
    "regularizable",
    "per_weight",
    "unit_scores",
]


def get(name: str) -> Granularity:
    """The registered granularity ``name`` (an unknown name lists the known ones)."""
    return GRANULARITIES.get(name)


def implied_sparsity(name: str, options: dict[str, Any]) -> float | None:
    """The sparsity a granularity fixes by itself (``nm``: ``1 - n/m``), else None."""
    gran = get(name)
    own = {k: v for k, v in options.items() if k in gran.Options.names()}
    return gran.implied_sparsity(gran.options(own))


def regularizable() -> list[str]:
    """Names of the granularities the L1 / L0 objectives can shape (``regularized_as``)."""
    return [n for n in GRANULARITIES.names() if get(n).regularized_as is not None]


def make_masks(
    granularity: str,
    modules: dict[str, nn.Module],
    scores: dict[str, torch.Tensor],
    sparsity: float,
    scope: str = "global",
    **options: Any,
) -> dict[str, torch.Tensor]:
    """Masks at ``sparsity`` from criterion scores, by the named granularity."""
    missing = [n for n in modules if n not in scores]
    if missing:
        raise PrunekitError(f"criterion gave no scores for layers {missing}")
    return get(granularity)(modules, scores, sparsity, scope, **options)


def _register_all() -> None:
    """Import every module of this package: each registers its granularity."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_register_all()

"""``kernel`` granularity: connection pruning, one ``kh x kw`` kernel ``W[o, i]`` per unit.

The unit of removal is the connection between one input channel ``i`` and one output
channel ``o``: for a conv weight of shape ``(O, I, kh, kw)`` a layer has ``O * I``
kernels. A kernel's score is the mean of its weights' scores (already-pruned weights
count as 0; a fully pruned kernel scores ``-inf``); with the magnitude criterion this
is ``||W[o, i]||_1 / (kh*kw)``, the kernel-level pruning of Mao et al. 2017 ("Exploring
the Granularity of Sparsity in CNNs"). The mean keeps kernels of different sizes
comparable under ``scope="global"``. A Linear layer is a conv with 1x1 kernels: each
weight is its own kernel. ``round(sparsity * n_kernels)`` kernels are zeroed, per layer
or ranked across all layers (``scope``). A layer may lose all its kernels, as under
``weight`` granularity.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...registry import PrunekitError
from ..masks import original
from .base import GRANULARITIES, Granularity, _prepare, _select


def weight_scores(name: str, module: nn.Module, score: torch.Tensor, what: str) -> torch.Tensor:
    """The prepared weight-shaped score of a layer, or an error naming it."""
    prepared = _prepare(module, score)
    if prepared.shape != original(module).shape:
        raise PrunekitError(
            f"criterion gave layer {name!r} scores of shape {tuple(prepared.shape)}; "
            f"{what} granularity needs one score per weight"
        )
    return prepared


def kernel_scores(score: torch.Tensor) -> torch.Tensor:
    """``(O, I, *k)`` weight scores -> ``(O * I,)`` kernel scores (mean over the kernel;
    ``-inf`` entries count as 0, a kernel of only ``-inf`` entries scores ``-inf``)."""
    per_kernel = score.reshape(score.shape[0] * score.shape[1], -1)
    dead = torch.isinf(per_kernel) & (per_kernel < 0)
    mean = torch.where(dead, torch.zeros_like(per_kernel), per_kernel).mean(1)
    return torch.where(dead.all(1), torch.tensor(float("-inf")), mean)


class Kernel(Granularity):
    name = "kernel"

    def masks(
        self,
        modules: dict[str, nn.Module],
        scores: dict[str, torch.Tensor],
        sparsity: float,
        scope: str,
        options: Any,
    ) -> dict[str, torch.Tensor]:
        s = float(sparsity)  # checked at the boundary (see Granularity.__call__)
        prepared = {n: weight_scores(n, modules[n], scores[n], "kernel") for n in modules}
        groups = {n: kernel_scores(sc) for n, sc in prepared.items()}
        drop = _select(groups, s, scope, keep_one=False)
        masks = {}
        for n, sc in prepared.items():
            keep = (~drop[n]).float().view(sc.shape[0], sc.shape[1], *([1] * (sc.dim() - 2)))
            masks[f"{n}.weight"] = keep.expand(sc.shape).clone()
        return masks


GRANULARITIES.add("kernel", Kernel())

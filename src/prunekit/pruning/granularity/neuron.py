"""``neuron`` granularity: whole output units (a Linear row, a conv filter; its bias
entry goes with it, and ``prune_step`` adds the BatchNorm after it and ties residual
partners).

Group score = the mean score over the unit's weights (= L1 norm / fan-in for the
magnitude criterion), averaged over tied layers. The mean (not the sum) makes units of
layers with different fan-in comparable under ``scope="global"``. At least one unit of
every layer stays, and the classifier head is never a target (its units are classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...registry import PrunekitError
from ..masks import from_out_in, original, out_in
from ..options import Options, option
from .base import GRANULARITIES, Granularity, _select, unit_scores


def _whole(key: str, value: Any) -> Any:
    if int(value) < 1:
        raise PrunekitError(f"round_to must be a whole number >= 1, got {value}")
    return value


@dataclass(frozen=True)
class NeuronOptions(Options):
    round_to: int = option(
        1, "each layer keeps a multiple of this many units (its best extra units)", _whole
    )


class Neuron(Granularity):
    name = "neuron"
    removes_units = True
    regularized_as = "unit"
    Options = NeuronOptions

    def masks(
        self,
        modules: dict[str, nn.Module],
        scores: dict[str, torch.Tensor],
        sparsity: float,
        scope: str,
        options: Any,
        ties: Sequence[Sequence[str]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``ties``: groups of layers whose units go together (``prune_step`` passes the
        surgery's dependency groups, e.g. the convs of a residual stage); a tied unit
        scores the mean of its layers' unit scores, ``-inf`` only if dead in all of them.
        Each group is one "layer" for ``scope="layer"``. Default: every layer alone.
        ``round_to=k``: each group keeps a multiple of ``k`` units (capped at its size)
        by keeping its best-scored extra units, so the pruned fraction can be lower."""
        s = float(sparsity)  # checked at the boundary (see Granularity.__call__)
        round_to = int(options.round_to)
        if round_to < 1:
            raise PrunekitError(f"round_to must be a whole number >= 1, got {options.round_to}")
        ties = [list(t) for t in ties] if ties is not None else [[n] for n in modules]
        groups = {}
        for tie in ties:
            per_layer = torch.stack([unit_scores(modules[n], scores[n]) for n in tie])
            finite = torch.where(torch.isinf(per_layer), torch.nan, per_layer).nanmean(0)
            groups[", ".join(tie)] = torch.where(torch.isinf(per_layer).all(0), -torch.inf, finite)
        drop = _select(groups, s, scope, keep_one=True)
        masks = {}
        for tie, (key, d) in zip(ties, drop.items(), strict=True):
            keep = (~_round_kept(d, groups[key], round_to)).float()
            for n in tie:
                m, w = modules[n], out_in(modules[n], original(modules[n]))
                unit = keep.view(-1, *([1] * (w.dim() - 1))).expand_as(w)
                masks[f"{n}.weight"] = from_out_in(m, unit).contiguous()
                if hasattr(m, "bias_orig") or getattr(m, "bias", None) is not None:
                    masks[f"{n}.bias"] = keep.clone()
        return masks


def _round_kept(drop: torch.Tensor, score: torch.Tensor, k: int) -> torch.Tensor:
    """Un-drop the best-scored dropped units until the kept count is a multiple of
    ``k`` (or the group is whole); already-pruned (``-inf``) units stay dropped."""
    kept = int((~drop).sum())
    extra = min(-kept % k, drop.numel() - kept)
    candidates = torch.where(drop & ~torch.isinf(score), score, -torch.inf)
    order = torch.sort(candidates, descending=True, stable=True).indices[:extra]
    drop = drop.clone()
    drop[order[~torch.isinf(candidates[order])]] = False
    return drop


GRANULARITIES.add("neuron", Neuron())

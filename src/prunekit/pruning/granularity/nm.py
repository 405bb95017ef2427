"""``nm`` granularity: N:M fine-grained structured sparsity (NVIDIA Ampere 2:4; Mishra
et al. 2021, "Accelerating Sparse Deep Neural Networks").

Along the input dimension, every group of ``m`` consecutive weights keeps its ``n``
highest-scored ones. Linear ``(O, I)``: each row splits into ``I / m`` groups of
consecutive inputs. Conv ``(O, I, kh, kw)``: groups run along the input channels at each
``(o, kh, kw)`` position, i.e. over the weight permuted to ``(O, kh, kw, I)``, as in
NVIDIA's ASP. The pattern fixes the sparsity at ``1 - n/m``: the ``sparsity`` argument
must equal it (the CLI fills it in when ``--sparsity`` is omitted), so only a one-shot
schedule fits. ``scope`` plays no role (every group is its own unit). A group whose
weights were already pruned keeps fewer than ``n`` nonzeros: masks only ever lose
entries. ``m`` must divide every layer's input dimension, unless
``skip_indivisible=True``, which leaves such layers (e.g. a first conv with 1 or 3
input channels) dense. A transformers ``Conv1D`` (weight ``(in, out)``) is grouped
along its inputs too, i.e. down its weight's columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...registry import PrunekitError
from ..masks import from_out_in, get_mask, original, out_in
from ..options import Options, option
from .base import GRANULARITIES, Granularity, check_sparsity
from .kernel import weight_scores

#: The default pattern (NVIDIA Ampere's 2:4), written once.
DEFAULT_N, DEFAULT_M = 2, 4


@dataclass(frozen=True)
class NMOptions(Options):
    n: int = option(DEFAULT_N, "weights kept in every group of m consecutive inputs")
    m: int = option(DEFAULT_M, "group size along the input dimension")
    skip_indivisible: bool = option(
        False, "leave layers whose input dimension m does not divide dense"
    )


def check_nm(n: object, m: object) -> tuple[int, int]:
    """Validate an N:M pattern: whole numbers with ``1 <= n < m``."""
    if (
        isinstance(n, bool)
        or isinstance(m, bool)
        or not isinstance(n, int)
        or not isinstance(m, int)
    ):
        raise PrunekitError(f"N:M needs whole numbers, got n={n!r}, m={m!r}")
    if not 1 <= n < m:
        raise PrunekitError(f"N:M needs 1 <= N < M, got {n}:{m}")
    return n, m


def nm_sparsity(n: int = DEFAULT_N, m: int = DEFAULT_M) -> float:
    """The sparsity an N:M pattern fixes: ``1 - n/m``."""
    n, m = check_nm(n, m)
    return 1.0 - n / m


def check_nm_sparsity(sparsity: float, n: int = DEFAULT_N, m: int = DEFAULT_M) -> None:
    """Refuse a target sparsity other than the one the N:M pattern fixes."""
    implied = nm_sparsity(n, m)
    if abs(float(sparsity) - implied) > 1e-9:
        raise PrunekitError(
            f"the N:M pattern {n}:{m} fixes sparsity at 1-N/M = {implied:g}; got {sparsity:g} "
            f"(pass sparsity {implied:g} or omit --sparsity, with the oneshot schedule)"
        )


def _indivisible(n: int, m: int, fan_in: int, name: str) -> PrunekitError:
    return PrunekitError(
        f"N:M {n}:{m}: M={m} does not divide the input dimension {fan_in} of layer {name!r}; "
        "exclude the layer or pass skip_indivisible=true (CLI: -o skip_indivisible=true)"
    )


def nm_keep(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Boolean keep-mask of a weight-shaped score: the ``n`` highest of every ``m``
    consecutive entries along dim 1 (ties: the earlier position wins)."""
    along_last = score.movedim(1, -1) if score.dim() > 2 else score
    groups = along_last.reshape(-1, m)
    order = torch.sort(groups, dim=1, descending=True, stable=True).indices
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, order[:, :n], True)
    keep = keep.view(along_last.shape)
    return keep.movedim(-1, 1) if score.dim() > 2 else keep


class NM(Granularity):
    name = "nm"
    checks_model = True
    Options = NMOptions

    def fixed_by(self, options: Any) -> str:
        return f"the N:M pattern {options.n}:{options.m}"

    def implied_sparsity(self, options: Any) -> float | None:
        return nm_sparsity(options.n, options.m)

    def check_sparsity(self, sparsity: float, options: Any) -> float:
        n, m = check_nm(options.n, options.m)
        s = check_sparsity(sparsity)
        check_nm_sparsity(s, n, m)
        return s

    def check_model(self, modules: dict[str, nn.Module], options: Any) -> None:
        n, m = check_nm(options.n, options.m)
        if options.skip_indivisible:
            return
        for name, module in modules.items():
            fan_in = out_in(module, original(module)).shape[1]
            if fan_in % m:
                raise _indivisible(n, m, fan_in, name)

    def masks(
        self,
        modules: dict[str, nn.Module],
        scores: dict[str, torch.Tensor],
        sparsity: float,
        scope: str,
        options: Any,
    ) -> dict[str, torch.Tensor]:
        """N:M along the input dimension; ``sparsity`` must equal ``1 - n/m``."""
        n, m = check_nm(options.n, options.m)
        masks = {}
        for name, module in modules.items():
            fan_in = out_in(module, original(module)).shape[1]
            if fan_in % m:
                if options.skip_indivisible:
                    continue
                raise _indivisible(n, m, fan_in, name)
            score = out_in(module, weight_scores(name, module, scores[name], "nm"))
            keep = from_out_in(module, nm_keep(score, n, m)).contiguous()
            old = get_mask(module)
            if old is not None:  # a group that already lost weights stays below n nonzeros
                keep &= old.cpu() != 0
            masks[f"{name}.weight"] = keep.float()
        if not masks:
            raise PrunekitError(f"N:M {n}:{m}: no layer has an input dimension divisible by {m}")
        return masks


GRANULARITIES.add("nm", NM())

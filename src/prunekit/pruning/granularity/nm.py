"""Connection granularities: ``kernel`` and ``nm`` (semi-structured masks).

Both take weight-shaped scores from any criterion (higher = keep) and follow the
conventions of ``granularity.py``: already-pruned weights score ``-inf`` and stay
pruned, ties are broken by position, counts are exact.

``kernel``
    The unit of removal is the connection between one input channel ``i`` and one
    output channel ``o``: for a conv weight of shape ``(O, I, kh, kw)`` the ``kh x kw``
    kernel ``W[o, i]``, so a layer has ``O * I`` kernels. A kernel's score is the mean
    of its weights' scores (already-pruned weights count as 0; a fully pruned kernel
    scores ``-inf``); with the magnitude criterion this is ``||W[o, i]||_1 / (kh*kw)``,
    the kernel-level pruning of Mao et al. 2017 ("Exploring the Granularity of
    Sparsity in CNNs"). The mean keeps kernels of different sizes comparable under
    ``scope="global"``. A Linear layer is a conv with 1x1 kernels: each weight is its
    own kernel. ``round(sparsity * n_kernels)`` kernels are zeroed, per layer or
    ranked across all layers (``scope``). A layer may lose all its kernels, as under
    ``weight`` granularity.

``nm``
    N:M fine-grained structured sparsity (NVIDIA Ampere 2:4; Mishra et al. 2021,
    "Accelerating Sparse Deep Neural Networks"): along the input dimension, every
    group of ``m`` consecutive weights keeps its ``n`` highest-scored ones. Linear
    ``(O, I)``: each row splits into ``I / m`` groups of consecutive inputs. Conv
    ``(O, I, kh, kw)``: groups run along the input channels at each ``(o, kh, kw)``
    position, i.e. over the weight permuted to ``(O, kh, kw, I)``, as in NVIDIA's
    ASP. The pattern fixes the sparsity at ``1 - n/m``: the ``sparsity`` argument
    must equal it (the CLI fills it in when ``--sparsity`` is omitted), so only a
    one-shot schedule fits. ``scope`` plays no role (every group is its own unit).
    A group whose weights were already pruned keeps fewer than ``n`` nonzeros: masks
    only ever lose entries. ``m`` must divide every layer's input dimension, unless
    ``skip_indivisible=True``, which leaves such layers (e.g. a first conv with 1 or 3
    input channels) dense. A transformers ``Conv1D`` (weight ``(in, out)``) is grouped
    along its inputs too, i.e. down its weight's columns.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...registry import PrunekitError
from .base import GRANULARITIES, _prepare, _select, check_sparsity
from ..masks import from_out_in, get_mask, original, out_in


def _weight_scores(name: str, module: nn.Module, score: torch.Tensor, what: str) -> torch.Tensor:
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


@GRANULARITIES.register("kernel")
def kernel_masks(
    modules: dict[str, nn.Module], scores: dict[str, torch.Tensor], sparsity: float, scope: str
) -> dict[str, torch.Tensor]:
    """Connection pruning: whole ``kh x kw`` kernels (Linear: single weights)."""
    s = check_sparsity(sparsity)
    prepared = {n: _weight_scores(n, modules[n], scores[n], "kernel") for n in modules}
    drop = _select({n: kernel_scores(sc) for n, sc in prepared.items()}, s, scope, keep_one=False)
    masks = {}
    for n, sc in prepared.items():
        keep = (~drop[n]).float().view(sc.shape[0], sc.shape[1], *([1] * (sc.dim() - 2)))
        masks[f"{n}.weight"] = keep.expand(sc.shape).clone()
    return masks


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


def nm_sparsity(n: int = 2, m: int = 4) -> float:
    """The sparsity an N:M pattern fixes: ``1 - n/m``."""
    n, m = check_nm(n, m)
    return 1.0 - n / m


def check_nm_sparsity(sparsity: float, n: int = 2, m: int = 4) -> None:
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


@GRANULARITIES.register("nm")
def nm_masks(
    modules: dict[str, nn.Module],
    scores: dict[str, torch.Tensor],
    sparsity: float,
    scope: str,
    n: int = 2,
    m: int = 4,
    skip_indivisible: bool = False,
) -> dict[str, torch.Tensor]:
    """N:M along the input dimension; ``sparsity`` must equal ``1 - n/m``."""
    n, m = check_nm(n, m)
    check_nm_sparsity(check_sparsity(sparsity), n, m)
    masks = {}
    for name, module in modules.items():
        fan_in = out_in(module, original(module)).shape[1]
        if fan_in % m:
            if skip_indivisible:
                continue
            raise _indivisible(n, m, fan_in, name)
        score = out_in(module, _weight_scores(name, module, scores[name], "nm"))
        keep = from_out_in(module, nm_keep(score, n, m)).contiguous()
        old = get_mask(module)
        if old is not None:  # a group that already lost weights stays below n nonzeros
            keep &= old.cpu() != 0
        masks[f"{name}.weight"] = keep.float()
    if not masks:
        raise PrunekitError(f"N:M {n}:{m}: no layer has an input dimension divisible by {m}")
    return masks


def implied_sparsity(granularity: str, options: dict[str, object]) -> float | None:
    """The sparsity a granularity fixes by itself (``nm``: ``1 - n/m``), else None."""
    if granularity != "nm":
        return None
    return nm_sparsity(options.get("n", 2), options.get("m", 4))  # type: ignore[arg-type]


def check_nm_run(method: Any, sparsity: float, model: nn.Module | None = None) -> None:
    """Up-front checks for a pipeline run with ``granularity="nm"`` (no-op otherwise), so
    that a bad N:M setup fails before any training: the pattern, the target sparsity
    (must be ``1 - n/m``), a schedule whose every event targets it (e.g. oneshot), and,
    given the model, that ``m`` divides the input dimension of every targeted layer."""
    if method.granularity != "nm":
        return
    from ..schedules import SCHEDULES
    from ..step import target_modules

    opts = method.granularity_args
    n, m = check_nm(opts.get("n", 2), opts.get("m", 4))
    check_nm_sparsity(sparsity, n, m)
    events = SCHEDULES.get(method.schedule)(sparsity, 0, 100, **method.schedule_args)
    if any(abs(target - sparsity) > 1e-9 for _, target in events):
        raise PrunekitError(
            f"the N:M pattern {n}:{m} reaches its sparsity in one event; schedule "
            f"{method.schedule!r} prunes gradually: use --schedule oneshot"
        )
    if model is not None:
        modules = target_modules(model, "nm")
        if not opts.get("skip_indivisible", False):
            for name, module in modules.items():
                fan_in = out_in(module, original(module)).shape[1]
                if fan_in % m:
                    raise _indivisible(n, m, fan_in, name)

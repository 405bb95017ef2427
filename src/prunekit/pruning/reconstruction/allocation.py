"""Per-layer allocation: how many weights each layer loses for a global target.

Reconstruction prunes every layer separately, so the per-layer counts must be
decided first. Three allocations, all exact (the counts sum to ``round(s · N)``
under ``global``; ``uniform`` is every layer at ``round(s · n_l)``, prunekit's
``scope="layer"`` rule):

``uniform``
    The same sparsity ``s`` in every layer (what ``scope="layer"`` means for every
    method). Standard in SparseGPT/Wanda for LLMs, whose layers are alike.
``global``
    The per-layer counts of global magnitude pruning: the ``round(s · N)`` smallest
    ``|w|`` over all layers, counted per layer; the layers' weights are then chosen
    by the reconstruction method itself. Small networks have layers of very
    different sizes and redundancy (LeNet-300-100 at 0.9: ~0.92 / 0.75 / 0.29), which
    uniform sparsity ignores.
``owl``
    Outlier-weighted layer-wise sparsity (Yin et al. 2023, "Outlier Weighed Layerwise
    Sparsity (OWL): A Missing Secret Sauce for Pruning LLMs to High Sparsity",
    arXiv:2310.05175). Outlier ratio of layer ``l``: ``D_l = mean[A_ij > M · mean(A)]``
    with Wanda's ``A_ij = |W_ij| · ||X_j||_2`` on the current model; layers rich in
    outliers keep more: ``s_l = s − λ · (D_l − min D) / (max D − min D) · 2 + c``.
    OWL picks ``c`` so the *unweighted* mean of ``s_l`` is ``s``; here ``c`` is
    solved so that the *weighted* total is exactly ``round(s · N)`` (layers of very
    different sizes would otherwise miss the target), with ``s_l`` clipped to
    ``[already pruned, 1]``. Options ``owl_threshold`` (M, default 5) and
    ``owl_lambda`` (λ, default 0.08), the paper's defaults.

Already pruned weights (masks) count towards each layer's total and stay pruned.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ...registry import PrunekitError
from ..masks import effective, get_mask, original
from .calibrate import collect
from .layers import to_2d
from .wanda import wanda_scores


def _forced(module: nn.Module) -> int:
    mask = get_mask(module)
    return int((mask == 0).sum()) if mask is not None else 0


def uniform(
    model: nn.Module, modules: dict[str, nn.Module], sparsity: float, x: torch.Tensor, **_: object
) -> dict[str, int]:
    return {n: max(round(sparsity * original(m).numel()), _forced(m)) for n, m in modules.items()}


def global_magnitude(
    model: nn.Module, modules: dict[str, nn.Module], sparsity: float, x: torch.Tensor, **_: object
) -> dict[str, int]:
    from ..granularity import make_masks

    scores = {n: effective(m).detach().abs() for n, m in modules.items()}
    masks = make_masks("weight", modules, scores, sparsity, "global")
    return {n: int((masks[f"{n}.weight"] == 0).sum()) for n in modules}


def fit_counts(
    sizes: list[int], sparsities: list[float], total: int, floors: list[int]
) -> list[int]:
    """Integer counts near ``s_l · n_l`` that sum to ``total``: a common shift ``c``
    (bisection) with ``clip(s_l + c, floor_l / n_l, 1)``, then largest remainders."""
    n = torch.tensor(sizes, dtype=torch.float64)
    s = torch.tensor(sparsities, dtype=torch.float64)
    lo = torch.tensor(floors, dtype=torch.float64) / n
    total = int(min(max(total, sum(floors)), sum(sizes)))

    def mass(c: float) -> torch.Tensor:
        return torch.minimum(torch.maximum(s + c, lo), torch.ones_like(s)) * n

    a, b = -2.0, 2.0
    for _ in range(200):
        mid = (a + b) / 2
        if float(mass(mid).sum()) < total:
            a = mid
        else:
            b = mid
    real = mass(b)
    counts = torch.floor(real).long()
    extra = total - int(counts.sum())
    order = torch.argsort(real - counts, descending=True, stable=True)
    for i in order.tolist():
        if extra <= 0:
            break
        if counts[i] < sizes[i]:
            counts[i] += 1
            extra -= 1
    return counts.tolist()


def owl(
    model: nn.Module,
    modules: dict[str, nn.Module],
    sparsity: float,
    x: torch.Tensor,
    *,
    owl_threshold: float = 5.0,
    owl_lambda: float = 0.08,
    **_: object,
) -> dict[str, int]:
    if owl_threshold <= 0 or not 0 <= owl_lambda < 1:
        raise PrunekitError(
            f"OWL needs owl_threshold > 0 and 0 <= owl_lambda < 1, got {owl_threshold}, {owl_lambda}"
        )
    stats = collect(model, modules, x, hessian=False)
    ratios = []
    for n, m in modules.items():
        a = wanda_scores(to_2d(m, effective(m).detach()), stats[n].column_norms())
        ratios.append(float((a > owl_threshold * a.mean()).float().mean()))
    d = torch.tensor(ratios, dtype=torch.float64)
    spread = float(d.max() - d.min())
    z = (d - d.min()) / spread if spread > 0 else torch.zeros_like(d)
    targets = (sparsity - 2 * owl_lambda * z).tolist()
    sizes = [original(m).numel() for m in modules.values()]
    counts = fit_counts(
        sizes, targets, round(sparsity * sum(sizes)), [_forced(m) for m in modules.values()]
    )
    return dict(zip(modules, counts, strict=True))


Allocation = Callable[..., dict[str, int]]
ALLOCATIONS: dict[str, Allocation] = {"uniform": uniform, "global": global_magnitude, "owl": owl}


def allocate(
    name: str,
    model: nn.Module,
    modules: dict[str, nn.Module],
    sparsity: float,
    x: torch.Tensor,
    **options: object,
) -> dict[str, int]:
    """Per-layer prune counts of allocation ``name`` (see the module docstring)."""
    if name not in ALLOCATIONS:
        raise PrunekitError(f"unknown allocation {name!r}; known: {', '.join(sorted(ALLOCATIONS))}")
    return ALLOCATIONS[name](model, modules, sparsity, x, **options)

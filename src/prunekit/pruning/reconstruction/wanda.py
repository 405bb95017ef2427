"""Wanda: pruning by weights and activations (Sun, Liu, Bair & Kolter 2023, "A Simple
and Effective Pruning Approach for Large Language Models", arXiv:2306.11695).

The score of weight ``W_ij`` (output ``i``, input ``j``) is

    S_ij = |W_ij| · ||X_j||_2,

the weight's magnitude times the L2 norm of its input over all calibration input
vectors. Scores are compared **within each output row** (the paper's "per output"
comparison group): every row loses the same share of its weights. For an exact
per-layer count, the layer's ``round(s · out · in)`` pruned weights are shared among
rows by cumulative rounding (rows differ by at most one). N:M: each row keeps the
``n`` highest scores of every ``m`` consecutive inputs. No weight is updated.
"""

from __future__ import annotations

import torch

from .selection import check_nm, group_counts, lowest_per_row, nm_prune, target_count


def wanda_scores(weight: torch.Tensor, column_norms: torch.Tensor) -> torch.Tensor:
    """``S = |W| · ||X_j||_2`` for ``W`` ``(out, in)`` and input norms ``(in,)``."""
    if column_norms.shape != (weight.shape[1],):
        raise ValueError(
            f"input norms of shape {tuple(column_norms.shape)} for a weight "
            f"of shape {tuple(weight.shape)}; expected ({weight.shape[1]},)"
        )
    return weight.abs() * column_norms.to(weight.dtype).unsqueeze(0)


def wanda_mask(
    weight: torch.Tensor,
    column_norms: torch.Tensor,
    sparsity: float | None = None,
    *,
    n: int | None = None,
    m: int | None = None,
    forced: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean prune mask (True = remove) of ``W`` ``(out, in)``: ``sparsity`` for
    unstructured per-row selection, or ``n``/``m`` for N:M. ``forced`` (bool, same
    shape) marks entries already pruned: they stay pruned and count."""
    scores = wanda_scores(weight.detach(), column_norms).float()
    forced = torch.zeros_like(scores, dtype=torch.bool) if forced is None else forced.bool()
    scores = torch.where(forced, torch.tensor(float("-inf")), scores)
    if n is not None or m is not None:
        n, m = check_nm(n or 0, m or 0)
        return nm_prune(scores, n, m) | forced
    counts = group_counts(target_count(scores.numel(), sparsity or 0.0), forced)
    return lowest_per_row(scores, counts)

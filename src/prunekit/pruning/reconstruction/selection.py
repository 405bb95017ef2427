"""Exact-count selection on a 2-D weight ``W`` ``(out, in)``: which entries to prune.

Conventions shared with the rest of prunekit: a target ``sparsity`` prunes exactly
``round(sparsity * numel)`` entries of the layer; ties go to the earlier position;
N:M keeps the ``n`` highest-scored of every ``m`` consecutive inputs of a row (so a
group holds exactly ``n`` nonzeros); already pruned entries (``forced``) stay pruned
and count towards the target. Masks here are boolean *prune* masks (True = remove).
"""

from __future__ import annotations

import torch


def split_count(total: int, capacities: torch.Tensor) -> torch.Tensor:
    """Share ``total`` among groups in proportion to ``capacities`` (integers), with
    cumulative rounding so the shares sum to exactly ``total`` and none exceeds its
    capacity: share_g = ⌊T·C_g/C + ½⌋ − ⌊T·C_{g-1}/C + ½⌋ with ``C_g`` the running sum.
    Integer arithmetic only (no float rounding surprises)."""
    caps = capacities.to(torch.int64)
    cap_total = int(caps.sum())
    if cap_total == 0 or total <= 0:
        return torch.zeros_like(caps)
    total = min(int(total), cap_total)
    cum = torch.cumsum(caps, 0)
    ends = torch.div(2 * total * cum + cap_total, 2 * cap_total, rounding_mode="floor")
    return torch.diff(ends, prepend=torch.zeros(1, dtype=torch.int64))


def target_count(numel: int, sparsity: float) -> int:
    """Entries a layer of ``numel`` weights loses at ``sparsity`` (prunekit's rule)."""
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return round(float(sparsity) * numel)


def group_counts(total: int, forced: torch.Tensor) -> torch.Tensor:
    """Per-group prune counts (groups are the rows of ``forced``) that sum to
    ``max(total, forced.sum())``: every group prunes its forced entries, and the rest
    of the budget is shared by the free entries of each group."""
    f = forced.sum(1).to(torch.int64)
    free = forced.shape[1] - f
    return f + split_count(total - int(f.sum()), free)


def lowest_per_row(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Prune mask marking the ``counts[r]`` lowest scores of each row ``r`` (stable)."""
    order = torch.sort(scores, dim=1, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(scores.shape[1]).expand_as(order).contiguous())
    return rank < counts.to(rank.device).unsqueeze(1)


def nm_prune(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Prune mask keeping the ``n`` highest of every ``m`` consecutive entries of a row
    (ties: the earlier position stays)."""
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"N:M {n}:{m}: M={m} does not divide the input dimension {cols}")
    groups = scores.reshape(-1, m)
    order = torch.sort(groups, dim=1, descending=True, stable=True).indices
    prune = torch.ones_like(groups, dtype=torch.bool)
    prune.scatter_(1, order[:, :n], False)
    return prune.view(rows, cols)


def check_nm(n: int, m: int) -> tuple[int, int]:
    n, m = int(n), int(m)
    if not 0 < n < m:
        raise ValueError(f"N:M needs 0 < n < m, got n={n}, m={m}")
    return n, m

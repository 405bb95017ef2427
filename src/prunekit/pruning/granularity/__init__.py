"""Granularities (moved here from ``pruning/granularity.py``; typed objects follow)."""

from .base import GRANULARITIES, check_sparsity, make_masks, per_weight, unit_scores

__all__ = ["GRANULARITIES", "check_sparsity", "make_masks", "per_weight", "unit_scores"]

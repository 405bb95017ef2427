"""Calibration-based reconstruction: prune a layer using the inputs it sees.

Layer-level maths on plain tensors (any model made of Linear / Conv / transformers
``Conv1D`` layers; see ``layers.py`` for the ``(out, in)`` view ``W`` and the input
rows ``Xᵀ``):

- ``stats.InputStats``: streaming ``Σ x xᵀ`` and ``Σ x²`` of a layer's inputs;
- ``wanda``: ``|W_ij| · ||X_j||_2`` compared within each output row (Sun et al. 2023);
- ``sparsegpt``: OBS pruning with weight updates from ``H = 2 X Xᵀ`` (Frantar &
  Alistarh 2023);
- ``selection``: exact-count and N:M selection helpers.
"""

from .layers import from_2d, inputs_2d, is_hf_conv1d, supports, to_2d, weight_2d
from .selection import nm_prune, split_count
from .sparsegpt import sparsegpt_prune
from .stats import InputStats
from .wanda import wanda_mask, wanda_scores

__all__ = [
    "InputStats",
    "from_2d",
    "inputs_2d",
    "is_hf_conv1d",
    "nm_prune",
    "sparsegpt_prune",
    "split_count",
    "supports",
    "to_2d",
    "wanda_mask",
    "wanda_scores",
    "weight_2d",
]

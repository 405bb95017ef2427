"""Structured surgery: make neuron-pruned models physically smaller and faster.

- :func:`analyze`: dependency groups, via torch.fx (in :mod:`prunekit.pruning.dependency`,
  which the neuron granularity uses too);
- :func:`shrink` (``shrink.py``): remove dead units, optionally ``round_to`` widths;
- :func:`fold_batchnorm` (``fold.py``): fold BatchNorm into the layer before it.
"""

from ..pruning.dependency import UnitGroup, UnsupportedModel, analyze
from .fold import fold_batchnorm
from .shrink import alive_units, keep_plan, shrink, units

__all__ = [
    "UnitGroup",
    "UnsupportedModel",
    "alive_units",
    "analyze",
    "fold_batchnorm",
    "keep_plan",
    "shrink",
    "units",
]

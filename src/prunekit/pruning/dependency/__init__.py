"""Dependency analysis: which output units of which layers must go together.

Used by the neuron granularity (:mod:`prunekit.pruning.step` picks units per group) and
by the surgery that removes them (:mod:`prunekit.surgery.shrink`); it sits here, below
both, so that pruning never imports the surgery.

- :func:`analyze` (``groups.py``): the groups, traced with ``torch.fx``;
- ``rules.py``: how each module type and function treats units;
- ``spaces.py``: the union-find over unit spaces.
"""

from .groups import UnitGroup, UnsupportedModel, analyze, fan_in

__all__ = ["UnitGroup", "UnsupportedModel", "analyze", "fan_in"]

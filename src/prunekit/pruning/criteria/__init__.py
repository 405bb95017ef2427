"""Criteria: ``scores(model, modules, ctx) -> {module_name: tensor}`` (higher = keep).

A criterion only scores; a granularity (``..granularity``) decides what is pruned.
Scores are weight-shaped, or one per output unit for unit criteria (entropy).
Each criterion lives in its own file beside its formula; importing this package
registers them all. A criterion that scores from calibration data sets the attribute
``needs_data = True`` (``Pruner`` then refuses to start without ``data=``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...registry import Registry


@dataclass
class Context:
    """What a criterion may use beyond the weights.

    data: calibration inputs ``(x, y)`` (images in [0, 1]), or None when the caller has none.
    generator: the run's seeded generator (random criteria draw from it).
    objective: the training objective of the method, if any (L0 gates score by
    their keep-probability, for instance).
    records: what a criterion measured that a run should report (the pipeline stores
    it in result.json as ``criterion_report``), keyed by criterion name.
    """

    data: tuple[torch.Tensor, torch.Tensor] | None = None
    generator: torch.Generator | None = None
    objective: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict)


Criterion = Callable[[nn.Module, dict[str, nn.Module], Context], dict[str, torch.Tensor]]
CRITERIA: Registry[Criterion] = Registry("criterion")


def needs_data(name: str) -> bool:
    """Whether the registered criterion ``name`` scores from calibration data."""
    return bool(getattr(CRITERIA.get(name), "needs_data", False))


def _register_all() -> None:
    """Import every module of this package: each registers itself."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_register_all()

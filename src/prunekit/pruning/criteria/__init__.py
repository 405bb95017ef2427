"""Criteria: ``scores(model, modules, ctx) -> {module_name: tensor}`` (higher = keep).

A criterion only scores; a granularity (``..granularity``) decides what is pruned.
Scores are weight-shaped, or one per output unit for unit criteria (entropy).
Each criterion lives in its own file beside its formula and its options dataclass
(``..options``), registered with ``@criterion(name, OptionsClass, needs_data=...)``;
importing this package registers them all. ``needs_data``: it scores from calibration
data (``Pruner`` then refuses to start without ``data=``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...registry import Registry
from ..options import Options, Part


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


ScoreFn = Callable[[nn.Module, dict[str, nn.Module], Context], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Criterion(Part):
    """A registered criterion: ``fn(model, modules, ctx) -> scores`` and its options.

    needs_data: it scores from calibration data. solver / solver_granularities: a
    whole-step pruner (Wanda, SparseGPT) that chooses the masks itself, and updates
    weights, at those granularities.
    """

    needs_data: bool = False
    solver: Callable[..., dict[str, torch.Tensor]] | None = None
    solver_granularities: tuple[str, ...] = ()


CRITERIA: Registry[Callable[..., dict[str, torch.Tensor]]] = Registry("criterion")


def criterion(
    name: str, options: type[Options] = Options, *, needs_data: bool = False
) -> Callable[[ScoreFn], Criterion]:
    """Register ``fn(model, modules, ctx) -> {layer: scores}`` as the criterion ``name``."""

    def deco(fn: ScoreFn) -> Criterion:
        part = Criterion(fn, options, needs_data)
        CRITERIA.add(name, part)
        return part

    return deco


def needs_data(name: str) -> bool:
    """Whether the registered criterion ``name`` scores from calibration data."""
    crit = CRITERIA.get(name)
    return isinstance(crit, Criterion) and crit.needs_data


def _register_all() -> None:
    """Import every module of this package: each registers itself."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_register_all()

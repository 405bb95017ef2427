"""Schedules: *when* to prune and to *how much*. Pure functions of the step.

Every schedule returns the pruning events of a phase as a list of
``(step, target_sparsity)`` with ``step`` in ``[start, end]`` and targets
non-decreasing; the last target is always exactly the requested sparsity. A
schedule's options (``-o cycles=5``) are a dataclass declared next to it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..registry import PrunekitError, Registry
from .options import Options, Part, option

Events = list[tuple[int, float]]
Schedule = Callable[..., Events]
SCHEDULES: Registry[Schedule] = Registry("schedule")


@dataclass(frozen=True)
class SchedulePart(Part):
    """A registered schedule, called ``(target, start, end, **options)``; the options
    are checked against its dataclass and its defaults filled in from there."""

    name: str = ""

    def __call__(self, target: float, start: int, end: int, **values: Any) -> Events:
        opts = self.options.parse(values, f"schedule {self.name!r}")
        return self.fn(target, start, end, **dataclasses.asdict(opts))


def schedule(name: str, options: type[Options] = Options) -> Callable[[Schedule], SchedulePart]:
    """Register ``fn(target, start, end, **options) -> events`` as the schedule ``name``."""

    def deco(fn: Schedule) -> SchedulePart:
        part = SchedulePart(fn, options, name)
        SCHEDULES.add(name, part)
        return part

    return deco


def cubic_sparsity(t: float, t0: float, n: int, dt: float, s_i: float, s_f: float) -> float:
    """Gradual pruning (Zhu & Gupta 2017, "To prune, or not to prune"):

    ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))**3`` for t in [t0, t0 + n*dt],
    ``s_i`` before, ``s_f`` after. Fast at first, slowly towards the end.
    """
    if n <= 0 or dt <= 0:
        raise PrunekitError("cubic schedule needs n >= 1 pruning steps and dt > 0")
    frac = min(max((t - t0) / (n * dt), 0.0), 1.0)
    return s_f + (s_i - s_f) * (1.0 - frac) ** 3


@schedule("oneshot")
def oneshot(target: float, start: int, end: int) -> Events:
    """Prune once, at ``start``; the rest of the phase fine-tunes."""
    return [(start, target)]


@dataclass(frozen=True)
class IterativeOptions(Options):
    cycles: int = option(3, "prune / fine-tune cycles")


@schedule("iterative", IterativeOptions)
def iterative(target: float, start: int, end: int, *, cycles: int) -> Events:
    """``cycles`` prune/fine-tune cycles spread evenly over ``[start, end)``, each
    removing the same fraction of the remaining weights (Han et al. 2015):
    ``s_k = 1 - (1 - s)**(k / cycles)``, k = 1..cycles."""
    if cycles < 1:
        raise PrunekitError(f"iterative schedule needs cycles >= 1, got {cycles}")
    span = max(end - start, 0)
    events = [
        (start + (k * span) // cycles, 1.0 - (1.0 - target) ** ((k + 1) / cycles))
        for k in range(cycles)
    ]
    events[-1] = (events[-1][0], target)
    return events


@dataclass(frozen=True)
class CubicOptions(Options):
    initial: float = option(0.0, "sparsity s_i before the first event")
    prune_fraction: float = option(0.75, "fraction of the phase the events span")
    frequency: int | None = option(None, "steps between events (None: about 10 events)")


@schedule("cubic", CubicOptions)
def cubic(
    target: float,
    start: int,
    end: int,
    *,
    initial: float,
    prune_fraction: float,
    frequency: int | None,
) -> Events:
    """Zhu & Gupta gradual pruning: events every ``frequency`` steps over the first
    ``prune_fraction`` of the phase (default: ~10 events), then fine-tuning."""
    if not 0.0 < prune_fraction <= 1.0:
        raise PrunekitError(f"prune_fraction must be in (0, 1], got {prune_fraction}")
    span = max(int((end - start) * prune_fraction), 1)
    dt = frequency or max(span // 10, 1)
    n = max(span // dt, 1)
    events = [
        (start + k * dt, cubic_sparsity(start + k * dt, start, n, dt, initial, target))
        for k in range(n + 1)
    ]
    events[-1] = (events[-1][0], target)
    return events

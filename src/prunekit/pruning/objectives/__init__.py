"""Objectives: what a method adds to training. ``L = L_task + penalty`` plus
optional batch transforms (noise augmentation) and post-step updates (proximal).

An objective is a small object with these optional hooks, called by the training
loop (``prunekit.training``) while the objective is active:

- ``attach(model, modules)``: set up (gates, activation hooks); called once.
- ``param_groups()``: extra optimizer parameter groups (e.g. L0 gate logits).
- ``transform(x, y, generator) -> (x, y)``: change a training batch.
- ``penalty(model) -> Tensor``: added to the task loss (0-dim).
- ``before_step(model)``: right before the optimizer step (gradients in closed form).
- ``after_step(model, lr)``: after each optimizer step (proximal updates).
- ``detach(model)``: stop acting; fold any state into the weights.

Each objective is in its own file beside its formula, with a small options dataclass
(``..options``); ``@objective(name, OptionsClass)`` registers its factory
``fn(options, run) -> Objective``. The registered part is called
``OBJECTIVES.get(name)(run, **options)``: ``run`` is the :class:`RunFacts` of the run
(granularity, target sparsity, window length), the keywords the method's options,
checked against the dataclass (an unknown one is a one-line error) and by its
``validate(run)``; ``OBJECTIVES.get(name).check(run, **options)`` does only the checks
(a run resolves with it, and the pruning phase builds the objective once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...registry import Registry
from ..options import Options, Part, RunFacts


class Objective:
    """No-op base: subclasses override only what they need."""

    name = "none"

    def attach(self, model: nn.Module, modules: dict[str, nn.Module]) -> None:
        pass

    def param_groups(self) -> list[dict[str, Any]]:
        return []

    def transform(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return None

    def before_step(self, model: nn.Module) -> None:
        pass

    def after_step(self, model: nn.Module, lr: float) -> None:
        pass

    def detach(self, model: nn.Module) -> None:
        pass

    def describe(self) -> str:
        """Short description with the hyper-parameters, used in error messages."""
        return self.name


@dataclass(frozen=True)
class ObjectivePart(Part):
    """A registered objective: ``fn(options, run)`` and its options dataclass."""

    name: str = ""

    def check(self, run: RunFacts | None = None, **values: Any) -> Options:
        """The options parsed and checked against ``run`` (one-line errors), without
        building the objective: what a run's resolution does before any training."""
        opts = self.options.parse(values, f"objective {self.name!r}")
        opts.validate(run if run is not None else RunFacts())
        return opts

    def __call__(self, run: RunFacts | None = None, **values: Any) -> Objective:
        run = run if run is not None else RunFacts()
        return self.fn(self.check(run, **values), run)


OBJECTIVES: Registry[ObjectivePart] = Registry("objective")


def objective(
    name: str, options: type[Options] = Options
) -> Callable[[Callable[..., Objective]], ObjectivePart]:
    """Register ``fn(options, run) -> Objective`` as the objective ``name``."""

    def deco(fn: Callable[..., Objective]) -> ObjectivePart:
        part = ObjectivePart(fn, options, name)
        OBJECTIVES.add(name, part)
        return part

    return deco


def _register_all() -> None:
    """Import every module of this package: each registers itself."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_register_all()

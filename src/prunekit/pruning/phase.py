"""The sparsify phase as a training callback: objective window + pruning events.

See ``methods.py`` for how a method spends the phase. Pruning events run before
the step they are scheduled at; events scheduled at or after the last step (a
phase of zero steps, i.e. no fine-tuning) run when the phase ends, so the target
sparsity is always reached.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .criteria import Context
from .masks import broadcast_masks
from .methods import Method
from .objectives import OBJECTIVES, Objective
from .options import RunFacts
from .reconstruction.batchnorm import recalibrate_batchnorm
from .schedules import SCHEDULES
from .step import Targets, find_targets, prune_step


def build_objective(method: Method, sparsity: float, window_steps: int) -> Objective:
    """The method's objective, built from its options and the facts of the run: the
    granularity (L1's group form, L0's unit gates), the target sparsity (L0's
    controller) and ``window_steps``, the steps the objective is active."""
    assert method.objective is not None
    run = RunFacts(method.granularity, sparsity, window_steps, method.criterion, method.scope)
    return OBJECTIVES.get(method.objective)(run, **method.objective_args)


def plan(method: Method, sparsity: float, total_steps: int) -> tuple[int | None, list]:
    """``(regularize_end, events)`` of a phase of ``total_steps`` steps: the step where a
    "before-prune" objective stops (None: no such objective) and the sorted
    ``(step, target)`` pruning events of the method's schedule."""
    before = method.objective is not None and method.objective_phase == "before-prune"
    regularize_end = int(method.regularize_fraction * total_steps) if before else None
    events = SCHEDULES.get(method.schedule)(
        sparsity, regularize_end or 0, total_steps, **method.schedule_args
    )
    return regularize_end, sorted(events)


class PruningPhase:
    def __init__(
        self,
        method: Method,
        sparsity: float,
        total_steps: int,
        *,
        ctx: Context,
        exclude: tuple[str, ...] = (),
        recalibrate_bn: bool = True,
    ) -> None:
        self.method = method
        self.sparsity = sparsity
        self.total = total_steps
        self.ctx = ctx
        ctx.options = {**method.criterion_args, **ctx.options}
        self.exclude = exclude
        self.regularize_end, events = plan(method, sparsity, total_steps)
        self.objective: Objective | None = (
            build_objective(method, sparsity, self.regularize_end or total_steps)
            if method.objective
            else None
        )
        ctx.objective = self.objective
        self.events: list[tuple[int, float]] = events
        self.active = False
        self.modules: dict[str, nn.Module] = {}
        self.targets: Targets | None = None  # found (and traced) once, at on_start
        self.history: list[dict[str, float]] = []
        # BatchNorm statistics re-estimated on ctx.data after every pruning event
        self.recalibrate_bn = recalibrate_bn
        self.bn_recalibrations = 0

    # -- callback hooks -------------------------------------------------------------
    def on_start(self, model: nn.Module) -> None:
        self.targets = find_targets(model, self.method.granularity, self.exclude)
        self.modules = self.targets.modules
        if self.objective is not None:
            self.objective.attach(model, self.modules)
            self.active = True

    def param_groups(self) -> list[dict[str, Any]]:
        return self.objective.param_groups() if self.objective is not None else []

    def on_step(self, step: int, model: nn.Module) -> None:
        while self.events and self.events[0][0] <= step:
            self._prune(model, step, self.events.pop(0)[1])
        if self.active and self.regularize_end is not None and step >= self.regularize_end:
            self._stop_objective(model)

    def transform(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.objective.transform(x, y, generator) if self.active else (x, y)

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return self.objective.penalty(model) if self.active else None

    def before_step(self, model: nn.Module) -> None:
        if self.active:
            self.objective.before_step(model)

    def after_step(self, model: nn.Module, lr: float) -> None:
        if self.active:
            self.objective.after_step(model, lr)

    def on_end(self, model: nn.Module, steps: int) -> None:
        for _, target in self.events:
            self._prune(model, steps, target)
        self.events = []
        if self.active:
            self._stop_objective(model)

    def synced_tensors(self) -> list[torch.Tensor]:
        """Tensors the objective trains outside the model (gate logits): data-parallel
        training averages their gradients across ranks."""
        hook = getattr(self.objective, "synced_tensors", None)
        return list(hook()) if self.active and hook is not None else []

    def describe(self) -> str:
        obj = self.objective.describe() if self.objective is not None else "no objective"
        return f"method {self.method.name}, {obj}"

    # -- internals ------------------------------------------------------------------
    def _prune(self, model: nn.Module, step: int, target: float) -> None:
        prune_step(
            model,
            criterion=self.method.criterion,
            granularity=self.method.granularity,
            sparsity=target,
            scope=self.method.scope,
            ctx=self.ctx,
            targets=self.targets,
            **self.method.granularity_args,
        )
        broadcast_masks(model)  # under torchrun: every rank keeps rank 0's masks (a no-op alone)
        if self.recalibrate_bn and self.ctx.data is not None:
            self.bn_recalibrations += bool(recalibrate_batchnorm(model, self.ctx.data[0]))
        self.history.append({"step": step, "target": target})

    def _stop_objective(self, model: nn.Module) -> None:
        assert self.objective is not None
        self.objective.detach(model)
        self.active = False

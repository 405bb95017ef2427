"""Learning-rate rewinding for a pruning phase (Renda, Frankle & Carbin 2020,
"Comparing Rewinding and Fine-tuning in Neural Network Pruning", ICLR,
https://arxiv.org/abs/2003.02389).

After a pruning event the cosine schedule of ``prunekit.training.fit`` starts again
from the full learning rate instead of continuing from where the decay had got to.
With restart steps ``0 = r_0 < r_1 < ... < r_K < r_{K+1} = T`` (T: the phase's steps)
the model's learning rate at step ``t`` in segment ``[r_k, r_{k+1})`` is

    lr(t) = lr_0 * 0.5 * (1 + cos(pi * (t - r_k) / (r_{k+1} - r_k)))

i.e. one full cosine cycle per segment. With no restart this is ``fit``'s own schedule.
Renda et al. retrain with the original schedule's tail; a phase here has a fixed step
budget, so each segment gets a compressed full cycle (the restart-to-the-top form).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .errors import PrunekitError


def rewound_factor(step: int, restarts: Iterable[int], total: int) -> float:
    """The multiplier of ``lr_0`` at ``step`` (see the module docstring)."""
    bounds = [0, *sorted(r for r in set(restarts) if 0 < r < total), total]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        if step < hi:
            return 0.5 * (1 + math.cos(math.pi * (step - lo) / max(hi - lo, 1)))
    return 0.0


class LrRewind:
    """A ``fit`` callback that sets the model's learning rate (param group 0) to the
    rewound schedule before every optimizer step; a method's own groups are untouched.
    ``restarts``: the steps where the cosine restarts (pruning-event steps)."""

    def __init__(self, restarts: Iterable[int], total: int) -> None:
        if total < 1:
            raise PrunekitError(f"lr rewinding needs a phase of >= 1 step, got {total}")
        self.restarts = sorted(set(restarts))
        self.total = total
        self.opt: torch.optim.Optimizer | None = None
        self.lr0 = 0.0
        self.step = 0

    def on_optimizer(self, opt: torch.optim.Optimizer) -> None:
        self.opt = opt
        self.lr0 = opt.param_groups[0]["lr"]  # the phase's lr, before any schedule

    def on_step(self, step: int, model: nn.Module) -> None:
        self.step = step

    def before_step(self, model: nn.Module) -> None:
        assert self.opt is not None
        # fit's LambdaLR recomputes its lr from initial_lr at every sched.step(), so this
        # override lasts exactly one optimizer step and never compounds.
        self.opt.param_groups[0]["lr"] = self.lr0 * rewound_factor(
            self.step, self.restarts, self.total
        )

    def describe(self) -> str:
        return f"lr rewinding at steps {self.restarts}"


def event_restarts(events: Iterable[tuple[int, Any]], which: str) -> list[int]:
    """Restart steps from a schedule's ``(step, target)`` events: ``"last"`` (after the
    final event only) or ``"every"`` (after each event)."""
    steps = sorted({s for s, _ in events})
    if which == "last":
        return steps[-1:]
    if which == "every":
        return steps
    raise PrunekitError(f"lr rewinding: which must be 'last' or 'every', got {which!r}")

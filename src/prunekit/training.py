"""The training loop: SGD with momentum + cosine learning rate over in-memory tensors.

The loop stays short; behaviour is added through callbacks (pruning events,
objectives, noise augmentation). A callback may define any of:

- ``on_start(model)`` before the optimizer is built (attach gates, hooks);
- ``param_groups()`` extra optimizer groups (their params are taken out of the main group);
- ``on_optimizer(opt)`` once the optimizer is built, before its scheduler (a ``Pruner``
  adds the method's own parameters to it and hooks its step);
- ``on_step(step, model)`` before each step (pruning events);
- ``transform(x, y, generator)`` to change a batch;
- ``penalty(model)`` a term added to the loss;
- ``before_step(model)`` right before the optimizer step (closed-form gradients);
- ``after_step(model, lr)`` after the optimizer step (proximal updates);
- ``on_end(model, steps)`` after the last step.

A non-finite loss stops training with a message naming the step and the callbacks
(with their hyper-parameters), so "NaN at step 812 (l1 lambda=10)" is what the user sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .data import Split, iterate_batches
from .distributed import DataParallel, is_main, synced_tensors
from .progress import progress_bar
from .registry import PrunekitError


@dataclass
class TrainSettings:
    """lr: initial learning rate (cosine-annealed to 0 over the run)."""

    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.batch_size < 1 or self.momentum < 0 or self.weight_decay < 0:
            raise PrunekitError(
                f"invalid training settings: lr={self.lr}, batch_size={self.batch_size}, "
                f"momentum={self.momentum}, weight_decay={self.weight_decay}"
            )


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def _batches(split: Split, batch_size: int, generator: torch.Generator) -> Iterator[Any]:
    while True:
        yield from iterate_batches(split, batch_size, shuffle=True, generator=generator)


def _call(callbacks: Sequence[Any], hook: str, *args: Any) -> list[Any]:
    return [getattr(cb, hook)(*args) for cb in callbacks if hasattr(cb, hook)]


def fit(
    model: nn.Module,
    split: Split,
    *,
    steps: int,
    settings: TrainSettings,
    generator: torch.Generator,
    callbacks: Sequence[Any] = (),
    progress: bool = False,
    desc: str = "train",
) -> list[float]:
    """Train ``model`` for ``steps`` optimizer steps; returns the per-epoch mean loss."""
    if len(split) == 0:
        raise PrunekitError("training split is empty")
    # Under torchrun: joins the process group, checks batch % world size (see distributed.py).
    dp = DataParallel(model, settings.batch_size)
    _call(callbacks, "on_start", model)
    extra = [g for groups in _call(callbacks, "param_groups") for g in groups]
    taken = {id(p) for g in extra for p in g["params"]}
    main = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    in_model = {id(p) for p in model.parameters()}
    outside = [p for g in extra for p in g["params"] if id(p) not in in_model]  # DDP misses these
    opt = torch.optim.SGD(
        [{"params": main}, *extra],
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
    )
    _call(callbacks, "on_optimizer", opt)

    def cosine(s: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1)))

    # The schedule anneals the model's learning rate; a method's own parameters (L0 gate
    # logits: the extra groups and those added by on_optimizer) keep the method's lr.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, [cosine] + [lambda s: 1.0] * (len(opt.param_groups) - 1)
    )
    per_epoch = steps_per_epoch(len(split), settings.batch_size)
    batches = _batches(split, settings.batch_size, generator)
    losses: list[float] = []
    running, count = 0.0, 0
    model.train()
    with progress_bar(progress and is_main(), total=steps, desc=desc) as bar:
        for step in range(steps):
            _call(callbacks, "on_step", step, model)
            x, y = next(batches)
            for cb in callbacks:
                if hasattr(cb, "transform"):
                    x, y = cb.transform(x, y, generator)
            loss = dp.loss(model, x, y)  # the batch mean; this rank's share under DDP
            for p in _call(callbacks, "penalty", model):
                if p is not None:
                    loss = loss + p
            value = dp.value(loss)  # the global batch's loss, the same on every rank
            if not math.isfinite(value):
                who = ", ".join(cb.describe() for cb in callbacks if hasattr(cb, "describe"))
                lr_now = opt.param_groups[0]["lr"]
                raise PrunekitError(
                    f"loss became {value} at step {step} of {desc} (lr={lr_now:.3g}, "
                    f"starting at {settings.lr:g}"
                    + (f"; {who}" if who else "")
                    + "); lower the learning rate (--lr / --finetune-lr) or the penalty "
                    "strength (--lambda)"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            dp.sync_grads([*outside, *synced_tensors(callbacks)])
            _call(callbacks, "before_step", model)
            opt.step()
            lr = opt.param_groups[0]["lr"]
            sched.step()
            _call(callbacks, "after_step", model, lr)
            running += value
            count += 1
            if count == per_epoch or step == steps - 1:
                losses.append(running / count)
                running, count = 0.0, 0
            bar.advance(loss=losses[-1] if losses and count == 0 else None)
    _call(callbacks, "on_end", model, steps)
    dp.finish(model)  # ranks hold bit-identical parameters and masks, or this raises
    return losses

"""``Pruner``: any registered method inside the user's own training loop.

The contract of torch.ao's sparsifier and Torch-Pruning's pruners::

    pruner = prunekit.Pruner(model, "l0", sparsity=0.9, steps=total_steps,
                             optimizer=optimizer, data=(x_calib, y_calib))
    for x, y in loader:
        x, y = pruner.transform(x, y)          # noise models corrupt inputs; others: unchanged
        loss = loss_fn(model(x), y) + pruner.penalty()
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        pruner.step()                          # pruning events, proximal updates, controllers
    pruner.finalize()                          # target reached exactly; plain weights, no hooks

A method spends ``steps`` optimizer steps as it spends its phase in the pipeline
(``prunekit.pruning.methods``): objective window, pruning events of its schedule,
fine-tuning. Step ``t`` is the ``t``-th call of ``step()``; the events scheduled at
step 0 happen in the constructor, so the model is pruned before its first forward.

``prunekit.run`` drives the same object through :meth:`Pruner.callback` in its own
loop (``prunekit.training.fit``): one code path for both, the method's own parameters
(L0 gate logits) included: they join the loop's optimizer as extra param groups.

Masks follow ``torch.nn.utils.prune`` (``weight_orig`` keeps the Parameter object the
optimizer holds), so an optimizer built before the ``Pruner`` stays valid.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .pruning.criteria import Context, needs_data
from .pruning.masks import apply_mask, original
from .pruning.masks import finalize as bake_masks
from .pruning.methods import Method
from .pruning.phase import PruningPhase, plan
from .pruning.preflight import check_model
from .registry import PrunekitError
from .spec import RunSpec, resolve_method

#: Upper bound of the search for the smallest ``steps`` a schedule fits in.
_MAX_STEPS_SEARCH = 1_000_000


def fits(method: Method, sparsity: float, steps: int) -> bool:
    """Whether a phase of ``steps`` steps holds the method's schedule: every pruning
    event on its own step before the last one, and (for a "before-prune" objective)
    at least one step of the objective before the first event."""
    if steps < 1:
        return False
    end, events = plan(method, sparsity, steps)
    at = [s for s, _ in events]
    if end is not None and end < 1:
        return False
    return all(0 <= s < steps for s in at) and len(set(at)) == len(at)


def min_steps(method: Method, sparsity: float, start: int = 1) -> int | None:
    """The smallest ``steps >= start`` that :func:`fits` (None if none is found)."""
    n = max(start, 1)
    while n <= _MAX_STEPS_SEARCH:
        if fits(method, sparsity, n):
            return n
        n = n + 1 if n < 64 else n * 2  # schedules fit from a few steps on; skip ahead
    return None


class Pruner:
    """Run a registered pruning method inside any training loop (see module docstring).

    Args:
        model: any ``nn.Module`` with Linear/Conv (or transformers ``Conv1D``) layers.
        method: a name from ``prunekit.METHODS``, a :class:`~prunekit.Method`, or a
            :class:`~prunekit.spec.RunSpec` already resolved (the pipeline's): its
            method and sparsity are used as checked, with no overrides or options here.
        sparsity: target fraction of units of removal in [0, 1) (weights; neurons for
            neuron methods), reached exactly at :meth:`finalize`; with a RunSpec, its own
            (a different value is an error).
        steps: how many times :meth:`step` will be called (optimizer steps of the loop).
        optimizer: the loop's optimizer. It must hold the pruned layers' weights; the
            method's own parameters, if any (L0 gate logits), are added to it as extra
            param groups with the method's learning rate (L0: ``gate_lr``, no weight
            decay), and the learning rate of each step is read from it (proximal updates
            use it). Build a learning-rate scheduler after the Pruner. Required by
            methods with parameters of their own (see :meth:`use_optimizer`).
        data: ``(x, y)`` calibration batch, required by data-driven criteria (entropy,
            wanda, sparsegpt); also what BatchNorm is recalibrated on.
        granularity, scope, schedule: override the method's defaults.
        exclude: qualified names of layers to leave dense.
        seed: seeds the criterion's and the noise models' random draws.
        allow_short: let events that do not fit in ``steps`` run at :meth:`finalize`
            (the pipeline's zero-epoch phase); otherwise too few steps is an error.
        rezero: for methods without a training objective, keep plain weights between
            pruning events and zero the pruned entries again in :meth:`step` (one
            in-place product per masked tensor and step) instead of the mask hooks' product
            in every forward and backward; the same weights at every forward, cheaper (see
            ``benchmarks/pruner_step.py``). Masks are re-attached, in the
            ``torch.nn.utils.prune`` convention, for each pruning event and at
            :meth:`finalize`. Methods with an objective always use the hooks.
        recalibrate_bn: after each pruning event, re-estimate BatchNorm running
            statistics on ``data`` (no weight changes; a no-op without BatchNorm or data).
        **options: method options (``lam=1e-4``, ``cycles=5``, ``n=2, m=4`` ...), routed
            to the objective, schedule, criterion or granularity that takes them.
    """

    def __init__(
        self,
        model: nn.Module,
        method: str | Method | RunSpec = "magnitude",
        sparsity: float = 0.5,
        steps: int = 1,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        data: tuple[torch.Tensor, torch.Tensor] | None = None,
        granularity: str | None = None,
        scope: str | None = None,
        schedule: str | None = None,
        exclude: Iterable[str] = (),
        seed: int = 0,
        generator: torch.Generator | None = None,
        allow_short: bool = False,
        rezero: bool = True,
        recalibrate_bn: bool = True,
        **options: Any,
    ) -> None:
        self.model = model
        if isinstance(method, RunSpec):  # resolved and checked once, by prunekit.spec.resolve
            if granularity or scope or schedule or options:
                raise PrunekitError(
                    "a RunSpec is already resolved: pass no granularity, scope, schedule "
                    "or options with it"
                )
            if sparsity != method.sparsity:
                raise PrunekitError(
                    f"sparsity={sparsity} differs from the RunSpec's {method.sparsity}"
                )
            self.method, self.sparsity = method.method, method.sparsity
        else:  # the same method-level checks as a run's
            self.method, self.sparsity = resolve_method(
                method,
                sparsity,
                granularity=granularity,
                scope=scope,
                schedule=schedule,
                options=options,
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise PrunekitError(f"steps must be a whole number >= 0, got {steps!r}")
        self.steps = steps
        if not allow_short and not fits(self.method, self.sparsity, steps):
            need = min_steps(self.method, self.sparsity, steps + 1)
            raise PrunekitError(
                f"steps={steps} is too few for method {self.method.name!r} (schedule "
                f"{self.method.schedule!r}"
                + (", objective before pruning" if self.method.objective else "")
                + f"): pass steps >= {need}, the number of pruner.step() calls of your loop"
            )
        if needs_data(self.method.criterion) and data is None:
            raise PrunekitError(
                f"method {self.method.name!r} (criterion {self.method.criterion!r}) scores "
                "from calibration data: pass data=(x, y), a batch of training inputs"
            )
        if not any(True for _ in model.parameters()):
            raise PrunekitError(f"{type(model).__name__} has no parameters to prune")
        check_model(self.method, model)
        gen = generator or torch.Generator().manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed + 1)  # for transform()
        self.phase = PruningPhase(
            self.method,
            self.sparsity,
            steps,
            ctx=Context(data=data, generator=gen),
            exclude=tuple(exclude),
            recalibrate_bn=recalibrate_bn,
        )
        self.phase.on_start(model)  # finds the layers (errors for none), attaches the objective
        self.optimizer: torch.optim.Optimizer | None = None
        self._lr: float | None = None
        self._hook = None
        self._groups: list[dict[str, Any]] = []  # the method's groups in the optimizer
        if optimizer is not None:
            self.use_optimizer(optimizer)
        self.t = 0
        self.finalized = False
        self.rezero = rezero and self.phase.objective is None
        self._masks: list[tuple[nn.Module, str, torch.Tensor]] = []
        w = next(model.parameters())
        self._zero = torch.zeros((), device=w.device, dtype=w.dtype)
        self._events(0)  # step-0 events: pruned before the first forward

    # -- the user's loop ------------------------------------------------------------------
    @property
    def objective(self) -> Any:
        return self.phase.objective

    @property
    def history(self) -> list[dict[str, float]]:
        """``[{step, target}]``: the pruning events applied so far."""
        return self.phase.history

    def transform(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch the method trains on (noise models corrupt ``x``; others: as is)."""
        self._check_open()
        return self.phase.transform(x, y, generator or self.generator)

    def penalty(self) -> torch.Tensor:
        """The method's loss term for this step (0-dim tensor; 0 when it has none).
        Call it after the model's forward on the batch: activation penalties (entropy
        objectives) read the activations that forward recorded."""
        self._check_open()
        self._check_trained()
        p = self.phase.penalty(self.model)
        return p if p is not None else self._zero

    def step(self, lr: float | None = None) -> None:
        """After ``optimizer.step()``: the objective's post-step update (proximal step,
        gate update, controller) with ``lr`` (default: the optimizer's learning rate of
        that step), then the pruning events due before the next step."""
        self._check_open()
        self._check_trained()
        if self.phase.active:
            lr = lr if lr is not None else self._lr
            if lr is None:
                raise PrunekitError(
                    "pruner.step() needs the step's learning rate: pass optimizer= to the "
                    "Pruner (and call optimizer.step() first) or step(lr=...)"
                )
            self.phase.after_step(self.model, lr)
        if self._masks:
            self._zero_pruned()
        self._advance()

    def finalize(self) -> nn.Module:
        """Run the events still due, stop the objective, bake the masks into plain
        weights (no hooks, no ``*_orig``); returns the model."""
        if not self.finalized:
            self._attach_masks()
            self.phase.on_end(self.model, max(self.t, self.steps))
            self._release_groups()
            bake_masks(self.model)
            if self._hook is not None:
                self._hook.remove()
            self.finalized = True
        return self.model

    def describe(self) -> str:
        return self.phase.describe()

    def use_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Join ``optimizer`` (what ``optimizer=`` does): check that it holds the pruned
        layers' weights, add the method's own parameters (L0 gate logits) to it as extra
        param groups with the method's learning rate, and hook its step: the step's
        learning rate is recorded and closed-form gradients (L0's penalty) are added
        right before it steps. Build a learning-rate scheduler after this: one built
        earlier does not know the new groups."""
        if self.optimizer is not None:
            raise PrunekitError("the pruner already has an optimizer")
        self._check_optimizer(optimizer)
        extra = self.phase.param_groups()
        if extra and any("initial_lr" in g for g in optimizer.param_groups):
            raise PrunekitError(
                f"method {self.method.name!r} adds its own parameters to the optimizer, "
                "which already has a learning-rate scheduler: build the scheduler after "
                "the Pruner"
            )
        self._groups = self._add_param_groups(optimizer, extra)
        self.optimizer = optimizer
        self._hook = optimizer.register_step_pre_hook(self._before_optimizer_step)

    def callback(self) -> _FitCallback:
        """This pruner as a callback of ``prunekit.training.fit`` (the pipeline's loop)."""
        return _FitCallback(self)

    # -- internals ------------------------------------------------------------------------
    def _advance(self) -> None:
        self.t += 1
        if self.t < self.steps:
            self._events(self.t)

    def _events(self, step: int) -> None:
        """The pruning events due at ``step``, on masks in the prune convention."""
        due = bool(self.phase.events) and self.phase.events[0][0] <= step
        if due and self.rezero:
            self._attach_masks()
        self.phase.on_step(step, self.model)
        if due and self.rezero:
            self._detach_masks()
        if not self.phase.active:
            self._release_groups()

    def _detach_masks(self) -> None:
        """Masks -> plain zeroed weights (same Parameter objects); keep the masks here."""
        self._masks = []
        for module in self.model.modules():
            for hook in list(module._forward_pre_hooks.values()):
                if isinstance(hook, torch.nn.utils.prune.BasePruningMethod):
                    name = hook._tensor_name
                    mask = getattr(module, f"{name}_mask").detach().clone()
                    torch.nn.utils.prune.remove(module, name)
                    self._masks.append((module, name, mask))

    def _attach_masks(self) -> None:
        for module, name, mask in self._masks:
            apply_mask(module, mask, name)
        self._masks = []

    @torch.no_grad()
    def _zero_pruned(self) -> None:
        for module, name, mask in self._masks:
            getattr(module, name).mul_(mask)

    def _check_open(self) -> None:
        if self.finalized:
            raise PrunekitError("the pruner is finalized; build a new Pruner to prune again")

    def _check_trained(self) -> None:
        if self.phase.active and self.optimizer is None and self.phase.param_groups():
            raise PrunekitError(
                f"method {self.method.name!r} trains parameters of its own (gate "
                "logits): pass optimizer= to the Pruner, the optimizer of your loop"
            )

    def _before_optimizer_step(self, opt: torch.optim.Optimizer, *_: Any) -> None:
        held = self._group_of_weights(opt)
        self._lr = float(opt.param_groups[held]["lr"])
        self.phase.before_step(self.model)

    def _release_groups(self) -> None:
        """The objective stopped: its parameters leave the optimizer (and their state).
        The groups stay, empty, so a scheduler's list of groups still matches."""
        if self.optimizer is None:
            return
        for g in self._groups:
            for p in g["params"]:
                self.optimizer.state.pop(p, None)
            g["params"] = []
        self._groups = []

    def _group_of_weights(self, opt: torch.optim.Optimizer) -> int:
        first = id(original(next(iter(self.phase.modules.values()))))
        for i, g in enumerate(opt.param_groups):
            if any(id(p) == first for p in g["params"]):
                return i
        return 0

    def _check_optimizer(self, opt: torch.optim.Optimizer) -> None:
        held = {id(p) for g in opt.param_groups for p in g["params"]}
        missing = [n for n, m in self.phase.modules.items() if id(original(m)) not in held]
        if missing:
            more = f" and {len(missing) - 1} more layers" if len(missing) > 1 else ""
            raise PrunekitError(
                f"the optimizer does not hold the weight of layer {missing[0]!r}{more}: "
                "build it on model.parameters() of the model given to the Pruner"
            )

    @staticmethod
    def _add_param_groups(
        opt: torch.optim.Optimizer, extra: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        taken = {id(p) for g in extra for p in g["params"]}
        if not taken:
            return []
        for g in opt.param_groups:  # the method's parameters move to their own groups
            g["params"] = [p for p in g["params"] if id(p) not in taken]
        added = []
        for g in extra:
            opt.add_param_group(dict(g))
            added.append(opt.param_groups[-1])
        return added


class _FitCallback:
    """``Pruner`` in the hook protocol of ``prunekit.training.fit``. The pruner was set up
    at construction and has run its step-0 events; ``fit`` calls ``on_step(s)`` before and
    ``after_step`` after optimizer step ``s``, which is ``Pruner.step``."""

    def __init__(self, pruner: Pruner) -> None:
        self.pruner = pruner

    def on_optimizer(self, opt: torch.optim.Optimizer) -> None:
        self.pruner.use_optimizer(opt)

    def on_step(self, step: int, model: nn.Module) -> None:
        if step != self.pruner.t:
            raise PrunekitError(f"fit is at step {step}, the pruner at {self.pruner.t}")

    def transform(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pruner.transform(x, y, generator)

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return self.pruner.phase.penalty(model)

    def after_step(self, model: nn.Module, lr: float) -> None:
        self.pruner.step(lr)

    def on_end(self, model: nn.Module, steps: int) -> None:
        self.pruner.finalize()

    def synced_tensors(self) -> list[torch.Tensor]:
        return self.pruner.phase.synced_tensors()

    def describe(self) -> str:
        return self.pruner.describe()

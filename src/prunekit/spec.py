"""Resolve a run once: ``resolve(RunConfig) -> RunSpec``.

A ``RunConfig`` holds what the user asked for (names, ``None`` for "the method's",
free-form method options). :func:`resolve` checks all of it at the boundary, once,
before any data is read: the model and dataset are registered, the method exists and
takes the overrides (granularity, scope, schedule) and the options routed to its
objective, schedule, criterion or granularity, an N:M pattern matches the target, and
the objective's options pass their checks (without building it: the pruning phase
builds it once). The method-level half, :func:`resolve_method`, is also what
``Pruner`` checks its arguments with. The :class:`RunSpec` it returns is frozen and
complete (no ``None`` left to fill in); the pipeline takes it and does not validate
again. ``run(RunConfig)`` resolves first; a comparison resolves each cell when it
plans it and hands the spec to the pipeline.

What only the model can tell (an N:M ``m`` that does not divide a layer's fan-in) is
:meth:`RunSpec.check_model`, called once the model's shape is known.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from torch import nn

from .config import RunConfig
from .data import DATASETS
from .models import MODELS
from .pruning.granularity import Granularity, check_sparsity
from .pruning.granularity import get as get_granularity
from .pruning.methods import Method, get_method, with_method_args
from .pruning.objectives import OBJECTIVES
from .pruning.options import RunFacts
from .pruning.preflight import check_model, check_run
from .pruning.schedules import SCHEDULES
from .registry import PrunekitError


@dataclass(frozen=True)
class RunSpec:
    """A run, resolved and checked: what the pipeline executes.

    ``config`` is the user's (checked) config, the source of the run id
    (``config.hash()``) and of ``result.json``'s ``"config"``; ``method`` the
    registered method with every override and option routed in; ``granularity`` its
    :class:`~prunekit.pruning.granularity.Granularity` object and
    ``granularity_options`` that granularity's options (checked); ``sparsity`` the
    target fraction of units of removal (for N:M, checked to be the pattern's
    ``1 - n/m``).
    """

    config: RunConfig
    method: Method
    granularity: Granularity
    granularity_options: Any
    sparsity: float

    @property
    def id(self) -> str:
        """The run id: the hash of the config's non-default fields."""
        return self.config.hash()

    @property
    def removes_units(self) -> bool:
        """Whole output units are pruned (``shrink`` removes them after fine-tuning)."""
        return self.granularity.removes_units

    @property
    def checks_model(self) -> bool:
        """Whether :meth:`check_model` has anything to check (else no model need be
        built for it)."""
        return self.granularity.checks_model

    def check_model(self, model: nn.Module) -> None:
        """Checks that need the model (built from the data's shape), e.g. an N:M ``m``
        must divide the fan-in of every layer it prunes. Called before any training;
        the target and the schedule were checked by :func:`resolve`."""
        check_model(self.method, model)


def resolve_method(
    method: str | Method,
    sparsity: float,
    *,
    granularity: str | None = None,
    scope: str | None = None,
    schedule: str | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[Method, float]:
    """``(method, sparsity)``: the registered method (or a ``Method`` as given) with its
    overrides and options routed in, checked against the target ``sparsity``: the
    granularity's target check (N:M: ``1 - n/m``), the schedule, the objective's
    options. What :func:`resolve` checks of a run's method and ``Pruner`` of its
    arguments, in one place."""
    m = method if isinstance(method, Method) else get_method(method)
    if granularity is not None:
        get_granularity(granularity)
    if schedule is not None:
        SCHEDULES.get(schedule)
    if scope is not None and scope not in ("global", "layer"):
        raise PrunekitError(f"scope must be 'global' or 'layer', got {scope!r}")
    m = m.with_options(granularity=granularity, scope=scope, schedule=schedule)
    m = with_method_args(m, dict(options or {}))
    sparsity = check_sparsity(sparsity)
    if m.name == "dense" and sparsity != 0:
        raise PrunekitError(f"method 'dense' prunes nothing; use sparsity 0, not {sparsity}")
    # The layers are check_model's, once the model exists.
    check_run(m, sparsity)
    if m.objective:  # its options, checked against the run's facts; built by the phase
        facts = RunFacts(m.granularity, sparsity, criterion=m.criterion, scope=m.scope)
        OBJECTIVES.get(m.objective).check(facts, **m.objective_args)
    return m, sparsity


def resolve(config: RunConfig) -> RunSpec:
    """Validate ``config`` once and return its :class:`RunSpec` (one-line
    ``PrunekitError`` naming the problem, before any data is read).

    Field types and bounds (sparsity in ``[0, 1)``, scope ``global``/``layer`` ...)
    are already guaranteed by ``RunConfig``'s own checks; this adds what depends on
    the registries and on the method.
    """
    if not isinstance(config, RunConfig):
        raise PrunekitError(f"resolve takes a RunConfig, got {type(config).__name__}")
    MODELS.get(config.model)
    DATASETS.get(config.dataset)
    if config.int8:  # onnxruntime missing: one line now, not after training
        from .latency.quantize import require_int8

        require_int8()
    method, sparsity = resolve_method(
        config.method,
        config.sparsity,
        granularity=config.granularity,
        scope=config.scope,
        schedule=config.schedule,
        options=config.method_args,
    )
    granularity = get_granularity(method.granularity)
    return RunSpec(
        # A copy: the spec stays what was checked even if the caller edits its config.
        config=copy.deepcopy(config),
        method=method,
        granularity=granularity,
        granularity_options=granularity.options(method.granularity_args),
        sparsity=sparsity,
    )

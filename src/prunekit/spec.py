"""Resolve a run once: ``resolve(RunConfig) -> RunSpec``.

A ``RunConfig`` holds what the user asked for (names, ``None`` for "the method's",
free-form method options). :func:`resolve` checks all of it at the boundary, once,
before any data is read: the model and dataset are registered, the method exists and
takes the overrides (granularity, scope, schedule) and the options routed to its
objective, schedule, criterion or granularity, an N:M pattern matches the target, and
the objective builds with its options. The :class:`RunSpec` it returns is frozen and
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
from .pruning.granularity import Granularity
from .pruning.granularity import get as get_granularity
from .pruning.methods import Method, get_method, with_method_args
from .pruning.objectives import OBJECTIVES
from .pruning.options import RunFacts
from .pruning.preflight import check_run
from .pruning.schedules import SCHEDULES
from .pruning.step import target_modules
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
        if self.checks_model:
            modules = target_modules(model, self.method.granularity)
            self.granularity.check_model(modules, self.granularity_options)


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
    if config.method == "dense" and config.sparsity != 0:
        raise PrunekitError(f"method 'dense' prunes nothing; use sparsity 0, not {config.sparsity}")
    method = get_method(config.method)
    if config.granularity is not None:
        get_granularity(config.granularity)
    if config.schedule is not None:
        SCHEDULES.get(config.schedule)
    method = method.with_options(
        granularity=config.granularity, scope=config.scope, schedule=config.schedule
    )
    method = with_method_args(method, config.method_args)
    # The granularity's own target check (N:M: the pattern and the 1 - n/m it fixes)
    # and a schedule that reaches a fixed target in one event; the layers are
    # check_model's, once the model exists.
    check_run(method, config.sparsity)
    if method.objective:  # building it checks its options before any training starts
        facts = RunFacts(method.granularity, config.sparsity)
        OBJECTIVES.get(method.objective)(facts, **method.objective_args)
    granularity = get_granularity(method.granularity)
    return RunSpec(
        # A copy: the spec stays what was checked even if the caller edits its config.
        config=copy.deepcopy(config),
        method=method,
        granularity=granularity,
        granularity_options=granularity.options(method.granularity_args),
        sparsity=config.sparsity,
    )

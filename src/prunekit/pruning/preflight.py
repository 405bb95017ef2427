"""Checks of a method against a run's target and model before any training, so that a
granularity that cannot reach the target (N:M fixes it at ``1 - n/m``), a schedule that
cannot hit it in one event, or a layer the unit does not fit fails in a second, not
after the dense phase."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..registry import PrunekitError
from .granularity import get
from .schedules import SCHEDULES
from .step import target_modules


def check_run(method: Any, sparsity: float) -> None:
    """The granularity's own checks of the target sparsity and a schedule whose every
    event targets a fixed sparsity (e.g. oneshot for N:M)."""
    gran = get(method.granularity)
    opts = gran.options(method.granularity_args)
    gran.check_sparsity(sparsity, opts)
    if gran.implied_sparsity(opts) is not None:
        events = SCHEDULES.get(method.schedule)(sparsity, 0, 100, **method.schedule_args)
        if any(abs(target - sparsity) > 1e-9 for _, target in events):
            raise PrunekitError(
                f"{gran.fixed_by(opts)} reaches its sparsity in one event; schedule "
                f"{method.schedule!r} prunes gradually: use --schedule oneshot"
            )


def check_model(method: Any, model: nn.Module) -> None:
    """The granularity's checks of every layer it would prune in ``model`` (N:M: ``m``
    divides each fan-in); nothing to do (and no model walk) for most granularities."""
    gran = get(method.granularity)
    if gran.checks_model:
        gran.check_model(
            target_modules(model, method.granularity), gran.options(method.granularity_args)
        )

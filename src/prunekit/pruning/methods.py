"""Named methods: granularity + criterion + objective + schedule, with defaults.

A method is data, not a class: the comparison harness can then ask fair
questions ("same criterion, different objective") and a user builds a new method
with one ``METHODS.add(...)`` call.

How a method spends the sparsify phase (the fine-tune budget after dense training):

- no objective: pruning events from the schedule over the phase, then fine-tuning;
- with an objective and ``objective_phase="before-prune"``: the objective shapes the
  weights over the first ``regularize_fraction`` of the phase, the schedule's events
  start there, and the rest fine-tunes without the objective (L1, L0, entropy);
- ``objective_phase="all"``: the objective stays on for the whole phase, pruning
  events included (noise models: the noise is part of fine-tuning too).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Any

from ..registry import PrunekitError, Registry


@dataclass(frozen=True)
class Method:
    name: str
    criterion: str
    granularity: str = "weight"
    scope: str = "global"
    schedule: str = "oneshot"
    schedule_args: dict[str, Any] = field(default_factory=dict)
    objective: str | None = None
    objective_args: dict[str, Any] = field(default_factory=dict)
    objective_phase: str = "before-prune"
    regularize_fraction: float = 0.5
    criterion_args: dict[str, Any] = field(default_factory=dict)
    granularity_args: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.objective_phase not in ("before-prune", "all"):
            raise ValueError(f"objective_phase must be 'before-prune' or 'all' ({self.name})")
        if not 0.0 <= self.regularize_fraction < 1.0:
            raise ValueError(f"regularize_fraction must be in [0, 1) ({self.name})")

    def with_options(self, **overrides: Any) -> Method:
        """A copy with fields overridden (None values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


METHODS: Registry[Method] = Registry("method")


def register(method: Method) -> Method:
    METHODS.add(method.name, method)
    return method


def get_method(name: str) -> Method:
    return METHODS.get(name)


register(
    Method(
        "dense",
        criterion="magnitude",
        description="No pruning (sparsity 0): the baseline every row is compared to.",
    )
)
register(
    Method(
        "magnitude",
        criterion="magnitude",
        description="Smallest |w| pruned (Han et al. 2015); global or per layer.",
    )
)
register(
    Method(
        "random",
        criterion="random",
        description="Uniformly random weights pruned: the floor every criterion must beat.",
    )
)
register(
    Method(
        "l1-filter",
        criterion="magnitude",
        granularity="neuron",
        scope="layer",
        description="Conv filters / Linear units with the smallest L1 norm zeroed "
        "(Li et al. 2017), the spec's conv1 example.",
    )
)
register(
    Method(
        "gmp",
        criterion="magnitude",
        schedule="cubic",
        description="Gradual magnitude pruning (Zhu & Gupta 2017): cubic schedule "
        "s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3, ~10 events over the first "
        "75 % of the phase, then fine-tuning.",
    )
)

register(
    Method(
        "wanda",
        criterion="wanda",
        description="Wanda (Sun et al. 2023): |w_ij| * ||X_j||_2 on calibration inputs, "
        "compared within each output row, layers calibrated in sequence; no weight "
        "update. Granularity weight or nm; global scope = global-magnitude layer allocation.",
    )
)
register(
    Method(
        "sparsegpt",
        criterion="sparsegpt",
        description="SparseGPT (Frantar & Alistarh 2023): layer-wise OBS pruning with weight "
        "updates from H = 2XX^T, column blocks with adaptive masks, layers calibrated in "
        "sequence. Granularity weight or nm; global scope = global-magnitude layer allocation.",
    )
)


def _options(fn: Any, skip: int) -> set[str]:
    """Keyword options a factory accepts (its parameters after the first ``skip``).

    A callable may instead list them in an ``options`` attribute (criteria do, since
    they receive their options through ``Context.options``)."""
    if hasattr(fn, "options"):
        return set(fn.options)
    params = list(inspect.signature(fn).parameters.values())[skip:]
    return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def with_method_args(method: Method, args: dict[str, Any]) -> Method:
    """Route free-form options (``--lambda``, ``--cycles``, ``--nm`` ...) to the method's
    objective, schedule, criterion or granularity, by the option names each of them
    accepts; an unknown option is an error that lists what the method takes."""
    from .criteria import CRITERIA
    from .granularity import GRANULARITIES
    from .objectives import OBJECTIVES
    from .schedules import SCHEDULES

    if not args:
        return method
    targets = {
        "objective_args": _options(OBJECTIVES.get(method.objective), 0)
        if method.objective
        else set(),
        "schedule_args": _options(SCHEDULES.get(method.schedule), 3),
        "criterion_args": _options(CRITERIA.get(method.criterion), 3),
        "granularity_args": _options(GRANULARITIES.get(method.granularity), 4),
    }
    routed = {field_name: dict(getattr(method, field_name)) for field_name in targets}
    unknown = []
    for key, value in args.items():
        for field_name, accepted in targets.items():
            if key in accepted:
                routed[field_name][key] = value
                break
        else:
            unknown.append(key)
    if unknown:
        accepted_all = sorted(set().union(*targets.values()))
        raise PrunekitError(
            f"method {method.name!r} does not take option(s) {', '.join(sorted(unknown))}; "
            f"it takes: {', '.join(accepted_all) or 'none'}"
        )
    return replace(method, **routed)

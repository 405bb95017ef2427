"""Options of a method's parts (criterion, objective, schedule, granularity) as data.

Each part declares a small frozen dataclass next to its code; every field has a
default, a help line and a type that a user value is checked against. ``-o KEY=VALUE``
is routed to the part whose dataclass has the field (``methods.with_method_args``),
the docs' option tables are read from the same fields, and nothing inspects a
function signature.

An objective's options also check themselves against the run (:meth:`Options.validate`),
so a run is checked before training without building its objective.

A registered criterion, objective or schedule is a :class:`Part`: the callable and its
options class, typed, instead of attributes hung on a function. Facts of the run
(granularity, target sparsity, window length) are not options: the pruning phase hands
them to an objective as :class:`RunFacts`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import PrunekitError


def option(default: Any, help: str, check: Callable[[str, Any], Any] | None = None) -> Any:
    """A dataclass field with its default, help line and optional extra check."""
    return field(default=default, metadata={"help": help, "check": check})


@dataclass(frozen=True)
class Options:
    """Base of every options dataclass (no fields: a part without options)."""

    what: ClassVar[str] = "option"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def check(cls, key: str, value: Any) -> Any:
        """``value`` checked against the field's declared type (and its extra check)."""
        from ..checks import from_annotation, from_default

        f = {f.name: f for f in dataclasses.fields(cls)}[key]
        typed = from_annotation(f.type) or from_default(f.default)
        value = value if typed is None else typed(f"method option {key}", value)
        extra = f.metadata.get("check")
        return value if extra is None else extra(key, value)

    @classmethod
    def parse(cls, values: dict[str, Any], owner: str) -> Any:
        """An instance from user values; an unknown key is a one-line error."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise PrunekitError(
                f"{owner} does not take option(s) {', '.join(unknown)}; "
                f"it takes: {', '.join(cls.names()) or 'none'}"
            )
        inst = cls(**{k: cls.check(k, v) for k, v in values.items()})
        object.__setattr__(inst, "_given", frozenset(values))
        return inst

    def validate(self, run: RunFacts) -> None:
        """Checks across fields or against the run's facts (an objective's options are
        checked here, at the boundary, without building the objective); none by default."""

    def given(self, name: str) -> bool:
        """Whether the user set ``name`` (a default can then defer to a run fact)."""
        return name in getattr(self, "_given", frozenset())

    @classmethod
    def rows(cls) -> list[tuple[str, Any, str]]:
        """``(name, default, help)`` of every field."""
        return [(f.name, f.default, f.metadata.get("help", "")) for f in dataclasses.fields(cls)]


NoOptions = Options


@dataclass(frozen=True)
class RunFacts:
    """What the run tells an objective (not user options).

    granularity: the method's granularity name (L1: lasso or group lasso; L0: weight or
    unit gates). target_sparsity: the run's target, None when unknown (an objective built
    outside a run). window_steps: the steps the objective is active. criterion, scope:
    the method's (an objective that chooses masks itself, DPF, ranks with them).
    """

    granularity: str = "weight"
    target_sparsity: float | None = None
    window_steps: int | None = None
    criterion: str = "magnitude"
    scope: str = "global"


@dataclass(frozen=True)
class Part:
    """A registered criterion, objective or schedule: the callable and its options."""

    fn: Callable[..., Any]
    options: type[Options] = Options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def options_of(part: Any) -> type[Options]:
    """The options class of a registered part (a bare callable takes none)."""
    return part.options if isinstance(part, Part) else Options

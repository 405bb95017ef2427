"""The flags of ``prunekit prune`` that are not ``RunConfig`` fields, declared once as
data and generated like the run options (:mod:`.runflags`):

- method-option shortcuts (:data:`SHORTCUTS`): ``--lambda 1e-4`` is ``-o lam=1e-4``,
  ``--nm 2:4`` is ``-o n=2 -o m=4``; ``-o`` wins where both set the same key;
- the latency target (:data:`TARGET_FLAGS`): the fields of
  :class:`prunekit.latency.target.Target` a user sets, ``--target-speedup`` or
  ``--target-latency-ms`` and where that holds.

They are not ``RunConfig`` fields: a shortcut is another spelling of ``method_args``
(the run is the same, and so is its hash), and a latency target is hashed with the run
by ``prunekit.latency.target.target_hash``. Each flag shows its default in ``--help``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from ..registry import PrunekitError

_TYPES: dict[str, type] = {"int": int, "float": float, "str": str}


@dataclass(frozen=True)
class ExtraFlag:
    """One flag: ``name`` is the command's parameter, ``dest`` the method option
    (shortcuts) or ``Target`` field (latency target) it sets."""

    name: str
    kind: str  # "int" | "float" | "str"
    help: str
    dest: str
    default: Any = None
    shown: str = "none"  # what --help says for a default of None
    flag: str | None = None  # when it is not --name-with-dashes
    #: value -> the method options it stands for (default: ``{dest: value}``)
    expand: Callable[[Any], dict[str, Any]] | None = None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def default_text(self) -> str:
        return self.shown if self.default is None else str(self.default)

    def method_args(self, value: Any) -> dict[str, Any]:
        return self.expand(value) if self.expand else {self.dest: value}


def parse_nm(text: str) -> dict[str, int]:
    """``"2:4"`` -> ``{"n": 2, "m": 4}`` (whole numbers; the granularity checks N < M)."""
    n_str, sep, m_str = text.partition(":")
    if not sep or not n_str.isdigit() or not m_str.isdigit():
        raise PrunekitError(f"--nm takes N:M with whole numbers, e.g. 2:4; got {text!r}")
    return {"n": int(n_str), "m": int(m_str)}


_METHOD = "the method's"

#: Named flags for common method options (``-o KEY=VALUE`` reaches every option).
SHORTCUTS: tuple[ExtraFlag, ...] = (
    ExtraFlag(
        "lam",
        "float",
        "Penalty strength of the method's objective.",
        "lam",
        flag="--lambda",
        shown=_METHOD,
    ),
    ExtraFlag(
        "cycles", "int", "Prune/fine-tune cycles (iterative schedule).", "cycles", shown=_METHOD
    ),
    ExtraFlag(
        "noise_sigma",
        "float",
        "Gaussian noise std (inputs in [0, 1]) for the gaussian method.",
        "sigma",
        shown=_METHOD,
    ),
    ExtraFlag(
        "noise_density",
        "float",
        "Salt-and-pepper density in [0, 1] for the saltpepper method.",
        "density",
        shown=_METHOD,
    ),
    ExtraFlag(
        "calibration_batches",
        "int",
        "Batches of data used by data-driven criteria (entropy).",
        "calibration_batches",
        shown=_METHOD,
    ),
    ExtraFlag(
        "entropy_estimator",
        "str",
        "histogram | gaussian (entropy criterion).",
        "estimator",
        shown=_METHOD,
    ),
    ExtraFlag(
        "nm",
        "str",
        "N:M pattern for --granularity nm, e.g. 2:4; it fixes the sparsity at 1-N/M "
        "(omit --sparsity).",
        "n:m",
        shown="the granularity's",
        expand=parse_nm,
    ),
)

#: The latency target's flags; the defaults are ``Target``'s (checked by the tests).
TARGET_FLAGS: tuple[ExtraFlag, ...] = (
    ExtraFlag(
        "target_speedup",
        "float",
        "Prune a structured method to this MEASURED speed-up (latency tables, "
        "see prunekit.latency); --sparsity is then unused.",
        "speedup",
        shown="none (prune to --sparsity)",
    ),
    ExtraFlag(
        "target_latency_ms",
        "float",
        "Like --target-speedup, as a latency in ms per batch.",
        "latency_ms",
    ),
    ExtraFlag(
        "runtime",
        "str",
        "Runtime the latency target holds in: eager | compile | onnxruntime.",
        "runtime",
        default="eager",
    ),
    ExtraFlag(
        "latency_batch",
        "int",
        "Batch size the latency target is measured at.",
        "batch_size",
        default=64,
    ),
    ExtraFlag(
        "depth",
        "str",
        "Residual blocks for a latency target: none | only | with (widths).",
        "depth",
        default="none",
    ),
)


def method_args_of(given: dict[str, Any]) -> dict[str, Any]:
    """The method options that the shortcuts given (``{name: value}``, None: not
    given) stand for, in :data:`SHORTCUTS` order."""
    out: dict[str, Any] = {}
    for s in SHORTCUTS:
        if given.get(s.name) is not None:
            out.update(s.method_args(given[s.name]))
    return out


def target_of(given: dict[str, Any]) -> dict[str, Any] | None:
    """``Target`` fields from the latency-target flags given, defaults filled in; None
    when neither ``--target-speedup`` nor ``--target-latency-ms`` was given."""
    if given.get("target_speedup") is None and given.get("target_latency_ms") is None:
        return None
    return {f.dest: f.default if given.get(f.name) is None else given[f.name] for f in TARGET_FLAGS}


def _parameter(f: ExtraFlag) -> inspect.Parameter:
    info = typer.Option(
        f.option, help=f"{f.help}  [default: {f.default_text()}]", show_default=False
    )
    annotation = Annotated[_TYPES[f.kind] | None, info]
    return inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


def extra_flags(
    *groups: tuple[ExtraFlag, ...],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the flags of ``groups``, before its own parameters; it receives
    them as ``extra``: ``{name: value}`` (None: not given)."""
    flags = [f for group in groups for f in group]

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(func, eval_str=True).parameters.values()
            if p.name != "extra"
        ]
        generated = [_parameter(f) for f in flags]
        clash = {p.name for p in own} & {p.name for p in generated}
        if clash:
            raise TypeError(f"{func.__name__}: parameters shadow extra flags {sorted(clash)}")

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            return func(extra={f.name: kwargs.pop(f.name) for f in flags}, **kwargs)

        params = generated + own
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return wrap

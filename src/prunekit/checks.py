"""Typed checks of user values at the boundary: one ``PrunekitError`` line per bad value.

A :class:`Check` says what a value must be (kind, bounds, optional, item check for
lists) and turns a value into the canonical one or raises ``"KEY must be WHAT, got
VALUE"``. The run schema (``RunConfig`` field metadata), method options, comparison
configs and ``model.json`` all use it, so every bad input reads the same way.

Kinds are strict on purpose: YAML ``"two"`` is not a number, ``"no"`` is not a
boolean, ``1.7`` is not a whole number (``2.0`` is, and becomes ``2``), ``True`` is
not a number. NaN and infinities are never numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .registry import PrunekitError

KINDS = ("float", "int", "bool", "str", "list", "dict", "any")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Check:
    """What one value must be. ``lo``/``hi`` bound numbers (and list items through
    ``item``); ``lo_open``/``hi_open`` make a bound strict; ``optional`` admits None."""

    kind: str = "any"
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    optional: bool = False
    item: Check | None = None
    choices: tuple[str, ...] | None = None

    def bounds(self) -> str:
        """``in [0, 1)``, ``> 0``, ``<= 5`` or '' (numbers only)."""
        if self.lo is not None and self.hi is not None:
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"in {left}{_num(self.lo)}, {_num(self.hi)}{right}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        return ""

    def describe(self) -> str:
        if self.kind == "list":
            inner = self.item.describe() if self.item else "any value"
            text = f"a list, each {inner}"
        elif self.kind == "dict":
            text = "a mapping of KEY: VALUE"
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = "one of " + ", ".join(self.choices) if self.choices else "a string"
        elif self.kind in ("int", "float"):
            text = "a whole number" if self.kind == "int" else "a number"
            text += f" {self.bounds()}" if self.bounds() else ""
        else:
            text = "a value"
        return text + (" or null" if self.optional else "")

    def __call__(self, key: str, value: Any) -> Any:
        """The canonical value, or ``PrunekitError("key: expected ..., got ...")``."""
        if value is None:
            if self.optional or self.kind == "any":
                return None
            self.fail(key, value)
        if self.kind == "bool":
            if not isinstance(value, bool):
                self.fail(key, value)
            return value
        if self.kind == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                self.fail(key, value)
            return value
        if self.kind in ("int", "float"):
            return self._number(key, value)
        if self.kind == "list":
            if not isinstance(value, list | tuple):
                self.fail(key, value)
            item = self.item or Check()
            return [item(f"{key}[{i}]", v) for i, v in enumerate(value)]
        if self.kind == "dict":
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                self.fail(key, value)
            return dict(value)
        return value

    def _number(self, key: str, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, value)
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(key, value)
        if self.kind == "int":
            if isinstance(value, float):
                if not value.is_integer():
                    self.fail(key, value)
                value = int(value)
        else:
            value = float(value)
        if (self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)) or (
            self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        ):
            # The type is right: say only the range.
            raise PrunekitError(f"{key} must be {self.bounds()}, got {_num(value)}")
        return value

    def fail(self, key: str, value: Any) -> None:
        raise PrunekitError(f"{key} must be {self.describe()}, got {_short(value)}")


def from_default(default: Any) -> Check | None:
    """The check a factory parameter's default implies (``lam: float = 0.1`` -> a
    number): used for method options, whose factories declare them by signature.
    None when the default says nothing (None, strings with free values, objects)."""
    if isinstance(default, bool):
        return Check("bool")
    if isinstance(default, int):
        return Check("int")
    if isinstance(default, float):
        return Check("float")
    return None


def from_annotation(annotation: Any) -> Check | None:
    """The check a parameter annotation implies (``float``, ``int | None``, ``bool``);
    annotations may be strings (``from __future__ import annotations``)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = {p.strip() for p in str(text).split("|")}
    optional = "None" in parts
    parts.discard("None")
    if parts == {"float"} or parts == {"int", "float"}:
        return Check("float", optional=optional)
    if parts == {"int"}:
        return Check("int", optional=optional)
    if parts == {"bool"}:
        return Check("bool", optional=optional)
    return None

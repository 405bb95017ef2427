"""The run schema's other faces: each ``RunConfig`` field as a CLI flag, as a key of a
comparison config, and as words of the command that reproduces a run.

``RunConfig`` (``config.py``) declares every run option once: its default, its
:class:`~prunekit.checks.Check` (type and bounds) and its help, plus where the
command line and a comparison config spell it. Everything here is derived from that
declaration, so a new run option is one field in ``config.py``:

- :data:`RUN_OPTIONS`: one :class:`RunOption` per field (flag name, default text for
  ``--help``, comparison-config location);
- :meth:`RunOption.parse`: a flag's text -> the value ``RunConfig`` checks (lists are
  comma-separated, ``method_args`` is ``-o KEY=VALUE``);
- :func:`to_argv`: a config -> ``prunekit prune`` arguments that rebuild it exactly
  (the same non-default fields, hence the same hash).
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass, fields
from typing import Any

import yaml

from .checks import Check
from .config import RunConfig
from .registry import PrunekitError

#: Where a comparison config puts options shared by every cell; the other fields are
#: the grid itself (``models``, ``dataset``, ``seeds``, ``sparsities``, ``methods[]``).
SECTIONS = ("budget", "data", "evaluation")


@dataclass(frozen=True)
class RunOption:
    """One ``RunConfig`` field as the command line and a comparison config see it."""

    name: str
    default: Any
    check: Check
    help: str
    flag: str  # --flag-name (bool: the positive form; --no-... is derived)
    short: str | None  # a one-letter alias (-o for method_args)
    shown: str | None  # what --help says for a default of None
    compare: str  # "budget.lr", "models", "methods[].name", ...

    @property
    def kind(self) -> str:
        return self.check.kind

    @property
    def negative(self) -> str:
        """The flag that sets a boolean option to false."""
        return "--no-" + self.flag.removeprefix("--")

    @property
    def section(self) -> str | None:
        """``budget``/``data``/``evaluation`` when the comparison sets it in a section."""
        head, _, _ = self.compare.partition(".")
        return head if head in SECTIONS else None

    def default_text(self) -> str:
        """The ``[default: ...]`` text of ``--help``: the value as the flag takes it."""
        if self.default is None or self.default == {}:
            return self.shown or "none"
        if self.kind == "bool":
            return "on" if self.default else "off"
        if self.kind == "list":
            return ",".join(_text(v) for v in self.default)
        return _text(self.default)

    def metavar(self) -> str | None:
        if self.kind == "list":
            return "A,B,..."
        if self.kind == "dict":
            return "KEY=VALUE"
        return None

    def help_text(self) -> str:
        """The field's help, with the bounds its check enforces."""
        bounds = self.check.bounds() if self.kind in ("int", "float") else ""
        if self.check.item is not None and self.check.item.bounds():
            bounds = "each " + self.check.item.bounds()
        return f"{self.help.rstrip('.')} ({bounds})." if bounds else self.help

    def parse(self, raw: Any) -> Any:
        """The value of this option from what the command line gave (None: not given).
        Scalars arrive typed by the CLI; lists are ``"0.1,0.2"`` text and
        ``method_args`` a list of ``KEY=VALUE``. Bounds are ``RunConfig``'s to check."""
        if raw is None:
            return None
        if self.kind == "list":
            return parse_list(raw, self.flag)
        if self.kind == "dict":
            return parse_options(list(raw))
        return raw

    def to_args(self, value: Any) -> list[str]:
        """The command-line words that set this option to ``value``."""
        if self.kind == "bool":
            return [self.flag if value else self.negative]
        if self.kind == "list":
            return [self.flag, ",".join(_text(v) for v in value)]
        if self.kind == "dict":
            words: list[str] = []
            for key, v in sorted(value.items()):
                words += [self.short or self.flag, f"{key}={_option_text(v)}"]
            return words
        return [self.flag, _text(value)]


def _text(value: Any) -> str:
    """A number as its shortest exact text (``0.9``, ``1e-05``, ``2``), else ``str``."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def _option_text(value: Any) -> str:
    """A method option's value as ``-o KEY=VALUE`` text that :func:`parse_options`
    reads back to the same value."""
    if isinstance(value, str):
        try:
            same = _number_or(yaml.safe_load(value)) == value
        except yaml.YAMLError:
            same = False
        return value if same else json.dumps(value)
    if isinstance(value, float):
        return _text(value)
    return json.dumps(value)


def _options() -> tuple[RunOption, ...]:
    out = []
    for f in fields(RunConfig):
        meta = f.metadata
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        out.append(
            RunOption(
                name=f.name,
                default=default,
                check=meta["check"],
                help=meta["help"],
                flag=meta.get("flag") or "--" + f.name.replace("_", "-"),
                short=meta.get("short"),
                shown=meta.get("shown"),
                compare=meta["compare"],
            )
        )
    return tuple(out)


#: Every run option, in ``RunConfig`` field order.
RUN_OPTIONS: tuple[RunOption, ...] = _options()
BY_NAME: dict[str, RunOption] = {o.name: o for o in RUN_OPTIONS}


def section_keys(section: str) -> tuple[str, ...]:
    """The keys a comparison config's ``budget``/``data``/``evaluation`` section takes."""
    return tuple(o.name for o in RUN_OPTIONS if o.section == section)


def method_entry_keys() -> dict[str, str]:
    """``methods[]`` entry key -> the RunConfig field it sets (``name`` -> ``method``)."""
    prefix = "methods[]."
    return {
        o.compare.removeprefix(prefix): o.name for o in RUN_OPTIONS if o.compare.startswith(prefix)
    }


def to_argv(cfg: RunConfig, *, always: tuple[str, ...] = ()) -> list[str]:
    """Arguments of ``prunekit prune`` that rebuild ``cfg``: every field that differs
    from its default (``always``: also these, for a reader), in field order."""
    argv: list[str] = []
    for o in RUN_OPTIONS:
        value = getattr(cfg, o.name)
        if value == o.default and o.name not in always:
            continue
        if value is None:  # a default a flag cannot unset; no field has one today
            raise PrunekitError(f"{o.name}=None has no command-line form")
        argv += o.to_args(value)
    return argv


# -- flag text ----------------------------------------------------------------------


def parse_options(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values parsed as YAML scalars (numbers, bools, lists)."""
    opts: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PrunekitError(f"--option takes KEY=VALUE, got {item!r}")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise PrunekitError(f"--option {key}: cannot parse value {value!r}") from None
        # A quoted value stays the string it spells ("1" is not the number 1).
        quoted = value.strip()[:1] in ("'", '"')
        opts[key.strip().replace("-", "_")] = parsed if quoted else _number_or(parsed)
    return opts


def _number_or(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string; a user writing it means the number."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        if math.isfinite(number):
            return number
    return value


def parse_list(text: str, flag: str) -> list[float]:
    """``"0.1,0.2"`` -> ``[0.1, 0.2]``; ``""`` -> ``[]`` (whole numbers are made ints by
    the field's check)."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PrunekitError(
            f"{flag} takes comma-separated numbers, e.g. 0.1,0.2; got {text!r}"
        ) from None

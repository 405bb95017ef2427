"""Checks of a parsed comparison config before it is used: the keys each level may hold
(from the run schema), the type of every value, and the method entries built from it.
Each mistake is one line naming the key (:mod:`prunekit.experiments.plan` loads and
plans the config)."""

from __future__ import annotations

from typing import Any

from ..checks import Check
from ..config import MAX_SEED, check_values
from ..registry import PrunekitError
from ..runoptions import RUN_OPTIONS, SECTIONS, method_entry_keys, section_keys
from .cells import MethodEntry

# Every key list below comes from the run schema (each RunConfig field says where a
# comparison sets it: ``budget.lr``, ``methods[].args``, ``seeds`` ...), so a new run
# option is accepted here as soon as it is a field of ``RunConfig``.
_BUDGET_KEYS = section_keys("budget")
_DATA_KEYS = section_keys("data")
_EVAL_KEYS = section_keys("evaluation")
#: Keys of a ``methods:`` entry: the RunConfig fields it sets, plus its own.
_METHOD_KEYS = (*method_entry_keys(), "label", "granularities", "sparsities", "budget")
#: Top-level keys: the grid's RunConfig fields (``models``, ``seeds`` ...), the sections
#: and the comparison's own settings.
_TOP_KEYS = (
    "name",
    *(o.compare for o in RUN_OPTIONS if "." not in o.compare),
    "methods",
    "exclude",
    "peers",
    "granularities",
    "dense_baseline",
    *SECTIONS,
    "heatmap_sparsity",
    "save_models",
    "full",
    "no_finetune",
)


def _check_keys(data: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    if not isinstance(data, dict):
        raise PrunekitError(f"{where} must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise PrunekitError(
            f"unknown key(s) in {where}: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


_TEXT = Check("str")
_TEXTS = Check("list", item=Check("str"))
_FRACTIONS = Check("list", item=Check("float", lo=0, hi=1, lo_open=True, hi_open=True))
_SEEDS = Check("list", item=Check("int", lo=0, hi=MAX_SEED))


def _one_or_many(check: Check, key: str, value: Any) -> Any:
    """A value that may be given as one item or a list of them, checked as a list."""
    return check(key, value if isinstance(value, list | tuple) else [value])


def _check_types(data: dict[str, Any]) -> None:
    """Every top-level value of a comparison config typed, before anything uses it:
    ``sparsities: [abc]`` or ``models: [{a: 1}]`` is one line naming the key."""
    for key, check in (("name", _TEXT), ("dataset", _TEXT)):
        if key in data:
            check(key, data[key])
    for key in ("models", "exclude", "peers", "granularities"):
        if data.get(key) is not None:
            _one_or_many(_TEXTS, key, data[key])
    if data.get("sparsities") is not None:
        _one_or_many(_FRACTIONS, "sparsities", data["sparsities"])
    if data.get("seeds") is not None:
        _one_or_many(_SEEDS, "seeds", data["seeds"])
    for key in ("dense_baseline", "save_models"):
        if key in data:
            Check("bool")(key, data[key])
    if "heatmap_sparsity" in data:
        Check("float", lo=0, hi=1, hi_open=True, optional=True)(
            "heatmap_sparsity", data["heatmap_sparsity"]
        )
    for section in ("budget", "data", "evaluation"):
        if data.get(section) is not None:
            check_values(Check("dict")(section, data[section]), f"{section}.")
    methods = data.get("methods", "all")
    if methods not in (None, "all"):
        if not isinstance(methods, list):
            raise PrunekitError(
                f"methods must be 'all' or a list of names / mappings, got {methods!r}"
            )
        for i, item in enumerate(methods):
            if isinstance(item, str):
                continue
            if not isinstance(item, dict):
                raise PrunekitError(f"methods[{i}] must be a name or a mapping, got {item!r}")
            for key in ("name", "label", "scope", "schedule"):
                if item.get(key) is not None:
                    _TEXT(f"methods[{i}].{key}", item[key])
            if item.get("granularities", item.get("granularity")) is not None:
                _one_or_many(
                    Check("list", item=Check("str", optional=True)),
                    f"methods[{i}].granularities",
                    item.get("granularities", item.get("granularity")),
                )
            if item.get("args") is not None:
                Check("dict")(f"methods[{i}].args", item["args"])
            if item.get("sparsities") is not None:
                _one_or_many(_FRACTIONS, f"methods[{i}].sparsities", item["sparsities"])
            if item.get("budget") is not None:
                check_values(
                    Check("dict")(f"methods[{i}].budget", item["budget"]), f"methods[{i}].budget."
                )


def _as_tuple(value: Any, where: str) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def _method_entries(raw: Any, exclude: tuple[str, ...]) -> list[MethodEntry]:
    from ..pruning.methods import METHODS

    auto = raw in (None, "all")
    if auto:
        raw = [n for n in METHODS.names() if n != "dense" and n not in exclude]
    if not isinstance(raw, list):
        raise PrunekitError("methods must be 'all' or a list of names / mappings")
    entries = []
    for i, item in enumerate(raw):
        item = {"name": item} if isinstance(item, str) else item
        _check_keys(item, _METHOD_KEYS, f"methods[{i}]")
        if "name" not in item:
            raise PrunekitError(f"methods[{i}] has no 'name'")
        if "granularity" in item and "granularities" in item:
            raise PrunekitError(f"methods[{i}]: give 'granularity' or 'granularities', not both")
        grans = _as_tuple(item.get("granularities", item.get("granularity")), "granularities")
        budget = item.get("budget") or {}
        _check_keys(budget, _BUDGET_KEYS, f"methods[{i}].budget")
        sp = item.get("sparsities")
        entries.append(
            MethodEntry(
                name=str(item["name"]),
                label=str(item.get("label", item["name"])),
                args=dict(item.get("args") or {}),
                granularities=grans or (None,),
                scope=item.get("scope"),
                schedule=item.get("schedule"),
                sparsities=tuple(float(s) for s in _as_tuple(sp, "sparsities"))
                if sp is not None
                else None,
                budget=dict(budget),
                auto=auto,
            )
        )
    return entries

"""The comparison's configuration (YAML) and its grid of cells.

A comparison config names model(s), one dataset, methods (with options), target
sparsities, seeds, one training budget and the evaluation options. ``plan`` turns it
into cells: one per (model, seed, method entry, granularity, sparsity), plus the dense
baseline (sparsity 0) per (model, seed). Every cell is a complete ``RunConfig`` (or a
peer run with the same fields), so a cell reruns alone with ``prunekit prune``.

Identity: a cell's id is the sha256 of ``(kind, label, RunConfig.non_default())``;
the comparison's hash is the sha256 of the normalised config (defaults filled in,
``data_dir`` left out since where files live does not change what is computed).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..checks import Check
from ..config import MAX_SEED, RunConfig, check_values
from ..registry import PrunekitError
from ..runoptions import RUN_OPTIONS, SECTIONS, method_entry_keys, section_keys, to_argv
from ..spec import RunSpec, resolve

#: Peers: other libraries' pruners, run with the same dense model and budget, and the
#: granularity each one prunes at (see ``peers.py``).
PEER_GRANULARITY = {"torch-l1": "weight", "tp-magnitude": "neuron"}
PEER_NAMES = tuple(PEER_GRANULARITY)

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
#: Shown in a reproduce command even at their default, so that it reads on its own.
_ALWAYS_SHOWN = ("model", "dataset", "method", "sparsity", "epochs", "finetune_epochs", "seed")
#: Label suffix of the rows that ``no_finetune`` adds (the same method, pruned once from
#: the dense model and evaluated without any retraining).
NO_FINETUNE = " (no fine-tune)"


@dataclass(frozen=True)
class MethodEntry:
    """One method row of the comparison: a registered method (or a peer) + options.

    ``label`` names the row (defaults to the method name); two entries of the same
    method with different ``args`` need different labels.
    """

    name: str
    label: str
    args: dict[str, Any] = field(default_factory=dict)
    granularities: tuple[str | None, ...] = (None,)
    scope: str | None = None
    schedule: str | None = None
    sparsities: tuple[float, ...] | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    # Discovered by `methods: all`: a method whose defaults do not validate becomes
    # failed rows (with the message) instead of stopping the whole comparison.
    auto: bool = False

    @property
    def peer(self) -> bool:
        return self.name in PEER_NAMES


@dataclass(frozen=True)
class CompareConfig:
    name: str
    models: tuple[str, ...]
    dataset: str
    methods: tuple[MethodEntry, ...]
    sparsities: tuple[float, ...]
    seeds: tuple[int, ...]
    dense_baseline: bool = True
    budget: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    heatmap_sparsity: float | None = None
    save_models: bool = False

    def hash(self) -> str:
        """sha256 (16 hex digits) of the normalised config, ``data_dir`` excluded."""
        d = asdict(self)
        d["data"] = {k: v for k, v in d["data"].items() if k not in ("data_dir", "download")}
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cell:
    """One run of the grid. ``kind`` is 'dense', 'method' or 'peer'."""

    kind: str
    label: str
    run: RunConfig
    #: The cell resolved once by ``plan`` (None for peers and for cells that do not
    #: resolve, whose error is then recorded when they run); not part of its identity.
    spec: RunSpec | None = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> str:
        blob = json.dumps(
            {"kind": self.kind, "label": self.label, "run": self.run.non_default()},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @property
    def group(self) -> tuple[str, str, int]:
        """Cells of one group share the dense model: (model, dataset, seed)."""
        return (self.run.model, self.run.dataset, self.run.seed)

    def command(self, config_path: str | None = None) -> str:
        """The shell command that reproduces this cell on its own (a peer is not a
        registered method: its cell reruns through ``compare`` restricted to it)."""
        r = self.run
        if self.kind == "peer":
            cfg = f" --config {shlex.quote(config_path)}" if config_path else ""
            out = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.label).strip("-")
            return (
                f"prunekit compare{cfg} --only {shlex.quote(self.label)} "
                f"--sparsities {r.sparsity:g} --seeds {r.seed} --out runs/{out}"
            )
        # Every run option that differs from its default, spelled by the schema: the
        # command rebuilds this very RunConfig (same non-default fields, same hash).
        parts = ["prunekit", "prune", *to_argv(r, always=_ALWAYS_SHOWN)]
        return " ".join(shlex.quote(p) for p in parts)


# -- loading and validation -------------------------------------------------------------


def default_config_text() -> str:
    return resources.files("prunekit").joinpath("configs/default.yaml").read_text()


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


def load_config(path: str | Path | None = None, *, full: bool = False) -> CompareConfig:
    """Read a comparison config (the packaged default when ``path`` is None).

    ``full``: merge the config's ``full:`` section over it (more seeds, more epochs).
    """
    if path is None:
        text, where = default_config_text(), "default config"
    else:
        try:
            text, where = Path(path).read_text(), str(path)
        except OSError as e:
            raise PrunekitError(f"cannot read config {path}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise PrunekitError(f"{where} is not valid YAML: {str(e).splitlines()[0]}") from None
    return config_from_dict(data, full=full)


def config_from_dict(data: dict[str, Any], *, full: bool = False) -> CompareConfig:
    """Validate a parsed config: unknown keys and unregistered methods are named."""
    import prunekit.pipeline  # noqa: F401  (imports every criterion/objective, so methods register)

    from ..data import DATASETS
    from ..models import MODELS
    from ..pruning.granularity import GRANULARITIES
    from ..pruning.methods import METHODS

    _check_keys(data, _TOP_KEYS, "config")
    extra = data.get("full") or {}
    if full:
        _check_keys(extra, tuple(k for k in _TOP_KEYS if k != "full"), "config.full")
        data = _deep_merge(data, extra)
    _check_types(data)
    for section, keys in (
        ("budget", _BUDGET_KEYS),
        ("data", _DATA_KEYS),
        ("evaluation", _EVAL_KEYS),
    ):
        _check_keys(data.get(section) or {}, keys, f"config.{section}")
    models = _as_tuple(data.get("models", "lenet300"), "models")
    for m in models:
        MODELS.get(m)
    dataset = str(data.get("dataset", "fashion-mnist"))
    DATASETS.get(dataset)
    exclude = tuple(_as_tuple(data.get("exclude"), "exclude"))
    methods = _method_entries(data.get("methods", "all"), exclude)
    peers = _as_tuple(data.get("peers"), "peers")
    unknown_peers = sorted(set(peers) - set(PEER_NAMES))
    if unknown_peers:
        raise PrunekitError(
            f"unknown peer(s) {', '.join(unknown_peers)}; known: {', '.join(PEER_NAMES)}"
        )
    methods += [MethodEntry(name=p, label=p) for p in peers if p not in {e.name for e in methods}]
    for name in _as_tuple(data.get("no_finetune"), "no_finetune"):
        # One-shot, no retraining: its own rows, compared with each other and with the
        # dense model before fine-tuning (finetune_epochs 0 is the whole difference).
        base = next((e for e in methods if e.label == name), None)
        base = base or MethodEntry(name=str(name), label=str(name))
        methods.append(
            replace(
                base,
                label=f"{base.label}{NO_FINETUNE}",
                budget={**base.budget, "finetune_epochs": 0},
                auto=False,
            )
        )
    unregistered = sorted({e.name for e in methods if not e.peer and e.name not in METHODS})
    if unregistered:
        raise PrunekitError(
            f"method(s) not registered: {', '.join(unregistered)}; "
            f"known: {', '.join(METHODS.names())}"
        )
    labels = [e.label for e in methods]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise PrunekitError(
            f"duplicate method label(s) {', '.join(dupes)}: give each entry a 'label'"
        )
    top_grans = _as_tuple(data.get("granularities"), "granularities")
    if top_grans:
        methods = [
            replace(e, granularities=top_grans) if e.granularities == (None,) and not e.peer else e
            for e in methods
        ]
    for e in methods:
        for g in e.granularities:
            if g is not None:
                GRANULARITIES.get(g)
    sparsities = tuple(
        float(s) for s in _as_tuple(data.get("sparsities", [0.5, 0.8, 0.9]), "sparsities")
    )
    seeds = tuple(int(s) for s in _as_tuple(data.get("seeds", [0]), "seeds"))
    if not models or not methods and not data.get("dense_baseline", True) or not seeds:
        raise PrunekitError("config plans no runs: give models, methods and seeds")
    cfg = CompareConfig(
        name=str(data.get("name", "comparison")),
        models=tuple(models),
        dataset=dataset,
        methods=tuple(methods),
        sparsities=sparsities,
        seeds=seeds,
        dense_baseline=bool(data.get("dense_baseline", True)),
        budget=dict(data.get("budget") or {}),
        data=dict(data.get("data") or {}),
        evaluation=dict(data.get("evaluation") or {}),
        heatmap_sparsity=data.get("heatmap_sparsity"),
        save_models=bool(data.get("save_models", False)),
    )
    plan(cfg)  # every cell must be a valid RunConfig: fail before any training
    return cfg


# -- planning ------------------------------------------------------------------------


def _run_config(cfg: CompareConfig, model: str, seed: int, **fields_: Any) -> RunConfig:
    values: dict[str, Any] = dict(model=model, dataset=cfg.dataset, seed=seed)
    values.update(cfg.budget)
    values.update({k: v for k, v in cfg.data.items()})
    values.update(cfg.evaluation)
    values.update(fields_)
    known = {f.name for f in fields(RunConfig)}
    return RunConfig(**{k: v for k, v in values.items() if k in known})


def _resolved(cfg: CompareConfig) -> dict[str, RunSpec | None]:
    """The specs already resolved for ``cfg``'s cells, by cell id (None: the cell did not
    resolve; its error is recorded when it runs). A config is planned when it is loaded
    (to fail before training) and again by ``compare``; this keeps each cell to one
    ``resolve``. Not a field: the config's identity and hash do not see it."""
    known = getattr(cfg, "_resolved", None)
    if known is None:
        known = {}
        object.__setattr__(cfg, "_resolved", known)
    return known


def _with_spec(cell: Cell, known: dict[str, RunSpec | None]) -> Cell:
    """``cell`` with its spec, resolved once per cell id (a cell's id is its content)."""
    if cell.id not in known:
        known[cell.id] = resolve(cell.run)
    return replace(cell, spec=known[cell.id])


def plan(cfg: CompareConfig) -> list[Cell]:
    """Every cell of the grid, in run order: per (model, seed) the dense baseline, then
    each method entry x granularity x sparsity. Duplicate cells are planned once, and
    each cell is resolved once (the runner hands its spec to the pipeline)."""
    cells: list[Cell] = []
    seen: set[str] = set()
    known = _resolved(cfg)

    def add(cell: Cell) -> None:
        if cell.id not in seen:
            seen.add(cell.id)
            cells.append(cell)

    for model in cfg.models:
        for seed in cfg.seeds:
            if cfg.dense_baseline:
                run = _run_config(cfg, model, seed, method="dense", sparsity=0.0)
                add(_with_spec(Cell("dense", "dense", run), known))
            for e in cfg.methods:
                for gran in e.granularities:
                    label = e.label if len(e.granularities) == 1 else f"{e.label}/{gran}"
                    for s in e.sparsities or cfg.sparsities:
                        run = _run_config(
                            cfg,
                            model,
                            seed,
                            **e.budget,
                            method="magnitude" if e.peer else e.name,
                            sparsity=s,
                            scope=e.scope,
                            granularity=PEER_GRANULARITY[e.name] if e.peer else gran,
                            schedule=e.schedule,
                            method_args=dict(e.args),
                        )
                        if e.peer:
                            add(Cell("peer", e.label, run))
                            continue
                        cell = Cell("method", label, run)
                        try:
                            cell = _with_spec(cell, known)
                        except PrunekitError as err:
                            if not e.auto:
                                raise PrunekitError(f"method {e.label!r}: {err}") from None
                            known[cell.id] = None
                        add(cell)
    return cells


def restrict(
    cfg: CompareConfig,
    *,
    only: list[str] | None = None,
    sparsities: list[float] | None = None,
    seeds: list[int] | None = None,
) -> CompareConfig:
    """The config narrowed from the command line (``--only``, ``--sparsities``,
    ``--seeds``); the result is a different config (its own hash, its own database)."""
    original = cfg
    if only:
        labels = {e.label for e in cfg.methods}
        unknown = sorted(set(only) - labels - {"dense"})
        if unknown:
            raise PrunekitError(
                f"--only: no method {', '.join(unknown)} in the config; "
                f"it has: {', '.join(sorted(labels))}"
            )
        cfg = replace(cfg, methods=tuple(e for e in cfg.methods if e.label in only))
    if sparsities:
        _FRACTIONS("sparsities", list(sparsities))
        cfg = replace(
            cfg,
            sparsities=tuple(sparsities),
            methods=tuple(replace(e, sparsities=None) for e in cfg.methods),
        )
    if seeds:
        cfg = replace(cfg, seeds=tuple(seeds))
    # The narrowed config's cells that the original planned keep their specs (same id,
    # same run): resolved once, not again for the narrower grid.
    object.__setattr__(cfg, "_resolved", _resolved(original))
    return cfg

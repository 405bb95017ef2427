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

from dataclasses import fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..config import RunConfig
from ..registry import PrunekitError
from ..spec import RunSpec, resolve
from .cells import (
    NO_FINETUNE,
    PEER_GRANULARITY,
    PEER_NAMES,
    Cell,
    CompareConfig,
    MethodEntry,
)
from .config_checks import (
    _BUDGET_KEYS,
    _DATA_KEYS,
    _EVAL_KEYS,
    _FRACTIONS,
    _TOP_KEYS,
    _as_tuple,
    _check_keys,
    _check_types,
    _deep_merge,
    _method_entries,
)

# -- loading and validation -------------------------------------------------------------


def default_config_text() -> str:
    return resources.files("prunekit").joinpath("configs/default.yaml").read_text()


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
    _require_int8(cfg)
    plan(cfg)  # every cell must be a valid RunConfig: fail before any training
    return cfg


def _require_int8(cfg: CompareConfig) -> None:
    """``evaluation.int8`` without onnx/onnxruntime: one line before any training (also
    for peer rows, which are not resolved)."""
    if cfg.evaluation.get("int8"):
        from ..latency.quantize import require_int8

        require_int8()


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
    int8: bool = False,
) -> CompareConfig:
    """The config narrowed from the command line (``--only``, ``--sparsities``,
    ``--seeds``; ``int8``: ``--int8``, the config's ``evaluation.int8`` turned on); the
    result is a different config (its own hash, its own database)."""
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
    if int8:
        cfg = replace(cfg, evaluation={**cfg.evaluation, "int8": True})
        _require_int8(cfg)
    # The narrowed config's cells that the original planned keep their specs (same id,
    # same run): resolved once, not again for the narrower grid.
    object.__setattr__(cfg, "_resolved", _resolved(original))
    return cfg

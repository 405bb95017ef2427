"""The comparison harness on the user's objects: ``prunekit.compare(model_factory, ...)``.

The grid is (seed, method entry, sparsity) plus the dense baseline per seed, each cell a
``prunekit.run(model_factory, train=..., ...)`` on the same dense model (trained once per
seed, stored in ``DIR/dense/seed<N>/`` and reloaded on resume) with the same budget.
Rows go to ``DIR/results.sqlite`` through the zoo comparison's :class:`Store` (one
transaction per finished cell, resumable, a cell that raises is recorded as failed and the
sweep goes on), and ``DIR/report.md`` / ``report.html`` are the zoo report of those rows.

What is different from the zoo harness: the model, data and loss are Python objects,
so a cell's ``command`` is the Python call that reproduces it, the comparison's identity
(its config hash) is built from the model's name, the budget and the grid, and the data
is identified by a fingerprint computed from the loaders (count, sums and label counts of
every split, independent of batch order): a directory never mixes results of two datasets.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from rich.console import Console
from torch import nn

from ..progress import progress_bar
from ..pruning.granularity import check_sparsity
from ..registry import PrunekitError
from ..storage.atomic import atomic_write_json
from ..storage.outdir import check_writable
from ..storage.userio import load, save
from ..userrun import Batches, LossFn, Rewind, run_model, train_dense
from .runner import Outcome, SweepError, _message, sweep_outcome
from .store import Store

#: The training budget every cell shares (``prunekit.run``'s keywords).
BUDGET_DEFAULTS: dict[str, Any] = {
    "epochs": 1,
    "finetune_epochs": 1,
    "lr": 0.05,
    "finetune_lr": None,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "calibration_batches": 4,
}


@dataclass(frozen=True)
class UserRun:
    """What a cell runs, with the fields the results store reads from a ``RunConfig``."""

    model: str
    method: str
    sparsity: float
    seed: int
    budget: dict[str, Any]
    args: dict[str, Any] = field(default_factory=dict)
    dataset: str = "user"
    granularity: str | None = None
    scope: str | None = None
    schedule: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "method": self.method,
            "sparsity": self.sparsity,
            "seed": self.seed,
            **self.budget,
            "method_args": self.args,
        }

    def hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class UserCell:
    kind: str  # 'dense' or 'method'
    label: str
    run: UserRun

    @property
    def id(self) -> str:
        blob = json.dumps(
            {"kind": self.kind, "label": self.label, "run": self.run.to_dict()},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def command(self, config_path: str | None = None) -> str:
        """The Python call that reproduces this cell alone."""
        r = self.run
        kw = {**{k: v for k, v in r.budget.items() if v != BUDGET_DEFAULTS.get(k)}, **r.args}
        extra = "".join(f", {k}={v!r}" for k, v in sorted(kw.items()))
        return (
            f"prunekit.run({r.model}, train=..., val=..., test=..., loss_fn=..., "
            f"method={r.method!r}, sparsity={r.sparsity:g}, seed={r.seed}, "
            f"epochs={r.budget['epochs']}, finetune_epochs={r.budget['finetune_epochs']}"
            f"{extra})"
        )


def _entries(methods: Sequence[str | dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(name, label, options)`` per method entry: a name, or a mapping with ``name``,
    optional ``label`` (required when one method appears twice) and its options."""
    out = []
    for m in methods:
        if isinstance(m, str):
            out.append((m, m, {}))
        elif isinstance(m, dict) and isinstance(m.get("name"), str):
            opts = {k: v for k, v in m.items() if k not in ("name", "label")}
            out.append((m["name"], str(m.get("label", m["name"])), opts))
        else:
            raise PrunekitError(
                f"a method entry is a name or a mapping with 'name' (and options), got {m!r}"
            )
    labels = [label for _, label, _ in out]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise PrunekitError(f"method label(s) {', '.join(twice)} given twice: add 'label'")
    from ..pruning.methods import get_method

    for name, _, _ in out:
        get_method(name)  # unknown names: one line listing the known ones
    return out


def plan_user(
    model: str,
    methods: Sequence[str | dict[str, Any]],
    sparsities: Sequence[float],
    seeds: Sequence[int],
    budget: dict[str, Any],
    *,
    dense_baseline: bool = True,
) -> list[UserCell]:
    """The cells: per seed the dense baseline (method ``dense``, the same total epochs),
    then every (method entry, sparsity)."""
    sparsities = [check_sparsity(s) for s in sparsities]
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise PrunekitError(f"seeds must be whole numbers >= 0, got {bad[0]!r}")
    if not sparsities or not seeds:
        raise PrunekitError("compare needs at least one sparsity and one seed")
    entries = _entries(methods)
    cells = []
    for seed in seeds:
        if dense_baseline:
            cells.append(UserCell("dense", "dense", UserRun(model, "dense", 0.0, seed, budget)))
        for name, label, opts in entries:
            for s in sparsities:
                if name == "dense":
                    continue  # the baseline row, above
                cells.append(UserCell("method", label, UserRun(model, name, s, seed, budget, opts)))
    return cells


def data_fingerprint(splits: dict[str, Batches | None]) -> str:
    """sha256 of, per split: example count, float64 sums of x and x**2, label counts
    (order-free, so a shuffling loader gives the same fingerprint every time)."""
    parts: dict[str, Any] = {}
    for name, loader in splits.items():
        if loader is None:
            continue
        n, s1, s2, labels = 0, 0.0, 0.0, torch.zeros(0, dtype=torch.long)
        for x, y in loader:
            xd = x.detach().double()
            n += len(x)
            s1 += float(xd.sum())
            s2 += float(xd.square().sum())
            if y.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8) and y.dim() == 1:
                c = torch.bincount(y.long().clamp(min=0))
                size = max(len(labels), len(c))
                labels = torch.nn.functional.pad(labels, (0, size - len(labels)))
                labels += torch.nn.functional.pad(c, (0, size - len(c)))
        parts[name] = [n, f"{s1:.6e}", f"{s2:.6e}", labels.tolist()]
    blob = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _model_name(model_fn: Callable[[], nn.Module], name: str | None) -> str:
    if name is not None:
        return name
    return getattr(model_fn, "__qualname__", None) or type(model_fn).__name__


class _DenseCache:
    """The dense model of each seed, trained once, stored in ``DIR/dense/seed<N>``."""

    def __init__(
        self,
        out: Path,
        model_fn: Callable[[], nn.Module],
        train: Batches,
        loss_fn: LossFn,
        kw: dict[str, Any],
        rewind: Callable[[], None],
    ) -> None:
        self.dir, self.model_fn, self.train, self.kw = out / "dense", model_fn, train, kw
        self.loss_fn, self.rewind = loss_fn, rewind
        self.current: tuple[int, tuple[nn.Module, float]] | None = None
        self.trained = self.loaded = 0

    def get(self, seed: int) -> tuple[nn.Module, float]:
        if self.current is not None and self.current[0] == seed:
            return self.current[1]
        self.current = None
        where = self.dir / f"seed{seed}"
        try:
            meta = json.loads((where / "dense.json").read_text())
            if meta.get("budget") != self.kw:
                raise ValueError("another budget")
            torch.manual_seed(seed)
            model = load(where, model=self.model_fn())
            value = (model.train(), float(meta["train_seconds"]))
            self.loaded += 1
        except (PrunekitError, OSError, ValueError, KeyError, TypeError):
            self.rewind()
            model, seconds = train_dense(
                self.model_fn, self.train, loss_fn=self.loss_fn, seed=seed, **self.kw
            )
            save(model, where)
            atomic_write_json(where / "dense.json", {"train_seconds": seconds, "budget": self.kw})
            value = (model, seconds)
            self.trained += 1
        self.current = (seed, value)
        return value


def compare(
    model_factory: Callable[[], nn.Module],
    *,
    train: Batches,
    test: Batches,
    val: Batches | None = None,
    loss_fn: LossFn = F.cross_entropy,
    methods: Sequence[str | dict[str, Any]] = ("magnitude",),
    sparsities: Sequence[float] = (0.5,),
    seeds: Iterable[int] = (0,),
    out: str | Path,
    name: str = "user",
    model_name: str | None = None,
    dense_baseline: bool = True,
    save_models: bool = False,
    extend: bool = False,
    retry_failed: bool = False,
    report: bool = True,
    progress: bool = True,
    **budget: Any,
) -> Outcome:
    """Run every unfinished cell of the grid on the user's objects into
    ``out/results.sqlite``, then write the report (``report=False``: skip it).

    ``methods``: names, or mappings ``{"name": "l1", "label": "l1 strong", "lam": 1e-3}``
    (options go to the method, as ``prunekit.run``'s keywords). ``budget``: ``epochs``,
    ``finetune_epochs``, ``lr``, ``finetune_lr``, ``momentum``, ``weight_decay``,
    ``calibration_batches`` (``prunekit.run``'s defaults). A rerun with the same
    arguments resumes; other arguments on the same ``out`` need ``extend=True``.
    """
    unknown = sorted(set(budget) - set(BUDGET_DEFAULTS))
    if unknown:
        raise PrunekitError(
            f"compare() got unknown keyword(s) {', '.join(unknown)}; the budget takes "
            f"{', '.join(BUDGET_DEFAULTS)}"
        )
    if not callable(model_factory):
        raise PrunekitError("compare() takes a callable that builds the model (a class works)")
    if test is None:
        raise PrunekitError("compare() needs test= (the loader every cell is scored on)")
    full = {**BUDGET_DEFAULTS, **budget}
    model = _model_name(model_factory, model_name)
    cells = plan_user(model, methods, sparsities, list(seeds), full, dense_baseline=dense_baseline)
    out = Path(out)
    check_writable(out)
    config = {
        "name": name,
        "model": model,
        "dataset": "user",
        "methods": [list(e) for e in _entries(methods)],
        "sparsities": sorted({c.run.sparsity for c in cells if c.kind == "method"}),
        "seeds": sorted({c.run.seed for c in cells}),
        "dense_baseline": dense_baseline,
        "budget": full,
    }
    config_yaml = yaml.safe_dump(config, sort_keys=True)
    config_hash = hashlib.sha256(config_yaml.encode()).hexdigest()[:16]
    t0 = time.perf_counter()
    rewind = Rewind([train, val, test])  # before the fingerprint's pass over the data
    fingerprint = data_fingerprint({"train": train, "val": val, "test": test})
    store = Store(out, config_hash, config_yaml, extend=extend)
    try:
        try:
            store.check_data("user", fingerprint)
        except PrunekitError as e:
            raise SweepError(str(e)) from None
        store.plan_cells([c.id for c in cells])
        if retry_failed:
            store.forget_failed([c.id for c in cells])
        done = store.finished()
        todo = [c for c in cells if c.id not in done]
        dense_kw = {k: full[k] for k in ("epochs", "lr", "momentum", "weight_decay")}
        cache = _DenseCache(out, model_factory, train, loss_fn, dense_kw, rewind)
        console = Console(stderr=True)
        failed = 0
        with progress_bar(progress, total=len(todo), desc="compare") as bar:
            for cell in todo:
                r = cell.run
                start = time.perf_counter()
                result, error = None, None
                try:
                    dense = cache.get(r.seed)
                    start = time.perf_counter()  # the shared dense model is no cell's time
                    rewind()
                    result = run_model(
                        model_factory,
                        train=train,
                        val=val,
                        test=test,
                        loss_fn=loss_fn,
                        method=r.method,
                        sparsity=r.sparsity,
                        seed=r.seed,
                        out=out / "runs" / cell.id if save_models else None,
                        overwrite=True,
                        progress=False,
                        dense=dense,
                        **full,
                        **r.args,
                    ).result
                    result["model"] = model
                except Exception as e:  # recorded; the sweep goes on
                    error = _message(e)
                failed += error is not None
                store.record(
                    cell,  # type: ignore[arg-type]
                    command=cell.command(),
                    result=result,
                    error=error,
                    wall_seconds=time.perf_counter() - start,
                )
                if progress:
                    acc = (result or {}).get("accuracy")
                    status = f"failed: {error}" if error else f"acc {acc}"
                    console.print(f"{cell.label} s={r.sparsity:g} seed={r.seed}: {status}")
                bar.advance()
        outcome = sweep_outcome(len(cells), len(todo), failed, t0, store, cache)
    finally:
        store.close()
    if report:
        from .report import write_report

        write_report(out)
    return outcome

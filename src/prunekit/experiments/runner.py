"""Run a comparison: plan the grid, skip finished cells, run the rest, store each row.

The dense model is trained once per (model, seed, dense budget) and reused by every
cell of that group through ``pipeline.run(cfg, dense=(model, seconds), data=data)``
(which copies it); the dataset is loaded once per (dataset, seed, limits). The dense
weights are also saved in ``DIR/dense/<key>/`` (safetensors, with their training
seconds in ``dense.json``, written last), so a resumed comparison reloads them instead
of training again; the time to train or load them is not charged to any cell's wall
time (each result still records the dense training seconds under ``train_seconds``). A cell that
raises is recorded as failed with its message and the sweep goes on; only
KeyboardInterrupt (and a kill) stop it, and a rerun resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from torch import nn

from ..config import RunConfig
from ..data import Dataset
from ..progress import columns
from ..registry import PrunekitError
from ..storage.modelfile import model_files
from ..storage.outdir import check_writable
from ..storage.saving import save_run
from .peers import run_peer
from .plan import Cell, CompareConfig, plan
from .store import Store


@dataclass
class Outcome:
    planned: int
    skipped: int
    ran: int
    failed: int
    seconds: float
    store_path: Path
    dense_trained: int = 0
    dense_loaded: int = 0


def sweep_outcome(
    planned: int, ran: int, failed: int, t0: float, store: Store, cache: Any
) -> Outcome:
    """The ``Outcome`` of a finished sweep of ``planned`` cells of which ``ran`` ran
    (the rest were already in ``store``), timed from ``t0`` (``time.perf_counter()``);
    ``cache`` counts the dense models it trained and loaded (``trained``, ``loaded``)."""
    return Outcome(
        planned=planned,
        skipped=planned - ran,
        ran=ran,
        failed=failed,
        seconds=time.perf_counter() - t0,
        store_path=store.path,
        dense_trained=cache.trained,
        dense_loaded=cache.loaded,
    )


def _data_key(r: RunConfig) -> tuple:
    return (r.dataset, r.seed, r.data_dir, r.limit, r.test_limit, r.val_fraction)


def _dense_key(r: RunConfig) -> tuple:
    return (r.model, *_data_key(r), r.epochs, r.lr, r.batch_size, r.momentum, r.weight_decay)


class SweepError(PrunekitError):
    """A problem every cell shares (its data cannot be read, or differs from the data
    earlier results of the directory were computed on): stops the sweep, one line."""


def _fingerprint_key(r: RunConfig) -> str:
    """What the data of a run is, leaving out where its files live."""
    return json.dumps([r.dataset, r.seed, r.limit, r.test_limit, r.val_fraction])


def dense_id(r: RunConfig) -> str:
    """Name of the stored dense model of ``r``'s group (sha256 of its dense key)."""
    blob = json.dumps(_dense_key(r), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _Cache:
    """The dataset and dense model of the current group (one of each kept in memory);
    with a ``directory``, dense models are also stored there (each a whole run
    directory, checksummed) and reloaded from it on resume."""

    def __init__(self, store: Store | None = None, directory: Path | None = None) -> None:
        self.data: tuple[tuple, Dataset] | None = None
        self.dense: tuple[tuple, tuple[nn.Module, float] | BaseException] | None = None
        self.store = store
        self.directory = directory
        self.trained = 0
        self.loaded = 0

    def _load_stored(self, r: RunConfig) -> tuple[nn.Module, float] | None:
        from ..storage.saving import load

        if self.directory is None:
            return None
        where = self.directory / dense_id(r)
        try:
            seconds = float(json.loads((where / "result.json").read_text())["train_seconds"])
            model = load(where)
        except (PrunekitError, OSError, ValueError, KeyError, TypeError):
            return None  # absent or unreadable: train it again
        return model.train(), seconds

    def _store(self, r: RunConfig, model: nn.Module, arch: dict, seconds: float) -> None:
        if self.directory is None:
            return
        result = {"train_seconds": seconds, "key": [str(k) for k in _dense_key(r)]}
        with contextlib.suppress(OSError):  # a cache: the comparison goes on without it
            save_run(self.directory / dense_id(r), result, model, arch)

    def prepare(self, r: RunConfig) -> None:
        """Load the data and the dense model of ``r``'s group now (errors are raised
        again by the cell that needs them), outside any cell's timing. A problem every
        cell shares (``SweepError``) stops the sweep at once."""
        try:
            self.dense_model(r, self.dataset(r))
        except SweepError:
            raise
        except Exception:  # recorded by the cell that needs them
            pass

    def dataset(self, r: RunConfig) -> Dataset:
        from ..pipeline import dataset_for
        from ..storage.integrity import data_fingerprint

        if self.data is None or self.data[0] != _data_key(r):
            self.data = None  # free the old one before loading the next
            try:
                data = dataset_for(r)
            except PrunekitError as e:  # every cell of this data would fail alike
                raise SweepError(str(e)) from None
            if self.store is not None:
                self.store.check_data(_fingerprint_key(r), data_fingerprint(data))
            self.data = (_data_key(r), data)
        return self.data[1]

    def dense_model(self, r: RunConfig, data: Dataset) -> tuple[nn.Module, float]:
        from ..pipeline import dense_config, train_dense

        if self.dense is None or self.dense[0] != _dense_key(r):
            self.dense = None
            stored = self._load_stored(r)
            if stored is not None:
                self.dense = (_dense_key(r), stored)
                self.loaded += 1
            else:
                try:
                    model, arch, seconds = train_dense(dense_config(r), data)
                    self.dense = (_dense_key(r), (model, seconds))
                    self.trained += 1
                    self._store(r, model, arch, seconds)
                except Exception as e:  # every cell of the group then fails with this message
                    self.dense = (_dense_key(r), e)
        value = self.dense[1]
        if isinstance(value, BaseException):
            raise RuntimeError(f"dense training failed: {value}") from value
        return value


def run_cell(cell: Cell, cache: _Cache, run_dir: Path | None) -> dict[str, Any]:
    """Run one cell (dense baseline, registered method or peer); returns its result."""
    from ..pipeline import architecture, run

    data = cache.dataset(cell.run)
    dense = cache.dense_model(cell.run, data)
    if cell.kind != "peer":
        # The spec resolved when the cell was planned (None: the run raises its error).
        spec = cell.spec or cell.run
        return run(spec, dense=dense, data=data, out=run_dir, overwrite=True, progress=False).result
    result, model = run_peer(cell.label, cell.run, data, dense)
    if run_dir is not None:
        try:
            model_files(model, architecture(cell.run, data))
        except Exception as e:  # a shape model.json cannot rebuild: keep the metrics only
            result["saved_model"] = f"not saved: {e}"
            model = None
        save_run(run_dir, result, model, architecture(cell.run, data))
    return result


def _message(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    where = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    loc = f" [{Path(where[0].filename).name}:{where[0].lineno}]" if where else ""
    return f"{type(e).__name__}: {text.splitlines()[0]}{loc}"


def compare(
    cfg: CompareConfig,
    out: str | Path,
    *,
    config_yaml: str,
    config_path: str | None = None,
    extend: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
    console: Console | None = None,
    backend: Any | None = None,
) -> Outcome:
    """Run every unfinished cell of ``cfg`` and record it in ``out/results.sqlite``.

    ``backend`` (e.g. ``ray_backend.RayBackend``) runs the cells elsewhere:
    ``backend.run(todo, cfg, out, finish)`` calls ``finish(cell, result, error, wall_seconds)``
    in this process as each cell ends, so only this process writes the store (and the
    run directories, whose files the backend brings back).
    """
    t0 = time.perf_counter()
    out = Path(out)
    cells = plan(cfg)
    # Problems every cell would share stop the sweep here, before anything is written:
    # an output directory that cannot be written, data that cannot be read.
    check_writable(out)
    cache = _Cache()
    if cells:
        cache.dataset(cells[0].run)
    store = Store(out, cfg.hash(), config_yaml, config_path=config_path, extend=extend)
    try:
        if cache.data is not None:  # the preflight's data, checked against the directory's
            from ..storage.integrity import data_fingerprint

            store.check_data(_fingerprint_key(cells[0].run), data_fingerprint(cache.data[1]))
        cache.store = store
        store.plan_cells([c.id for c in cells])
        if retry_failed:
            store.forget_failed([c.id for c in cells])
        done = store.finished()
        todo = [c for c in cells if c.id not in done]
        console = console or Console(stderr=True)
        cache.directory = out / "dense"  # dense models stored once, reloaded on resume
        failed = 0
        with Progress(*columns("[bold]compare"), console=console, disable=not progress) as bar:
            task = bar.add_task("grid", total=len(cells), completed=len(cells) - len(todo), info="")

            def finish(cell: Cell, result: dict | None, error: str | None, wall: float) -> None:
                nonlocal failed
                label = f"{cell.label} s={cell.run.sparsity:g} seed={cell.run.seed}"
                failed += error is not None
                store.record(
                    cell,
                    command=cell.command(config_path),
                    result=result,
                    error=error,
                    wall_seconds=wall,
                )
                if progress:
                    status = (
                        f"[red]failed[/red] {error}"
                        if error
                        else f"acc {result.get('accuracy', float('nan')):.4f}"
                    )
                    bar.console.print(f"{label}: {status} ({wall:.1f} s)", highlight=False)
                bar.advance(task)

            if backend is not None:
                backend.run(todo, cfg, out, finish)
            for cell in todo if backend is None else ():  # the local backend: here, in order
                label = f"{cell.label} s={cell.run.sparsity:g} seed={cell.run.seed}"
                bar.update(task, info=label)
                run_dir = out / "runs" / cell.id if cfg.save_models else None
                cache.prepare(cell.run)  # dense training / loading: not this cell's time
                start = time.perf_counter()
                result, error = None, None
                try:
                    result = run_cell(cell, cache, run_dir)
                except SweepError:  # shared by every cell: stop, one line
                    raise
                except Exception as e:  # recorded; the sweep goes on
                    error = _message(e)
                finish(cell, result, error, time.perf_counter() - start)
        return sweep_outcome(len(cells), len(todo), failed, t0, store, cache)
    finally:
        store.close()

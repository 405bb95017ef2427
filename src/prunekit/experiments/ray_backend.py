"""Run the cells of ``prunekit compare`` as Ray tasks (``--backend ray``).

- **Dense once.** One Ray task per (model, data, seed, dense budget) trains the dense
  model; its ``(architecture, state_dict, seconds)`` goes into Ray's object store and
  every cell task of that group receives it as an argument (Ray ships it to each node
  once), so the dense model is never retrained per cell -- as with the local backend.
- **One writer.** A cell task returns its result dict, or its error message, plus the
  bytes of its run directory when ``save_models`` is on (written on the worker into a
  temporary directory). The driver writes the run directory and the SQLite row, through
  the runner's ``finish`` callback, as each task ends: resume and no-duplicate
  guarantees are exactly those of the local backend (``store.py``).
- **Worker death.** A task whose worker process dies (killed, out of memory, node lost)
  is retried by Ray up to ``max_retries`` times, then the cell is recorded as failed
  with the reason (e.g. ``WorkerCrashedError: ...``). An exception raised by the cell
  itself is not retried: it is recorded as failed, like the local backend does.

Each cell runs with ``cpus_per_run`` torch threads and reserves ``gpus_per_run`` GPUs
(Ray's scheduling resources). Ray is optional: ``pip install 'prunekit[ray]'``.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..registry import PrunekitError
from ..storage.atomic import write_run
from .plan import Cell, CompareConfig
from .runner import _Cache, _dense_key, _message, run_cell

INSTALL = "pip install 'prunekit[ray]'"
Finish = Callable[[Cell, "dict[str, Any] | None", "str | None", float], None]


def import_ray() -> Any:
    """The ``ray`` module, or a PrunekitError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise PrunekitError(f"--backend ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def check_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail within ``timeout_s`` when nothing listens at ``HOST:PORT`` (or ray://HOST:PORT).

    ``ray.init`` itself keeps retrying an unreachable address for a long time; a plain
    TCP connect to the head's port answers in seconds. ``auto`` is left to Ray.
    """
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise PrunekitError(
            f"--address takes HOST:PORT of a Ray head (e.g. 10.0.0.5:6379), ray://HOST:PORT "
            f"or auto; got {address!r}"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise PrunekitError(
            f"cannot reach a Ray cluster at {address} ({e.strerror or e}); start one with "
            f"`ray start --head --port {port}` there, or check the address"
        ) from None


# -- the tasks (module-level so Ray workers import them by reference) -----------------------
_WORKER_CACHE = _Cache()  # per worker process: the dataset of the last group it ran


def _dense_task(
    cell: Cell, threads: int
) -> tuple[dict[str, Any], dict[str, torch.Tensor], float] | str:
    """Train the dense model of ``cell``'s group; its error message if that fails."""
    from ..pipeline import dense_config, train_dense

    torch.set_num_threads(threads)
    try:
        model, arch, seconds = train_dense(dense_config(cell.run), _WORKER_CACHE.dataset(cell.run))
    except Exception as e:  # every cell of the group then fails with this message
        return _message(e)
    return arch, {k: v.detach().clone() for k, v in model.state_dict().items()}, seconds


def _cell_task(
    cell: Cell,
    dense: tuple[dict[str, Any], dict[str, torch.Tensor], float] | str,
    save: bool,
    threads: int,
) -> tuple[dict[str, Any] | None, str | None, float, dict[str, bytes]]:
    """Run one cell on a worker: (result, error, wall seconds, run-directory files)."""
    from ..models import create_model

    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        if isinstance(dense, str):
            raise RuntimeError(f"dense training failed: {dense}")
        arch, state, seconds = dense
        model = create_model(arch["name"], **arch["kwargs"])
        model.load_state_dict(state)
        _WORKER_CACHE.dense = (_dense_key(cell.run), (model, seconds))
        with tempfile.TemporaryDirectory(prefix="prunekit-cell-") as tmp:
            run_dir = Path(tmp) / cell.id if save else None
            result = run_cell(cell, _WORKER_CACHE, run_dir)
            files = (
                {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
                if run_dir is not None and run_dir.is_dir()
                else {}
            )
        return result, None, time.perf_counter() - start, files
    except Exception as e:  # recorded by the driver; the sweep goes on
        return None, _message(e), time.perf_counter() - start, {}


# -- the backend -------------------------------------------------------------------------------
class RayBackend:
    """Connects at construction (so a bad address fails before anything is written).

    ``address``: None starts a local Ray instance with ``num_cpus`` CPUs (all by default);
    ``HOST:PORT``/``ray://HOST:PORT``/``auto`` joins a running cluster.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_run: float = 1.0,
        gpus_per_run: float = 0.0,
        max_retries: int = 2,
        num_cpus: int | None = None,
    ) -> None:
        if not cpus_per_run > 0:
            raise PrunekitError(f"--cpus-per-run must be > 0, got {cpus_per_run}")
        if gpus_per_run < 0:
            raise PrunekitError(f"--gpus-per-run must be >= 0, got {gpus_per_run}")
        if max_retries < 0:
            raise PrunekitError(f"max_retries must be >= 0, got {max_retries}")
        self.ray = ray = import_ray()
        self.cpus, self.gpus, self.max_retries = (
            float(cpus_per_run),
            float(gpus_per_run),
            max_retries,
        )
        self.threads = max(int(cpus_per_run), 1)
        self.owned = False  # whether this backend started (and so shuts down) the connection
        if address is not None:  # also when connected already: a bad address is an error
            check_address(address)
        if not ray.is_initialized():
            try:
                ray.init(
                    address=address,
                    num_cpus=num_cpus if address is None else None,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level="ERROR",
                )
            except Exception as e:  # ConnectionError, RuntimeError, ... from ray.init
                raise PrunekitError(
                    f"cannot start/join Ray at {address or 'a new local instance'}: "
                    f"{str(e).strip().splitlines()[0] if str(e).strip() else e!r}"
                ) from None
            self.owned = True
        try:
            self._check_resources()
        except PrunekitError:
            self.close()
            raise

    def _check_resources(self) -> None:
        have = self.ray.cluster_resources()
        if self.gpus > 0 and have.get("GPU", 0) < self.gpus:
            raise PrunekitError(
                f"--gpus-per-run {self.gpus:g} but the Ray cluster has "
                f"{have.get('GPU', 0):g} GPU(s); drop the flag or add GPU nodes"
            )
        if have.get("CPU", 0) < self.cpus:
            raise PrunekitError(
                f"--cpus-per-run {self.cpus:g} but the Ray cluster has "
                f"{have.get('CPU', 0):g} CPU(s)"
            )

    def describe(self) -> str:
        have = self.ray.cluster_resources()
        return (
            f"Ray: {have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs, "
            f"{len(self.ray.nodes())} node(s); {self.cpus:g} CPU / {self.gpus:g} GPU per run"
        )

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
        self.owned = False

    def run(self, todo: Sequence[Cell], cfg: CompareConfig, out: Path, finish: Finish) -> None:
        """Submit every cell, then ``finish`` each in the driver as it completes."""
        ray = self.ray
        opts = dict(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.max_retries)
        dense_fn = ray.remote(_dense_task).options(**opts)
        cell_fn = ray.remote(_cell_task).options(**opts)
        dense_refs: dict[tuple, Any] = {}
        pending: dict[Any, Cell] = {}
        for cell in todo:  # planned order: a group's dense task is submitted before its cells
            key = _dense_key(cell.run)
            if key not in dense_refs:
                dense_refs[key] = dense_fn.remote(cell, self.threads)
            pending[cell_fn.remote(cell, dense_refs[key], cfg.save_models, self.threads)] = cell
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(ready[0])
                try:
                    result, error, wall, files = ray.get(ready[0])
                except ray.exceptions.RayError as e:  # the worker died more than max_retries times
                    result, files, wall = None, {}, float("nan")  # when it started is unknown
                    error = (
                        f"{type(e).__name__} after {self.max_retries} retries: "
                        f"{(str(e).strip().splitlines() or ['worker died'])[0]}"
                    )
                if files:  # the whole run directory at once, as the local backend does
                    write_run(out / "runs" / cell.id, files)
                finish(cell, result, error, wall)
        finally:  # interrupted: finished cells are recorded; the rest is cancelled, rerun resumes
            for ref in pending:
                ray.cancel(ref, force=True)


def backend_from_flags(
    backend: str, address: str | None, cpus_per_run: float | None, gpus_per_run: float | None
) -> RayBackend | None:
    """The ``--backend`` of ``prunekit compare``: None for ``local`` (run in this process)."""
    from ..distributed import world_size

    if world_size() > 1:  # every rank would run the whole grid and write the same store
        raise PrunekitError(
            "prunekit compare schedules its own runs (--backend local or ray); "
            "do not launch it with torchrun"
        )
    if backend == "local":
        given = [
            f
            for f, v in (
                ("--address", address),
                ("--cpus-per-run", cpus_per_run),
                ("--gpus-per-run", gpus_per_run),
            )
            if v is not None
        ]
        if given:
            raise PrunekitError(f"{', '.join(given)} only apply with --backend ray")
        return None
    if backend != "ray":
        raise PrunekitError(f"--backend is local or ray, got {backend!r}")
    return RayBackend(
        address or os.environ.get("RAY_ADDRESS") or None,
        cpus_per_run=1.0 if cpus_per_run is None else cpus_per_run,
        gpus_per_run=0.0 if gpus_per_run is None else gpus_per_run,
    )


__all__ = ["RayBackend", "backend_from_flags", "check_address", "import_ray"]

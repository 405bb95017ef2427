"""``prunekit compare --backend ray``: the same rows as the local backend, a killed worker
ends as a retried or failed cell (never a duplicate row), and clear errors for bad input.

Tests that need Ray skip when it is not installed (``pip install 'prunekit[ray]'``); they
share one local Ray instance with 2 CPUs."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY_COMPARISON

from prunekit.cli import main
from prunekit.experiments import compare, read_rows
from prunekit.experiments.plan import config_from_dict, plan
from prunekit.registry import PrunekitError

# Three cells of a few seconds (the tiny comparison of conftest, one method).
GRID = {**TINY_COMPARISON, "name": "ray-tiny", "methods": ["magnitude"], "save_models": True}
COMPARED = ("accuracy", "val_accuracy", "achieved_sparsity", "params_nonzero", "macs_effective")


def _have_ray() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


needs_ray = pytest.mark.skipif(
    not _have_ray(), reason="Ray not installed: pip install 'prunekit[ray]'"
)


@pytest.fixture(scope="module")
def ray_instance():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _rows(out: Path) -> dict[str, dict]:
    return {r["cell_id"]: r for r in read_rows(out)}


def _count(out: Path) -> tuple[int, int]:
    with sqlite3.connect(out / "results.sqlite") as conn:
        return conn.execute("SELECT COUNT(*), COUNT(DISTINCT cell_id) FROM runs").fetchone()


@needs_ray
def test_ray_backend_gives_the_local_rows_and_resumes(tmp_path: Path, ray_instance) -> None:
    from prunekit.experiments.ray_backend import RayBackend

    cfg = config_from_dict(GRID)
    local = compare(cfg, tmp_path / "local", config_yaml="grid", progress=False)
    backend = RayBackend(cpus_per_run=1)
    assert not backend.owned  # joined the test's instance: closing it leaves Ray running
    remote = compare(cfg, tmp_path / "ray", config_yaml="grid", progress=False, backend=backend)
    assert (local.planned, local.ran, local.failed) == (remote.planned, remote.ran, remote.failed)
    assert (remote.planned, remote.ran, remote.failed) == (3, 3, 0)
    a, b = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert a.keys() == b.keys() == {c.id for c in plan(cfg)}
    for cid, row in a.items():
        assert b[cid]["status"] == row["status"] == "ok"
        assert b[cid]["command"] == row["command"]
        for key in COMPARED:  # deterministic runs; torch thread counts differ (1 vs 2)
            assert b[cid][key] == pytest.approx(row[key], abs=0.011), (row["method"], key)
    # The run directories came back from the workers and were written by the driver.
    for cid in a:
        assert sorted(p.name for p in (tmp_path / "ray" / "runs" / cid).iterdir()) == [
            "model.json",
            "model.safetensors",
            "result.json",
        ]
    again = compare(cfg, tmp_path / "ray", config_yaml="grid", progress=False, backend=backend)
    assert (again.skipped, again.ran) == (3, 0)
    assert _count(tmp_path / "ray") == (3, 3)
    backend.close()
    assert ray_instance.is_initialized()


def _parent(pid: int) -> int:
    """The parent pid from /proc/PID/stat (0 when the process is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces


def _ours(pid: int) -> bool:
    """Whether ``pid`` descends from this process (our Ray instance's raylet starts its
    workers): other Ray instances on a shared machine are never touched."""
    me = os.getpid()
    while pid > 1:
        pid = _parent(pid)
        if pid == me:
            return True
    return False


def _kill_first_cell_worker(stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL the first of our worker processes seen running a cell (Ray titles it
    ray::_cell_task)."""
    while not stop.is_set() and not killed:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title == b"ray::_cell_task" and _ours(int(entry.name)):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
                return
        time.sleep(0.02)


@needs_ray
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds workers in /proc")
def test_killed_worker_is_recorded_as_failed_then_retried(tmp_path: Path, ray_instance) -> None:
    from prunekit.experiments.ray_backend import RayBackend

    cfg = config_from_dict({**GRID, "sparsities": [0.5], "save_models": False})  # 2 cells
    out = tmp_path / "ray"
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_cell_worker, args=(stop, killed))
    killer.start()
    try:
        first = compare(
            cfg, out, config_yaml="grid", progress=False, backend=RayBackend(max_retries=0)
        )
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1
    # Every cell has exactly one row: the killed one failed with the reason, the other ran.
    assert (first.planned, first.ran, first.failed) == (2, 2, 1)
    assert _count(out) == (2, 2)
    rows = list(_rows(out).values())
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and "after 0 retries" in failed[0]["error"]
    assert "Worker" in failed[0]["error"] or "died" in failed[0]["error"]
    # Resume: only the failed cell runs again; still one row per cell.
    second = compare(
        cfg,
        out,
        config_yaml="grid",
        progress=False,
        retry_failed=True,
        backend=RayBackend(max_retries=2),
    )
    assert (second.skipped, second.ran, second.failed) == (1, 1, 0)
    assert _count(out) == (2, 2)
    assert {r["status"] for r in _rows(out).values()} == {"ok"}


@needs_ray
def test_gpus_per_run_without_gpu_is_a_clear_error(ray_instance) -> None:
    from prunekit.experiments.ray_backend import RayBackend

    with pytest.raises(PrunekitError, match=r"--gpus-per-run 1 but the Ray cluster has 0 GPU\(s\)"):
        RayBackend(gpus_per_run=1)
    with pytest.raises(PrunekitError, match="--cpus-per-run must be > 0"):
        RayBackend(cpus_per_run=0)
    assert ray_instance.is_initialized()  # the test's instance was left alone


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens


def _cli(tmp_path: Path, *flags: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(GRID))
    with pytest.raises(SystemExit) as e:
        main(["compare", "--config", str(config), "--out", str(tmp_path / "out"), "-q", *flags])
    return e.value.code, capsys.readouterr().err


@needs_ray
def test_unreachable_address_fails_fast_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    t0 = time.perf_counter()
    code, err = _cli(tmp_path, "--backend", "ray", "--address", f"127.0.0.1:{port}", capsys=capsys)
    assert code == 2
    assert f"cannot reach a Ray cluster at 127.0.0.1:{port}" in " ".join(err.split())
    assert time.perf_counter() - t0 < 30  # a sanity bound, not a benchmark: no Ray retry loop
    assert not (tmp_path / "out").exists()
    code, err = _cli(tmp_path, "--backend", "ray", "--address", "nohost", capsys=capsys)
    assert code == 2 and "--address takes HOST:PORT" in err


def test_cluster_flags_need_the_ray_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _cli(tmp_path, "--address", "10.0.0.5:6379", "--gpus-per-run", "1", capsys=capsys)
    assert code == 2
    assert "--address, --gpus-per-run only apply with --backend ray" in " ".join(err.split())
    code, err = _cli(tmp_path, "--backend", "dask", capsys=capsys)
    assert code == 2 and "--backend is local or ray" in err
    assert not (tmp_path / "out").exists()


def test_without_ray_installed_backend_ray_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, err = _cli(tmp_path, "--backend", "ray", capsys=capsys)
    assert code == 2
    assert "pip install 'prunekit[ray]'" in " ".join(err.split())
    assert not (tmp_path / "out").exists()


def test_compare_refuses_to_run_under_torchrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun --nproc_per_node 2 sets
    code, err = _cli(tmp_path, capsys=capsys)
    assert code == 2 and "do not launch it with torchrun" in err
    assert not (tmp_path / "out").exists()

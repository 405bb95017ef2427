"""The comparison harness: config validation, grid planning, the SQLite store, failing
cells, and resume after a SIGKILL mid-sweep."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY_COMPARISON

from prunekit.experiments import compare, load_config, plan, read_rows, write_report
from prunekit.experiments.plan import PEER_NAMES, config_from_dict, restrict
from prunekit.experiments.store import Store
from prunekit.pruning.criteria import CRITERIA
from prunekit.pruning.methods import METHODS, Method
from prunekit.registry import PrunekitError

TINY = TINY_COMPARISON


def tiny(**over) -> dict:
    return {**TINY, **over}


# -- planning --------------------------------------------------------------------------


def test_plan_builds_the_full_grid_once_per_cell():
    cfg = config_from_dict(
        tiny(
            methods=["magnitude", {"name": "random", "granularities": ["weight", "neuron"]}],
            peers=["torch-l1"],
            seeds=[0, 1],
            sparsities=[0.5, 0.8, 0.9],
        )
    )
    cells = plan(cfg)
    # per seed: dense + magnitude x3 + random x {weight, neuron} x3 + torch-l1 x3 = 13
    assert len(cells) == 2 * 13
    assert len({c.id for c in cells}) == len(cells)
    kinds = [c.kind for c in cells]
    assert kinds.count("dense") == 2 and kinds.count("peer") == 6 and kinds.count("method") == 18
    assert {c.label for c in cells} == {
        "dense",
        "magnitude",
        "random/weight",
        "random/neuron",
        "torch-l1",
    }
    assert {c.run.granularity for c in cells if c.label == "random/neuron"} == {"neuron"}
    # the budget is the config's for every cell
    assert {(c.run.epochs, c.run.finetune_epochs) for c in cells} == {(1, 1)}
    # the dense model of each seed comes first
    assert cells[0].kind == "dense" and cells[0].run.seed == 0 and cells[13].run.seed == 1


def test_all_methods_are_discovered_from_the_registry():
    cfg = config_from_dict(tiny(methods="all", exclude=["random"], peers=list(PEER_NAMES)))
    labels = [e.label for e in cfg.methods]
    expected = [n for n in METHODS.names() if n not in ("dense", "random")] + list(PEER_NAMES)
    assert labels == expected


def test_default_config_plans_every_method_at_the_spec_sparsities():
    cfg = load_config()
    assert cfg.sparsities == (0.5, 0.8, 0.9, 0.95, 0.98) and cfg.dataset == "fashion-mnist"
    cells = plan(cfg)
    n_methods = len(METHODS) - 1 + len(PEER_NAMES)  # 'dense' is the baseline row
    # magnitude, wanda and sparsegpt once more without fine-tuning (one-shot rows)
    one_shot = {c.label for c in cells if c.label.endswith("(no fine-tune)")}
    assert {label.split(" ")[0] for label in one_shot} == {"magnitude", "wanda", "sparsegpt"}
    assert len(cells) == 1 + 5 * (n_methods + len(one_shot))
    assert {c.run.finetune_epochs for c in cells if c.label.endswith("(no fine-tune)")} == {0}
    full = load_config(full=True)
    assert full.seeds == (0, 1, 2) and full.budget["epochs"] > cfg.budget["epochs"]
    assert full.hash() != cfg.hash()


class _Captured(Exception):
    pass


def test_cell_command_reproduces_the_run_config(monkeypatch):
    """The stored `prunekit prune ...` command builds exactly the cell's RunConfig."""
    import shlex

    import prunekit.pipeline
    from prunekit.cli import app

    def capture(cfg, **kwargs):
        raise _Captured(cfg)

    monkeypatch.setattr(prunekit.pipeline, "run", capture)
    cfg = config_from_dict(
        tiny(
            methods=[
                {
                    "name": "magnitude",
                    "args": {"cycles": 2},
                    "schedule": "iterative",
                    "budget": {"finetune_lr": 0.01},
                }
            ]
        )
    )
    for cell in plan(cfg):
        # Every run option has a flag now (the schema makes them), so the command alone
        # rebuilds the cell; latency_batch_sizes [1] is one of them.
        argv = shlex.split(cell.command())
        assert argv[:2] == ["prunekit", "prune"]
        assert "--latency-batch-sizes" in argv
        with pytest.raises(_Captured) as got:
            app(args=argv[1:], standalone_mode=False)
        assert got.value.args[0].hash() == cell.run.hash(), cell.command()
    assert "-o cycles=2" in plan(cfg)[1].command()


def test_restrict_makes_a_narrower_config():
    cfg = config_from_dict(tiny(peers=["tp-magnitude"]))
    narrow = restrict(cfg, only=["tp-magnitude"], sparsities=[0.9], seeds=[3])
    cells = plan(narrow)
    assert [(c.label, c.run.sparsity, c.run.seed) for c in cells] == [
        ("dense", 0.0, 3),
        ("tp-magnitude", 0.9, 3),
    ]
    assert narrow.hash() != cfg.hash()
    with pytest.raises(PrunekitError, match="no method nope"):
        restrict(cfg, only=["nope"])


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (tiny(sparsity=[0.5]), "sparsity"),
        (tiny(methods=[{"name": "magnitude", "lamda": 1}]), "lamda"),
        (tiny(budget={"epoch": 1}), "epoch"),
        (tiny(evaluation={"latency": 3}), "latency"),
        (tiny(full={"seed": [1]}), "seed"),
    ],
)
def test_unknown_keys_are_named(data, named):
    with pytest.raises(PrunekitError, match=rf"unknown key\(s\) in .*: {named};"):
        config_from_dict(data, full=True)


def test_unregistered_methods_and_peers_are_named():
    with pytest.raises(PrunekitError, match=r"method\(s\) not registered: bogus, nope"):
        config_from_dict(tiny(methods=["magnitude", "nope", "bogus"]))
    with pytest.raises(PrunekitError, match="unknown peer.*tp-nope"):
        config_from_dict(tiny(peers=["tp-nope"]))
    with pytest.raises(PrunekitError, match="does not take option"):
        config_from_dict(tiny(methods=[{"name": "magnitude", "args": {"zzz": 1}}]))


def test_store_refuses_another_configs_database_unless_extended(tmp_path):
    a = config_from_dict(tiny())
    b = config_from_dict(tiny(seeds=[1]))
    Store(tmp_path, a.hash(), "a").close()
    with pytest.raises(PrunekitError, match="different comparison config.*--extend"):
        Store(tmp_path, b.hash(), "b")
    Store(tmp_path, b.hash(), "b", extend=True).close()
    Store(tmp_path, b.hash(), "b").close()  # once added, b is known here
    Store(tmp_path, a.hash(), "a").close()


def test_store_never_duplicates_a_cell(tmp_path):
    cfg = config_from_dict(tiny())
    cell = plan(cfg)[1]
    store = Store(tmp_path, cfg.hash(), "x")
    assert store.record(
        cell, command="c", result={"accuracy": 0.5, "layers": {"fc1": {}}}, wall_seconds=1.0
    )
    assert not store.record(cell, command="c", result={"accuracy": 0.9}, wall_seconds=1.0)
    store.close()
    rows = read_rows(tmp_path)
    assert len(rows) == 1 and rows[0]["accuracy"] == 0.5
    assert rows[0]["macs_effective"] is None  # a metric the run did not report is NULL
    assert rows[0]["layers"] == {"fc1": {}}


def test_cli_reports_bad_config_in_one_line(tmp_path):
    from prunekit.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(tiny(methods=["nope"], sparsites=[0.5])))
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--config", str(bad), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2


def test_cli_refuses_an_out_dir_of_another_config(tmp_path, capsys):
    from prunekit.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny()))
    Store(tmp_path / "o", "0123456789abcdef", "other").close()
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--config", str(config), "--out", str(tmp_path / "o"), "-q"])
    assert exc.value.code == 2
    assert "--extend" in capsys.readouterr().err
    assert read_rows(tmp_path / "o") == []  # refused before running anything


# -- running -----------------------------------------------------------------------------


@pytest.fixture
def raising_method():
    """A test-only registered method whose criterion raises."""

    def boom(model, modules, ctx):
        raise RuntimeError("criterion exploded on purpose")

    CRITERIA.add("test-boom", boom)
    METHODS.add("test-boom", Method("test-boom", criterion="test-boom"))
    yield "test-boom"
    METHODS._items.pop("test-boom")
    CRITERIA._items.pop("test-boom")


def test_failing_cells_are_recorded_and_the_sweep_goes_on(tmp_path, raising_method):
    cfg = config_from_dict(
        tiny(
            methods=[
                raising_method,
                "magnitude",
                {"name": "magnitude", "label": "magnitude-nan", "budget": {"finetune_lr": 1e30}},
            ],
            peers=["torch-l1", "tp-magnitude"],
            sparsities=[0.5],
        )
    )
    outcome = compare(cfg, tmp_path, config_yaml="x", progress=False)
    assert (outcome.planned, outcome.ran, outcome.failed) == (6, 6, 2)
    rows = {r["method"]: r for r in read_rows(tmp_path)}
    assert rows["test-boom"]["status"] == "failed"
    assert "criterion exploded on purpose" in rows["test-boom"]["error"]
    assert rows["magnitude-nan"]["status"] == "failed"
    assert "loss became" in rows["magnitude-nan"]["error"]
    for ok in ("dense", "magnitude", "torch-l1", "tp-magnitude"):
        assert rows[ok]["status"] == "ok" and 0.0 <= rows[ok]["accuracy"] <= 1.0
    # same dense model, same budget: torch's global L1 and prunekit's global magnitude
    # choose the same weights, so they end identical
    assert rows["torch-l1"]["accuracy"] == rows["magnitude"]["accuracy"]
    assert rows["magnitude"]["achieved_sparsity"] == pytest.approx(0.5, abs=1e-4)
    # Torch-Pruning removes units: the model is smaller, stated against the dense one
    tp_row = rows["tp-magnitude"]
    assert tp_row["params_total"] < tp_row["params_total_original"] == rows["dense"]["params_total"]
    assert tp_row["layers"]["fc1"]["units"] == 150 and tp_row["layers"]["fc3"]["units"] == 10
    assert tp_row["macs_effective"] < tp_row["macs_dense"] == rows["dense"]["macs_dense"]
    # the report renders real rows, failures included
    md, _ = write_report(tmp_path)
    assert "criterion exploded on purpose" in md.read_text()
    # the failed cells are finished: a rerun skips everything; --retry-failed reruns them
    again = compare(cfg, tmp_path, config_yaml="x", progress=False)
    assert (again.skipped, again.ran) == (6, 0)
    retry = compare(cfg, tmp_path, config_yaml="x", progress=False, retry_failed=True)
    assert (retry.ran, retry.failed) == (2, 2)
    assert len(read_rows(tmp_path)) == 6


def _rows(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(str(db), timeout=10)
    try:
        return conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0
    finally:
        conn.close()


def test_resume_after_sigkill_ends_with_exactly_the_planned_rows(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny()))
    out = tmp_path / "out"
    db = out / "results.sqlite"
    planned = len(plan(load_config(config)))
    assert planned == 5
    cmd = [
        sys.executable,
        "-m",
        "prunekit",
        "compare",
        "--config",
        str(config),
        "--out",
        str(out),
        "--quiet",
        "--no-report",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _rows(db) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    at_kill = _rows(db)
    assert 1 <= at_kill < planned  # killed mid-sweep
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{at_kill} already done, {planned - at_kill} run now" in " ".join(done.stdout.split())
    conn = sqlite3.connect(str(db))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = [r[0] for r in conn.execute("SELECT cell_id FROM runs")]
        assert len(ids) == planned == len(set(ids))
        assert {r[0] for r in conn.execute("SELECT status FROM runs")} == {"ok"}
        assert set(ids) == {c.id for c in plan(load_config(config))}
    finally:
        conn.close()


def test_resumed_comparison_reuses_the_stored_dense_model(tmp_path, monkeypatch):
    import prunekit.pipeline

    real_train = prunekit.pipeline.train_dense
    slow = 5.0

    def slow_train(*args, **kwargs):  # dense training that takes at least `slow` seconds
        time.sleep(slow)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(prunekit.pipeline, "train_dense", slow_train)
    cfg = config_from_dict(tiny())
    cells = plan(cfg)
    first = compare(cfg, tmp_path, config_yaml="x", progress=False)
    assert (first.ran, first.dense_trained, first.dense_loaded) == (5, 1, 0)
    before = {r["cell_id"]: r for r in read_rows(tmp_path)}
    # the dense training is nobody's cell time, not even the first cell's
    assert max(r["wall_seconds"] for r in before.values()) < slow
    # the dense row was trained for the same total epochs as every pruned cell
    dense = next(r for r in before.values() if r["kind"] == "dense")
    assert (dense["hyperparams"]["epochs"], dense["hyperparams"]["finetune_epochs"]) == (1, 1)
    assert {(c.run.epochs, c.run.finetune_epochs) for c in cells} == {(1, 1)}
    # stopped after two cells: the other rows are gone; the dense model stays on disk
    conn = sqlite3.connect(str(tmp_path / "results.sqlite"))
    with conn:
        conn.executemany("DELETE FROM runs WHERE cell_id=?", [(c.id,) for c in cells[2:]])
    conn.close()

    def no_training(*args, **kwargs):
        raise AssertionError("the dense model was trained again")

    monkeypatch.setattr(prunekit.pipeline, "train_dense", no_training)
    again = compare(cfg, tmp_path, config_yaml="x", progress=False)
    assert (again.skipped, again.ran, again.failed) == (2, 3, 0)
    assert (again.dense_trained, again.dense_loaded) == (0, 1)
    for r in read_rows(tmp_path):  # the same dense model: the same results, bit for bit
        assert r["accuracy"] == before[r["cell_id"]]["accuracy"]
        assert r["train_seconds"]["dense"] == before[r["cell_id"]]["train_seconds"]["dense"]
    # an unreadable stored model is trained again, not trusted
    stored = next((tmp_path / "dense").iterdir())
    (stored / "model.safetensors").write_bytes(b"garbage")
    monkeypatch.setattr(prunekit.pipeline, "train_dense", real_train)
    with sqlite3.connect(str(tmp_path / "results.sqlite")) as conn:
        conn.execute("DELETE FROM runs WHERE cell_id=?", (cells[-1].id,))
    last = compare(cfg, tmp_path, config_yaml="x", progress=False)
    assert (last.ran, last.dense_trained, last.dense_loaded) == (1, 1, 0)

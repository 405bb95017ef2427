"""``prunekit compare --int8``: int8 figures stored per cell and consistent, old stores
still open and resume, the equal-bytes sentence claims only beyond noise, and a missing
onnxruntime stops before any training."""

from __future__ import annotations

import json
import sqlite3
import sys

import pytest
import yaml
from conftest import TINY_COMPARISON, cli

from prunekit.experiments import compare, read_rows, write_report
from prunekit.experiments.int8report import answer, equal_bytes, verdict
from prunekit.experiments.plan import config_from_dict, restrict
from prunekit.experiments.store import ADDED_COLUMNS, DB_NAME, INT8_COLUMNS

pytest.importorskip("onnxruntime")

TINY = {
    **TINY_COMPARISON,
    "methods": ["magnitude", "l1-filter"],  # weight level (masked) and neuron level (shrunk)
    "sparsities": [0.5],
}


def _run(cfg, out, **kw):
    return compare(cfg, out, config_yaml=yaml.safe_dump(TINY), progress=False, **kw)


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    cfg = restrict(config_from_dict({**TINY, "save_models": True}), int8=True)
    outcome = _run(cfg, out)
    assert outcome.failed == 0 and outcome.ran == 3
    return out


def test_int8_fields_are_stored_and_consistent(int8_dir):
    rows = read_rows(int8_dir)
    assert {r["method"] for r in rows} == {"dense", "magnitude", "l1-filter"}
    for r in rows:
        q = r["int8"]
        assert r["int8_accuracy"] == q["accuracy_int8"]
        assert r["int8_agreement"] == q["agreement_int8_vs_torch"]
        for c, key in INT8_COLUMNS.items():
            assert r[c] == q[key], c
        assert q["bytes_int8_onnx"] < q["bytes_float_onnx"]
        assert q["bytes_int8_onnx_gzip"] < q["bytes_float_onnx_gzip"]
        assert 0.0 <= q["agreement_int8_vs_torch"] <= 1.0
        assert 0.0 <= q["accuracy_int8"] <= 1.0
        assert q["accuracy_torch"] == pytest.approx(r["accuracy"])  # the same model
        assert q["test_examples"] == r["test_examples"] == 100
        assert set(q["latency_ms_int8"]) == set(q["speedup_int8_vs_float"]) == {"1"}
        assert q["timing"]["speedup_statistic"] == "median of per-repeat ratios"
    dense = next(r for r in rows if r["kind"] == "dense")["int8"]
    # over the dense model the cells start from (the dense row trains the same total
    # epochs: other weights, the same shapes)
    assert dense["x_dense_float"] == pytest.approx(1.0, abs=0.01)
    assert dense["bytes_float_onnx"] == dense["bytes_dense_float_onnx"]
    by = {r["method"]: r["int8"] for r in rows}
    # The neuron-level model is physically smaller; the masked one only after compression.
    assert by["l1-filter"]["bytes_float_onnx"] < dense["bytes_float_onnx"]
    assert by["l1-filter"]["shrunk"] is True and all(
        isinstance(q["shrunk"], bool) for q in by.values()
    )
    assert by["magnitude"]["bytes_float_onnx_gzip"] < dense["bytes_float_onnx_gzip"]


def test_int8_accuracy_equals_a_recomputation_through_onnxruntime(int8_dir, tmp_path):
    from prunekit.evaluation.int8 import export_int8_run

    for r in read_rows(int8_dir):
        if r["kind"] == "dense":
            continue
        run_dir = int8_dir / "runs" / r["cell_id"]
        saved = json.loads((run_dir / "result.json").read_text())["int8"]  # in result.json too
        assert saved["accuracy_int8"] == r["int8_accuracy"]
        # `prunekit export RUN --int8`: reloaded from disk, quantized and scored again
        again = export_int8_run(run_dir, tmp_path / f"{r['cell_id']}.onnx")
        assert again["accuracy_int8"] == r["int8_accuracy"]
        assert again["bytes_int8_onnx"] == r["onnx_bytes_int8"]


def test_report_has_the_equal_bytes_part(int8_dir):
    md, html = write_report(int8_dir)
    text = md.read_text()
    assert "## At equal model bytes: pruning alone, int8 alone or both?" in text
    assert "(the int8 dense model's size)" in text
    assert "| pruning + int8 | l1-filter | 0.5 |" in text
    assert (int8_dir / "plots" / "accuracy_vs_bytes.png").stat().st_size > 1000
    assert "id='accuracy_vs_bytes'" in html.read_text()


def test_a_store_without_int8_columns_opens_resumes_and_extends(tmp_path):
    cfg = config_from_dict({**TINY, "methods": ["magnitude"]})
    _run(cfg, tmp_path)
    db = tmp_path / DB_NAME
    conn = sqlite3.connect(db)  # back to a version-1 database
    for column in ADDED_COLUMNS:
        conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    conn.execute("UPDATE meta SET value='1' WHERE key='schema'")
    conn.commit()
    conn.close()
    rows = read_rows(tmp_path)  # readable as it is (a report of an old directory)
    assert len(rows) == 2 and all(r["int8"] is None for r in rows)
    write_report(tmp_path)
    again = _run(cfg, tmp_path)  # resume: nothing left to run, the schema migrated
    assert again.ran == 0 and again.skipped == 2
    conn = sqlite3.connect(db)
    have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    schema = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
    conn.close()
    assert set(ADDED_COLUMNS) <= have and schema == "2"
    more = _run(restrict(cfg, int8=True), tmp_path, extend=True)  # int8 cells beside them
    assert more.ran == 2 and more.failed == 0
    rows = read_rows(tmp_path)
    assert sum(r["int8_accuracy"] is not None for r in rows) == 2 and len(rows) == 4


# -- the equal-bytes sentence on constructed rows -------------------------------------


def _row(method, sparsity, acc, acc_q, b_float, b_int8, kind="method"):
    return {
        "status": "ok",
        "kind": kind,
        "model": "lenet300",
        "method": method,
        "sparsity": sparsity,
        "seed": 0,
        "accuracy": acc,
        "test_examples": 10000,
        "hyperparams": {"finetune_epochs": 1},
        "int8": {
            "accuracy_int8": acc_q,
            "bytes_float_onnx_gzip": b_float,
            "bytes_int8_onnx_gzip": b_int8,
            "test_examples": 10000,
        },
    }


def _rows(pruned_acc: tuple[float, float]) -> list[dict]:
    return [
        _row("dense", 0.0, 0.900, 0.900, 1_000_000, 250_000, kind="dense"),
        _row("magnitude", 0.5, pruned_acc[0], pruned_acc[0], 500_000, 130_000),
        _row("magnitude", 0.9, pruned_acc[1], pruned_acc[1], 100_000, 30_000),
    ]


def test_equal_bytes_near_tie_is_within_noise():
    # se of 0.9 on 10000 images ~0.003: a gap of ~0.002 is far inside 2 combined se
    (first, *_) = answer(_rows((0.899, 0.897)))
    assert "the int8 dense model's size" in first and "within noise" in first
    assert "more accurate" not in first


def test_equal_bytes_clear_gap_names_the_winner():
    (first, *_) = answer(_rows((0.80, 0.70)))
    assert "int8 alone is more accurate, beyond noise" in first
    # pruning alone at 250 kB, interpolated in log(bytes) between 500 kB and 100 kB
    entry = next(e for e in equal_bytes(_rows((0.80, 0.70))) if e["at"] == "int8 alone")
    t = (0.6931471805599453 - 0.0) / 1.6094379124341003  # log(500/250) / log(500/100)
    assert entry["values"]["pruning alone (magnitude)"].mean == pytest.approx(0.80 - 0.10 * t)


def test_verdict_without_a_noise_estimate_claims_nothing():
    from prunekit.experiments.claims import Estimate

    text = verdict({"a": Estimate(0.9, None), "b": Estimate(0.5, 0.01)})
    assert text.startswith("no noise estimate, not claimed")


# -- onnxruntime missing: one line, before any training ---------------------------------


@pytest.fixture
def no_onnxruntime(monkeypatch):
    for name in ("onnxruntime", "onnxruntime.quantization"):
        monkeypatch.setitem(sys.modules, name, None)  # import -> ImportError

    def never(*a, **k):
        raise AssertionError("trained although onnxruntime is missing")

    import prunekit.pipeline

    monkeypatch.setattr(prunekit.pipeline, "train_dense", never)


def test_compare_int8_without_onnxruntime_is_one_line(no_onnxruntime, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    code, _, err = cli(
        "compare", "--config", str(config), "--int8", "--out", str(out), "-q", capsys=capsys
    )
    assert code == 2 and not out.exists()
    assert err.strip().splitlines() == [
        "error: int8 export needs onnx and onnxruntime: pip install 'prunekit[onnx]'"
    ]
    # the config key, and a single run
    config.write_text(yaml.safe_dump({**TINY, "evaluation": {"int8": True}}))
    code, _, err = cli("compare", "--config", str(config), "--out", str(out), capsys=capsys)
    assert code == 2 and "int8 export needs onnx and onnxruntime" in err
    code, _, err = cli(
        "prune", "--dataset", "digits", "--int8", "--out", str(tmp_path / "r"), capsys=capsys
    )
    assert code == 2 and "int8 export needs onnx and onnxruntime" in err


def test_int8_with_the_lm_comparison_is_one_line(capsys):
    code, _, err = cli("compare", "--task", "lm", "--int8", capsys=capsys)
    assert code == 2
    assert "--int8 quantizes vision models" in err and len(err.strip().splitlines()) == 1


def test_smallest_model_within_one_point_per_family():
    from prunekit.experiments.int8report import smallest_within

    (line,) = smallest_within(_rows((0.899, 0.885)))
    # pruning alone: s=0.9 lost 1.5 points, so s=0.5 (500 kB); both: the same points in int8
    assert "pruning alone 500.0 kB = 0.500x (magnitude, s=0.5)" in line
    assert "int8 alone 250.0 kB = 0.250x (dense)" in line
    assert "pruning + int8 130.0 kB = 0.130x (magnitude, s=0.5)" in line

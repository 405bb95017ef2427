"""prunekit.compare on a user's model factory, DataLoaders and loss: the zoo harness's
store, resume and report on user objects."""

from __future__ import annotations

import json
import sqlite3

import pytest
from test_pruner import Net
from test_user_run import loaders

import prunekit
from prunekit import PrunekitError
from prunekit.experiments import read_rows

GRID = dict(
    methods=["magnitude", {"name": "l1", "label": "l1 lam=1e-3", "lam": 1e-3}],
    sparsities=[0.8],
    seeds=[0],
    epochs=2,
    finetune_epochs=1,
    progress=False,
)


def test_compare_on_user_objects_stores_reports_and_resumes(tmp_path):
    train, val, test = loaders()
    out = tmp_path / "cmp"
    bad = {"name": "l1", "label": "l1 bad", "lam": -1.0}  # fails alone; the sweep goes on
    grid = {**GRID, "methods": [*GRID["methods"], bad]}
    o = prunekit.compare(Net, train=train, val=val, test=test, out=out, **grid)
    # per seed: dense + 3 entries x 1 sparsity; one dense model trained for all
    assert (o.planned, o.ran, o.skipped, o.failed) == (4, 4, 0, 1)
    assert (o.dense_trained, o.dense_loaded) == (1, 0)
    rows = {(r["method"], r["sparsity"]): r for r in read_rows(out)}
    assert rows[("l1 bad", 0.8)]["status"] == "failed"
    assert "lambda must be >= 0" in rows[("l1 bad", 0.8)]["error"]
    dense = rows[("dense", 0.0)]
    for label in ("magnitude", "l1 lam=1e-3"):
        for s in (0.8,):
            r = rows[(label, s)]
            assert r["status"] == "ok" and r["dataset"] == "user" and r["model"] == "Net"
            assert r["achieved_sparsity"] == pytest.approx(s, abs=0.005)
            assert r["accuracy_dense"] == dense["accuracy_dense"]  # one shared dense model
            assert r["accuracy"] > 0.5  # chance: 0.25
            assert r["command"].startswith("prunekit.run(Net, train=...")
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert "l1 lam=1e-3" in (out / "report.md").read_text()

    # The same call resumes: nothing runs again.
    grid["report"] = False  # written above; matplotlib costs seconds
    again = prunekit.compare(Net, train=train, val=val, test=test, out=out, **grid)
    assert (again.ran, again.skipped) == (0, 4)
    # Failed cells again: the stored dense model is reloaded, not trained.
    retry = prunekit.compare(
        Net, train=train, val=val, test=test, out=out, retry_failed=True, **grid
    )
    assert (retry.ran, retry.failed, retry.dense_trained, retry.dense_loaded) == (1, 1, 0, 1)
    with sqlite3.connect(out / "results.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 4

    # A cell equals the same run made alone (same dense training, same batches).
    tr, va, te = loaders()
    alone = prunekit.run(
        Net,
        train=tr,
        val=va,
        test=te,
        method="magnitude",
        sparsity=0.8,
        epochs=2,
        finetune_epochs=1,
        seed=0,
        progress=False,
    )
    assert alone.result["accuracy"] == rows[("magnitude", 0.8)]["accuracy"]
    assert rows[("magnitude", 0.8)]["layers"] == json.loads(json.dumps(alone.result["layers"]))


def test_compare_refuses_other_grids_and_data_on_one_directory(tmp_path):
    train, val, test = loaders()
    out = tmp_path / "cmp"
    small = {**GRID, "methods": ["magnitude"], "sparsities": [0.5], "report": False}
    prunekit.compare(Net, train=train, val=val, test=test, out=out, **small)
    other = {**small, "sparsities": [0.9]}
    with pytest.raises(PrunekitError, match="different comparison config.*extend"):
        prunekit.compare(Net, train=train, val=val, test=test, out=out, **other)
    o = prunekit.compare(Net, train=train, val=val, test=test, out=out, extend=True, **other)
    assert (o.ran, o.dense_loaded, o.dense_trained) == (1, 1, 0)  # the new cell only
    _, _, test2 = loaders()
    test2.dataset.tensors[0].mul_(0.5)  # other data: refused
    with pytest.raises(PrunekitError, match="other data"):
        prunekit.compare(Net, train=train, val=val, test=test2, out=out, **small)


def test_compare_bad_input_is_one_line(tmp_path):
    train, val, test = loaders()
    cases = [
        ({"methods": ["nope"]}, "nope"),
        ({"sparsities": [1.5]}, "sparsity"),
        ({"seeds": [-1]}, "seeds"),
        ({"methods": ["magnitude", "magnitude"]}, "given twice"),
        ({"epoch": 3}, "unknown keyword"),
    ]
    for kw, match in cases:
        with pytest.raises(PrunekitError, match=match) as e:
            prunekit.compare(
                Net, train=train, val=val, test=test, out=tmp_path / "x", progress=False, **kw
            )
        assert "\n" not in str(e.value)
    assert not (tmp_path / "x").exists()  # refused before anything is written

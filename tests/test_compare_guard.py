"""Issue 14: `prunekit compare` stops on problems every cell shares, holds a lock on its
directory, refuses a corrupt store and data other than its results were computed on,
and types every value of a comparison config."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY_COMPARISON

from prunekit._idx import write_idx
from prunekit.data import IDX_FILES
from prunekit.experiments.plan import config_from_dict
from prunekit.experiments.store import Store, read_rows
from prunekit.registry import PrunekitError


def compare_cli(tmp_path: Path, config: dict, out: Path, capsys, *extra: str) -> tuple[int, str]:
    from prunekit.cli import main

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    try:
        main(["compare", "--config", str(path), "--out", str(out), "-q", "--no-report", *extra])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


def one_line(code: int, err: str) -> str:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_missing_data_stops_before_the_first_cell(tmp_path: Path, capsys) -> None:
    config = {**TINY_COMPARISON, "dataset": "mnist", "data": {"data_dir": "/nonexistent"}}
    out = tmp_path / "o"
    code, err = compare_cli(tmp_path, config, out, capsys)
    assert "mnist data not found" in one_line(code, err)
    assert not out.exists()  # no store, no report of failures


@pytest.mark.parametrize("where", ["/proc/prunekit-compare", "FILE/o"])
def test_unwritable_out_stops_before_the_first_cell(tmp_path: Path, where: str, capsys) -> None:
    (tmp_path / "FILE").write_text("x")
    out = Path(where) if where.startswith("/") else tmp_path / where
    code, err = compare_cli(tmp_path, TINY_COMPARISON, out, capsys)
    assert str(out) in one_line(code, err)


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"sparsities": ["abc"]}, "sparsities[0] must be a number in (0, 1), got 'abc'"),
        ({"models": [{"a": 1}]}, "models[0] must be a string, got {'a': 1}"),
        ({"seeds": [1.5]}, "seeds[0] must be a whole number"),
        ({"budget": {"lr": 0}}, "budget.lr must be > 0, got 0"),
        ({"evaluation": {"latency_batch_sizes": 5}}, "evaluation.latency_batch_sizes must be"),
        ({"methods": [{"name": "l1", "args": [1, 2]}]}, "methods[0].args must be a mapping"),
        ({"save_models": "no"}, "save_models must be true or false"),
    ],
)
def test_comparison_config_types(tmp_path: Path, over: dict, words: str, capsys) -> None:
    with pytest.raises(PrunekitError) as e:
        config_from_dict({**TINY_COMPARISON, **over})
    assert words in str(e.value)
    code, err = compare_cli(tmp_path, {**TINY_COMPARISON, **over}, tmp_path / "o", capsys)
    assert words in one_line(code, err)


def test_second_compare_on_the_same_dir_names_the_holder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    holder = Store(out, "0123456789abcdef", "x")  # a running comparison holds the lock
    try:
        code, err = compare_cli(tmp_path, TINY_COMPARISON, out, capsys)
        line = one_line(code, err)
        assert "in use by another prunekit compare" in line
        assert f"pid {os.getpid()} on {socket.gethostname()}, started" in line
    finally:
        holder.close()
    Store(out, "0123456789abcdef", "x").close()  # released: the next one gets it


def test_garbage_store_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.sqlite").write_bytes(b"this is not sqlite" * 100)
    code, err = compare_cli(tmp_path, TINY_COMPARISON, out, capsys)
    assert "is not a prunekit results database" in one_line(code, err)
    with pytest.raises(PrunekitError, match="not a prunekit results database"):
        read_rows(out)


def _idx_dir(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.mkdir()
    for name, n in zip(IDX_FILES, (200, 200, 50, 50), strict=True):
        shape = (n, 28, 28) if "images" in name else (n,)
        write_idx(
            path / name,
            rng.integers(0, 256 if "images" in name else 10, size=shape).astype(np.uint8),
        )
    return path


def test_resume_with_other_data_is_refused(tmp_path: Path, capsys) -> None:
    a, b = _idx_dir(tmp_path / "a", 0), _idx_dir(tmp_path / "b", 1)
    base = {
        **TINY_COMPARISON,
        "dataset": "mnist",
        "methods": ["magnitude"],
        "sparsities": [0.5],
        "data": {"limit": 200, "test_limit": 50},
    }
    out = tmp_path / "o"
    code, err = compare_cli(
        tmp_path, {**base, "data": {**base["data"], "data_dir": str(a)}}, out, capsys
    )
    assert code == 0, err
    rows = read_rows(out)
    code, err = compare_cli(
        tmp_path,
        {**base, "data": {**base["data"], "data_dir": str(b)}},
        out,
        capsys,
        "--retry-failed",
    )
    assert "results computed on other data" in one_line(code, err)
    assert len(read_rows(out)) == len(rows)

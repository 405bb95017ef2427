"""The CLI: the contract of issue 2, and one-line errors with non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_fashion
from safetensors.torch import load_file


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "prunekit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


@needs_fashion
def test_prune_contract_fashion_mnist(tmp_path: Path) -> None:
    out = tmp_path / "DIR"
    p = cli(
        "prune",
        "--model",
        "lenet300",
        "--dataset",
        "fashion-mnist",
        "--method",
        "magnitude",
        "--sparsity",
        "0.9",
        "--epochs",
        "2",
        "--finetune-epochs",
        "1",
        "--seed",
        "0",
        "--out",
        str(out),
        "--latency-repeats",
        "3",
        "-q",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "result.json").read_text())
    assert res["model"] == "lenet300" and res["method"] == "magnitude"
    assert abs(res["achieved_sparsity"] - 0.9) < 1e-4
    assert res["accuracy"] > 0.8
    t = load_file(str(out / "model.safetensors"))
    ws = [v for k, v in t.items() if k.endswith("weight")]
    zeros = sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)
    assert zeros == pytest.approx(res["achieved_sparsity"], abs=1e-12)
    assert json.loads((out / "model.json").read_text())["name"] == "lenet300"
    ev = cli("eval", str(out), "--json", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(res["accuracy"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prune", "--sparsity", "1.5"], "sparsity must be in [0, 1)"),
        (["prune", "--model", "nope"], "unknown model 'nope'; known:"),
        (["prune", "--dataset", "nope"], "unknown dataset 'nope'; known:"),
        (["prune", "--method", "nope"], "unknown method 'nope'; known:"),
        (["prune", "--dataset", "mnist", "--data-dir", "/nonexistent"], "mnist"),
        (["prune", "-o", "novalue"], "KEY=VALUE"),
        (["eval", "/nonexistent/run"], "not a directory"),
    ],
)
def test_bad_input_one_line_error(tmp_path: Path, args: list[str], message: str) -> None:
    p = cli(*args, "--quiet", cwd=tmp_path) if args[0] == "prune" else cli(*args, cwd=tmp_path)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert message in lines[0]
    assert not any(tmp_path.iterdir())


def test_list_names_everything(tmp_path: Path) -> None:
    p = cli("list", cwd=tmp_path)
    assert p.returncode == 0
    for name in ("lenet300", "lenet5", "fashion-mnist", "magnitude", "l1-filter", "random"):
        assert name in p.stdout

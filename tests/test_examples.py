"""Every script in examples/ runs (small settings) and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# script -> (arguments that keep it to seconds, text its output must contain)
RUNS = {
    "own_cnn_pruner.py": (["--epochs", "2"], "l0: sparsity 0.800"),
    "transformers_gpt2.py": (["--steps", "20"], "reloaded outputs equal: True"),
    "shrink_and_save.py": ([], "reloaded outputs equal: True"),
}


def test_every_example_is_exercised():
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(RUNS)


@pytest.mark.parametrize("script", sorted(RUNS))
def test_example_runs(script: str) -> None:
    if script.startswith("transformers"):
        pytest.importorskip("transformers")
    args, expect = RUNS[script]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert expect in out.stdout, out.stdout[-2000:]

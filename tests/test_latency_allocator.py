"""The evaluation's latency is timed under the latency tables' steady allocator, and
result.json says which allocator was in effect."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit import RunConfig
from prunekit.evaluation import allocator
from prunekit.pipeline import latency_with_reference

# A fresh process (the setting is process-wide and sticky): nothing has made the
# allocator steady before the run, which times no latency table; the timing itself
# must find it steady, and result.json must say so.
RUN = """
import json, sys
from prunekit import RunConfig, run
from prunekit import pipeline
from prunekit.evaluation import allocator

before = allocator._steady
seen = []
timed = pipeline.speedup_with_spread

def spy(*args, **kwargs):
    seen.append(allocator._steady)
    return timed(*args, **kwargs)

pipeline.speedup_with_spread = spy
cfg = RunConfig(model="lenet300", dataset="synthetic", epochs=1, finetune_epochs=1,
                sparsity=0.5, latency_repeats=1, latency_batch_sizes=[1], noise_sigmas=[],
                noise_densities=[])
run(cfg, out=sys.argv[1], progress=False)
print(json.dumps({"before": before, "seen": seen}))
"""


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_run_times_latency_under_steady_allocator_and_records_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(out)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state == {"before": None, "seen": [True]}
    result = json.loads((out / "result.json").read_text())
    assert result["latency_allocator"] == "steady"


def test_allocator_recorded_default_where_it_cannot_be_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(allocator, "_steady", False)  # as off glibc: mallopt not applied
    torch.manual_seed(0)
    model, dense = nn.Linear(4, 2), nn.Linear(4, 2)
    cfg = RunConfig(model="lenet300", latency_repeats=1, latency_batch_sizes=[1])
    alone = latency_with_reference(model, None, (4,), cfg)
    assert alone["latency_allocator"] == "default" and set(alone["latency_ms"]) == {"1"}
    paired = latency_with_reference(model, dense, (4,), cfg)
    assert paired["latency_allocator"] == "default" and set(paired["speedup"]) == {"1"}

"""benchmarks/beat_peer.py: an interrupted run keeps its finished seeds and resumes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import beat_peer  # noqa: E402

CMD = "python benchmarks/beat_peer.py --model lenet5 --seeds 0 1 2 --out x.md"


def fake_seed(calls: list[int], fail_at: int | None = None):
    def run(args, seed):
        if seed == fail_at:
            raise KeyboardInterrupt  # the run is stopped during this seed
        calls.append(seed)
        return {"seed": seed, "dense": {"test": 80.0 + seed, "val": 81.0}, "cells": []}

    return run


def test_interrupted_run_keeps_finished_seeds_and_resume_runs_only_the_rest(tmp_path, monkeypatch):
    out = tmp_path / "x.md"
    args = SimpleNamespace(seeds=[0, 1, 2], out=str(out), resume=False)
    calls: list[int] = []
    monkeypatch.setattr(beat_peer, "run_seed", fake_seed(calls, fail_at=2))
    with pytest.raises(KeyboardInterrupt):
        beat_peer.run_seeds(args, CMD)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [r["seed"] for r in saved["results"]] == [0, 1]
    assert saved["pending"] == [2]

    calls.clear()
    monkeypatch.setattr(beat_peer, "run_seed", fake_seed(calls))
    args.resume = True
    results, _ = beat_peer.run_seeds(args, CMD + " --resume")
    assert calls == [2]  # seeds 0 and 1 were not rerun
    assert [r["seed"] for r in results] == [0, 1, 2]
    assert results[1]["dense"]["test"] == 81.0
    final = json.loads(out.with_suffix(".json").read_text())
    assert "pending" not in final and len(final["results"]) == 3


def test_resume_refuses_a_json_written_by_another_command(tmp_path, monkeypatch):
    out = tmp_path / "x.md"
    other = {"command": CMD.replace("--seeds", "--limit 15000 --seeds"), "results": []}
    out.with_suffix(".json").write_text(json.dumps({**other, "took": 1.0, "date": "d"}))
    monkeypatch.setattr(beat_peer, "run_seed", fake_seed([]))
    args = SimpleNamespace(seeds=[0], out=str(out), resume=True)
    with pytest.raises(SystemExit, match="another command"):
        beat_peer.run_seeds(args, CMD + " --resume")

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
    def run(args, seed, on_cell=None):
        out = {"seed": seed, "dense": {"test": 80.0 + seed, "val": 81.0}, "cells": []}
        out["cells"].append({"label": "peer", "sparsity": 0.98, "test": 1.0, "val": 1.0})
        on_cell(out)
        if seed == fail_at:
            raise KeyboardInterrupt  # the run is stopped during this seed, after one cell
        calls.append(seed)
        return out

    return run


def test_interrupted_run_keeps_finished_seeds_and_resume_runs_only_the_rest(tmp_path, monkeypatch):
    out = tmp_path / "x.md"
    args = SimpleNamespace(seeds=[0, 1, 2], out=str(out), resume=False)
    calls: list[int] = []
    monkeypatch.setattr(beat_peer, "run_seed", fake_seed(calls, fail_at=2))
    with pytest.raises(KeyboardInterrupt):
        beat_peer.run_seeds(args, CMD)
    saved = json.loads(out.with_suffix(".json").read_text())
    # seed 2's finished cell is kept, and seed 2 is marked unfinished
    assert [r["seed"] for r in saved["results"]] == [0, 1, 2]
    assert len(saved["results"][2]["cells"]) == 1
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


def seed_result(seed: int, peer: float, lamp: float, sparsities, same: float | None):
    cells = [
        {"label": lab, "sparsity": s, "seconds": 1.0, "test": acc - s, "val": acc - s}
        for s in sparsities
        for lab, acc in (("peer", peer), ("lamp", lamp))
    ]
    r = {"seed": seed, "dense": {"test": 90.0, "val": 90.0}, "cells": cells}
    if same is not None:
        r["dense_same_epochs"] = {"test": same, "val": same}
    return r


def test_report_of_a_merged_run_stopped_early_uses_the_seeds_that_have_each_cell():
    # seed 2 finished 0.98 only and has no same-epochs dense model
    results = [
        seed_result(0, 86.0, 87.0, [0.98, 0.99], same=91.0),
        seed_result(1, 86.0, 88.0, [0.98, 0.99], same=92.0),
        seed_result(2, 85.0, 89.0, [0.98], same=None),
    ]
    args = SimpleNamespace(
        model="lenet5", sparsities=[0.98, 0.99], dense_epochs=6, finetune_epochs=6,
        lr_factor=1.0, limit=None, threads=1, notes=False, notes_key=None,
    )  # fmt: skip
    text = beat_peer.report(args, results, 60.0, "python benchmarks/beat_peer.py", "d")
    # 0.98: gains 1, 2, 4 over three seeds; 0.99: gains 1, 2 over seeds 0 and 1
    assert "- 0.98 (test), against peer: best = lamp, 2.33 ± 1.53 pt (≥ 1 pt: met)." in text
    assert "- 0.99 (val), against peer: best = lamp, 1.50 ± 0.71 pt (2 of 3 seeds)" in text
    # same-epochs dense 91.5 on seeds 0, 1; lamp @ 0.99 there (87 + 88) / 2 - 0.99 = 86.51
    assert "Only 2 of 3 seeds have it" in text
    assert "- 0.99 (test): best = lamp, 4.99 pt below the same-epochs dense" in text
    assert "- peer @ 0.98: val 6.48 ± 0.71, test 6.48 ± 0.71." in text
    # headroom: same-epochs dense - peer over seeds 0, 1 = (91 + 92) / 2 - (86 - 0.98)
    assert "- peer @ 0.98 (test): headroom 6.48 pt; a row 1 pt above the peer would still " in text
    assert "be 5.48 pt below the same-epochs dense model." in text


def test_headroom_under_one_point_says_a_1pt_gain_beats_the_dense_model():
    # peer 0.5 pt below the same-epochs dense: beating it by 1 pt means 0.5 pt above dense
    results = [seed_result(0, 91.48, 91.0, [0.98], same=91.0)]
    args = SimpleNamespace(
        model="lenet5", sparsities=[0.98], dense_epochs=6, finetune_epochs=10,
        lr_factor=1.0, limit=None, threads=1, notes=False, notes_key=None,
    )  # fmt: skip
    text = beat_peer.report(args, results, 60.0, "python benchmarks/beat_peer.py", "d")
    assert "- peer @ 0.98 (val): headroom 0.50 pt; a row 1 pt above the peer would be " in text
    assert "0.50 pt ABOVE the same-epochs dense model." in text


def test_merge_of_a_part_stopped_early_reports_its_finished_cells(tmp_path, monkeypatch):
    cmd = "python benchmarks/beat_peer.py --model lenet5 --dense-epochs 6 --finetune-epochs 6"
    full = {"command": cmd + " --seeds 0", "date": "d", "took": 5.0}
    full["results"] = [seed_result(0, 86.0, 87.0, [0.98, 0.99], same=91.0)]
    stopped = {"command": cmd + " --seeds 1", "date": "d", "took": 3.0, "pending": [1]}
    stopped["results"] = [seed_result(1, 86.0, 88.0, [0.98], same=None)]
    parts = []
    for i, part in enumerate((full, stopped)):
        parts.append(tmp_path / f"p{i}.json")
        parts[-1].write_text(json.dumps(part))
    out = tmp_path / "merged.md"
    argv = ["beat_peer.py", "--merge", *map(str, parts), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    beat_peer.main()
    text = out.read_text()
    assert "Stopped before the end: seed(s) [1]" in text
    assert json.loads(out.with_suffix(".json").read_text())["pending"] == [1]
    # 0.98 over both seeds (gains 1 and 2), 0.99 over seed 0 only
    assert "- 0.98 (val), against peer: best = lamp, 1.50 ± 0.71 pt (≥ 1 pt: met)." in text
    assert "- 0.99 (val), against peer: best = lamp, 1.00 ± 0.00 pt (1 of 2 seeds)" in text


def test_report_without_the_peer_row_has_no_gain_or_headroom_section():
    # an exploration of prunekit rows only: the within-1-pt target, nothing against a peer
    r = seed_result(0, 86.0, 87.0, [0.99], same=91.0)
    r["cells"] = [c for c in r["cells"] if c["label"] != "peer"]
    args = SimpleNamespace(
        model="lenet5", sparsities=[0.99], dense_epochs=6, finetune_epochs=10,
        lr_factor=1.0, limit=None, threads=1, notes=False, notes_key=None,
    )  # fmt: skip
    text = beat_peer.report(args, [r], 60.0, "python benchmarks/beat_peer.py", "d")
    assert "above the peer" not in text and "Headroom" not in text
    assert "- 0.99 (test): best = lamp, 4.99 pt below the same-epochs dense" in text

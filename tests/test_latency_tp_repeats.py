"""benchmarks/latency_tp_repeats.py render: pooling across seeds, one seed lacking an arm."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from latency_tp_repeats import render, t95  # noqa: E402


def _run(seed: int, arms: dict[str, list[float]], dense: float = 0.86) -> dict:
    full = {}
    for name, accs in arms.items():
        full[name] = {"accs": accs, "measured_speedup": 2.0, "widths": [8, 16]}
        if name == "tp":
            full[name]["ratio"] = 0.475
    return {
        "model": "resnet20",
        "seed": seed,
        "budget": {"limit": 5000, "epochs": 4, "finetune_epochs": 2, "batch_size": 64}
        | {"test_limit": 2000, "repeats": 3},
        "rows": [
            {
                "kind": "target",
                "target": 2.0,
                "acc_dense": dense,
                "arms": full,
                "recheck": {n: {"median": 2.0} for n in arms},
            }
        ],
    }


def test_t95_falls_back_to_the_wider_quantile():
    assert t95(5) == 2.57
    assert t95(11) == 2.201  # 4 seeds x 3 fine-tunes
    assert t95(22) == 2.086  # not listed: df 20's, wider than the true 2.074
    assert t95(100) == 2.042


def test_render_pools_seeds_and_names_a_seed_without_an_arm(tmp_path):
    files = [tmp_path / "a.json", tmp_path / "b.json"]
    # seed 0 has both scorings; seed 1 (like seeds 2-3 of the real runs) only tplike
    files[0].write_text(
        json.dumps(
            _run(
                0,
                {
                    "tplike": [0.80, 0.81, 0.82],
                    "deployed": [0.79, 0.79, 0.79],
                    "tp": [0.78, 0.79, 0.80],
                },
                dense=0.795,  # 0.5 pt above TP: +1 pt over TP needs a model above dense
            )
        )
    )
    files[1].write_text(
        json.dumps(_run(1, {"tplike": [0.85, 0.85, 0.85], "tp": [0.84, 0.84, 0.85]}))
    )
    out = tmp_path / "out.md"
    render(files, out, "cmd", "")
    text = out.read_text()
    assert "Seeds: 0, 1." in text
    assert "Over seeds 0, 1 (all pairs" in text
    # tplike - TP pairs: 2, 2, 2 (seed 0) and 1, 1, 0 (seed 1): mean 4/3, std sqrt(2/3);
    # half width 2.57 * sqrt(2/3) / sqrt(6) = 2.57 / 3
    assert (
        "- resnet20 2x, ours (tplike) - TP: +1.33 ± 0.82 pt over 6 pairs, 95 % interval "
        "[+0.48, +2.19]: ours better beyond noise; goal >= +1 pt met by the mean" in text
    )
    # deployed - TP: 1, 0, -1 from seed 0 only: half width 4.30 / sqrt(3)
    assert (
        "- resnet20 2x, ours (deployed) - TP: +0.00 ± 1.00 pt over 3 pairs (seed 0 only), "
        "95 % interval [-2.48, +2.48]: within noise; goal >= +1 pt NOT met" in text
    )
    assert (
        "- resnet20 2x, ours (tplike) - ours (deployed), paired by data order: +2.00 ± 1.00 pt "
        "over 3 pairs (seed 0 only), 95 % interval [-0.48, +4.48]: within noise" in text
    )
    # the per-seed headroom line of the seed lacking an arm is still there
    assert "- seed 1 2x: dense - TP = +1.7 pt; best ours (tplike) - dense = -1.0 pt" in text
    assert "- seed 0 2x: dense - TP = +0.5 pt, so +1 pt over TP needs a pruned model 0.5 pt" in text
    # seed means 2 and 2/3: std (4/3) / sqrt(2), half width 12.71 * std / sqrt(2) = 12.71 * 2/3
    assert (
        "- resnet20 2x, ours (tplike) - TP: seed means +2.00, +0.67 pt (seeds 0, 1); "
        "+1.33 ± 0.94 pt over 2 seeds, 95 % interval [-7.14, +9.81]: within noise; "
        "goal >= +1 pt met by the mean" in text
    )
    # deployed has one seed: no seed-level line, and no reading (not in every seed)
    assert "ours (deployed) - TP: seed means" not in text
    assert text.rstrip().endswith(
        "Reading: at 2x, ours (tplike) - TP >= +1 pt: over the pairs met by the mean, not "
        "beyond noise, over the seed means met by the mean, not beyond noise. Where dense - TP "
        "< 1 pt (seed 0 2x), beating TP by 1 pt needs a pruned model above the dense one."
    )

"""benchmarks/latency_predictor.py --render: a recorded validate run renders with its
load average, its within-10 % counts and the note given on the command line."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import latency_predictor as lp  # noqa: E402

RAW = ROOT / "benchmarks/results/latency_predictor_quiet_raw/validate-lenet5-quiet1-b1.json"


def test_render_of_a_recorded_validate_run_carries_note_load_and_counts():
    text = lp.render([RAW], "the command", note="quiet machine")
    assert "Command: `the command`" in text
    assert "\nNote: quiet machine\n" in text
    assert "## lenet5, batch 1: predicted vs measured" in text
    # the load average recorded in the JSON, and the counts of the recorded rows
    assert "[0.68, 0.93, 1.48] -> [0.71, 0.93, 1.47]" in text
    assert "- within 10 %: **10/13** (latency, reference units), 5/13 (speed-up" in text


def test_render_without_note_has_no_note_line():
    assert "Note:" not in lp.render([RAW], "c").split("## ")[0]

"""Latency-table entries measured in several passes (median of agreeing samples) and
whole-model calibration over several rounds, with scripted (fake) timings."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from prunekit.latency import LatencyModel
from prunekit.latency.table import TableCache, settled, table_key
from prunekit.registry import PrunekitError


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 12, 3), nn.Flatten(), nn.Linear(12 * 16, 3)
    )


def test_settled_needs_agreeing_samples_by_hand():
    assert not settled([1.0])  # one sample is never enough with two passes
    assert settled([1.0, 1.05])  # range 0.05 / median 1.025 < 10 %
    assert not settled([1.0, 1.5])  # range 0.5 / 1.25 = 40 %
    # a third sample outvotes the outlier: median 1.04, nearest 1.0 -> 0.04 / 1.04
    assert settled([1.0, 1.5, 1.04])
    # median 1.3, nearest 1.0 (tie with 1.6 goes to the first): 0.3 / 1.3 = 23 %
    assert not settled([1.0, 1.3, 1.6])
    assert settled([1.0], min_passes=1)
    assert settled([1.0, 1.25], agree=0.25) and not settled([1.0, 1.25], agree=0.2)


def test_cache_keeps_samples_and_reads_old_files(tmp_path):
    key = table_key("eager", 1, 1)
    c = TableCache(key, tmp_path)
    for v in (3.0, 1.0, 2.0):
        c.add("x", v)
    assert c.entries["x"] == 2.0 and c.samples["x"] == [3.0, 1.0, 2.0]
    c.save()
    again = TableCache(key, tmp_path)
    assert again.entries == {"x": 2.0} and again.samples == {"x": [3.0, 1.0, 2.0]}
    # a file written before samples were kept: each entry is one sample
    c.path.write_text(json.dumps({"key": key, "entries": {"y": 1.5}}))
    old = TableCache(key, tmp_path)
    assert old.entries == {"y": 1.5} and old.samples == {"y": [1.5]}


class Script:
    """Fake ``_time_layer``: the k-th measurement of a signature returns
    ``values[sig][k]`` (default 1.0 always), and every call is logged."""

    def __init__(self, values: dict[str, list[float]] | None = None) -> None:
        self.values = values or {}
        self.count: dict[str, int] = {}
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, layer, todo):
        self.calls.append((layer.name, sorted(todo)))
        out = {}
        for sig in todo:
            k = self.count.get(sig, 0)
            self.count[sig] = k + 1
            seq = self.values.get(sig, [1.0])
            out[sig] = seq[min(k, len(seq) - 1)]
        return out


def test_entries_are_measured_in_passes_until_they_agree(tmp_path):
    lm = LatencyModel(tiny(), (1, 8, 8), batch_size=1, cache_dir=tmp_path, repeats=1)
    first = lm.layers[0].signature(1, 4)  # conv0 at its full width
    # an outlier first (a burst of load), then two agreeing values
    script = Script({first: [2.0, 1.0, 1.04]})
    lm._time_layer = script
    n_entries = 4 + 4 * 3 + 3  # conv0: 1x4 widths, conv2: 4 x grid(12)=3, linear: 3
    assert lm.measure_table() == n_entries
    assert len(lm.cache.entries) == n_entries
    assert lm.cache.samples[first] == [2.0, 1.0, 1.04]
    assert lm.cache.entries[first] == 1.04  # the median, not the outlier
    assert all(script.count[s] == 2 for s in lm.cache.entries if s != first)
    # pass 1 times every layer, pass 2 every layer again, pass 3 only the disagreeing one
    assert [name for name, _ in script.calls] == ["0", "2", "4", "0", "2", "4", "0"]
    assert script.calls[-1] == ("0", [first])
    # settled entries are not measured again
    assert lm.measure_table() == 0 and len(script.calls) == 7


def test_an_entry_that_never_agrees_stops_at_max_passes(tmp_path):
    lm = LatencyModel(tiny(), (1, 8, 8), batch_size=1, cache_dir=tmp_path, max_passes=3)
    sig = lm.layers[2].signature(192, 3)  # the Linear at full width
    lm._time_layer = Script({sig: [1.0, 2.0, 4.0, 8.0]})
    lm.measure_table()
    assert lm.cache.samples[sig] == [1.0, 2.0, 4.0] and lm.cache.entries[sig] == 2.0
    lm.measure_table()  # final at max_passes: not measured a fourth time
    assert lm.cache.samples[sig] == [1.0, 2.0, 4.0]


def test_old_single_sample_entries_are_rechecked(tmp_path):
    lm = LatencyModel(tiny(), (1, 8, 8), batch_size=1, cache_dir=tmp_path)
    sig = lm.layers[0].signature(1, 2)
    lm._time_layer = Script()
    lm.measure_table()
    # a stale cache: one too-slow sample of one entry, as files before passes had
    lm.cache.entries[sig], lm.cache.samples[sig] = 1.6, [1.6]
    lm.cache.save()
    again = LatencyModel(tiny(), (1, 8, 8), batch_size=1, cache_dir=tmp_path)
    again._time_layer = script = Script({sig: [1.0, 1.0]})
    assert again.measure_table() == 0  # nothing new, but the stale entry re-measured
    assert again.cache.samples[sig] == [1.6, 1.0, 1.0] and again.cache.entries[sig] == 1.0
    assert script.calls == [("0", [sig]), ("0", [sig])]


def test_pass_counts_are_checked():
    with pytest.raises(PrunekitError, match="min_passes"):
        LatencyModel(tiny(), (1, 8, 8), batch_size=1, min_passes=3, max_passes=2)


def test_calibration_takes_the_median_round_and_predicts_by_hand(tmp_path):
    lm = LatencyModel(tiny(), (1, 8, 8), batch_size=1, cache_dir=tmp_path, repeats=1)
    # every table entry = c_in + c_out: hand-checkable layer sums
    values = {}
    for layer in lm.layers:
        for c_in, c_out in lm._options(layer):
            values[layer.signature(c_in, c_out)] = [float(c_in + c_out)]
    lm._time_layer = Script(values)
    configs = lm.calibration_widths(4, 0)
    rounds = iter([2.0, 1.0, 5.0])  # round factors: the median round is the first

    def fake_measure(models, repeats=15, clock=None):
        f = next(rounds)
        out = {k: 2.0 * lm.layer_ms(configs[k]) * f for k in models}
        return {**out, "ref_ms": 0.1 * f}

    lm.measure = fake_measure
    report = lm.calibrate(n_random=4, seed=0, rounds=3)
    assert report["ref_ms"] == pytest.approx(0.2)
    assert report["measured"]["dense"] == pytest.approx(2.0 * 2.0 * lm.layer_ms(lm.full))
    # the measurements are exactly 4 x the layer sum: a = 4, every other term 0
    # (up to least-squares rounding on near-collinear features)
    assert report["scale"] == pytest.approx(4.0, rel=1e-4)
    # dense tiny: conv0 1->4 (5), conv2 4->12 (16), linear 192->3 (195): 216 -> 864
    assert lm.layer_ms(lm.full) == 216.0
    assert lm.predict(lm.full) == pytest.approx(864.0, rel=1e-4)
    with pytest.raises(PrunekitError, match="rounds"):
        lm.calibrate(rounds=0)


def test_compare_per_call_median_times_every_candidate():
    from prunekit.latency.table import compare

    models = {"a": nn.Linear(4, 4), "b": nn.Linear(4, 8)}
    ms = compare(models, (4,), 2, repeats=3, warmup=1, min_time_s=0.0, per_call_median=True)
    assert set(ms) == {"a", "b"} and all(v > 0 for v in ms.values())


def test_loo_selection_keeps_only_the_features_that_predict_by_hand():
    from prunekit.latency.table import fit_selected

    x0 = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype=torch.float64)
    v1 = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7, 0.2], dtype=torch.float64)
    ones = torch.ones(6, dtype=torch.float64)
    a_mat = torch.stack([x0, v1, ones], dim=1)
    # y = 2 x0 exactly: the layer sum alone has zero leave-one-out error and is smallest
    coef, cols, err = fit_selected(a_mat, 2 * x0)
    assert cols == [0] and err == pytest.approx(0.0, abs=1e-9)
    assert coef.tolist() == pytest.approx([2.0, 0.0, 0.0])
    # y = 2 x0 + 3: the intercept is needed, the volume term is not
    coef, cols, err = fit_selected(a_mat, 2 * x0 + 3)
    assert cols == [0, 2] and err == pytest.approx(0.0, abs=1e-9)
    assert coef.tolist() == pytest.approx([2.0, 0.0, 3.0])


def test_calibration_select_is_checked(tmp_path):
    lm = LatencyModel(tiny(), (1, 8, 8), batch_size=1, cache_dir=tmp_path)
    with pytest.raises(PrunekitError, match="select"):
        lm.calibrate(select="best")


_FAULTS = """
import resource, sys, torch
if sys.argv[1] == "steady":
    from prunekit.latency.timing import steady_allocator
    assert steady_allocator()
for _ in range(3):
    torch.ones(1 << 20)
before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
for _ in range(10):
    torch.ones(1 << 20)
print(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
"""


def test_steady_allocator_stops_page_faults_on_reused_tensors():
    import os
    import platform
    import subprocess
    import sys

    from prunekit.latency.timing import steady_allocator

    if platform.system() != "Linux":
        pytest.skip("glibc mallopt only")
    assert steady_allocator() is True and steady_allocator() is True  # idempotent
    assert table_key("eager", 1, 1)["allocator"] == "steady"

    def faults(mode: str) -> int:
        # a fresh process each: the heap of this one is shaped by every earlier test
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS, mode],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        return int(out.stdout.split()[-1])

    # 4 MB tensors: glibc hands them back to the kernel and faults them in again
    # (1,024 pages each) unless the thresholds are fixed
    steady, default = faults("steady"), faults("default")
    assert steady < 200 and default > 4 * steady + 500

"""The latency predictor (prunekit.latency.table) at batch 1 and 64: why it missed, how
noisy the measurement it is judged against is, and how close it is on configurations
the fit never saw.

Parts (each writes one JSON; ``--render`` turns them into markdown):

- ``onednn``: which oneDNN convolution implementation and memory layouts LeNet-5's conv2
  gets at each width (``ONEDNN_VERBOSE=all`` in a child process, one timed forward);
- ``context``: LeNet-5 (16, c2, 480) whole models and its conv2 / fc1 alone (as the
  table times them), all in one interleaved loop with the reference layer, ``rounds``
  times: what a width change costs inside the model vs in isolation;
- ``spread``: the same models measured ``rounds`` times with prunekit's clock (thread
  CPU time, one thread, interleaved, medians) -- the run-to-run spread of one round and
  of the median of three rounds, against which "within 10 %" is judged;
- ``validate``: per batch size, the predictor is calibrated (seed 0), then fresh seeded
  random grid configurations (seed 2026, disjoint from calibration) and the allocations
  for 1.5x / 2x / 3x are measured with the dense model ``times`` times; error =
  predicted / measured - 1 on the median.

Every timing: one thread, ``time.thread_time``, load average recorded.
Usage: ``python benchmarks/latency_predictor.py --part validate --model lenet5
--batches 1 64 --cache-dir D --json F``; ``--render F... --out benchmarks/results/latency_predictor.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from prunekit.inference.deploy import deploy  # noqa: E402
from prunekit.latency import LatencyModel  # noqa: E402
from prunekit.latency.table import fit_selected  # noqa: E402
from prunekit.latency.target import plan  # noqa: E402
from prunekit.latency.timing import REF, _Fixed, build_runtime, compare  # noqa: E402
from prunekit.models import create_model  # noqa: E402

SHAPE = (1, 28, 28)
TARGETS = (1.5, 2.0, 3.0)
C2 = (4, 8, 12, 16, 20, 24, 32, 50)


def make(name: str) -> torch.nn.Module:
    """The model as the #16 benchmarks build it for Fashion-MNIST (1 x 28 x 28)."""
    return create_model(name, in_channels=1, input_size=28).eval()


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def spread(values: list[float]) -> float:
    """(max - min) / median."""
    med = statistics.median(values)
    return (max(values) - min(values)) / med


# -- onednn -------------------------------------------------------------------------------
def onednn_child(c2: int, batch: int) -> None:
    """One forward of deployed LeNet-5 (16, c2, 480) after warm-up, between markers."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = make("lenet5")
    lm = LatencyModel(m, SHAPE, batch_size=batch, cache_dir="/tmp/prunekit-onednn-unused")
    d = deploy(lm.with_widths(m, [16, c2, 480]), SHAPE, runtime="eager", batch_size=batch)
    x = torch.rand(batch, *SHAPE)
    with torch.no_grad():
        for _ in range(3):
            d(x)
        print("@@BEGIN", flush=True)
        d(x)
        print("@@END", flush=True)


def onednn(batches: list[int]) -> list[dict]:
    rows = []
    for batch in batches:
        for c2 in C2:
            env = {**os.environ, "ONEDNN_VERBOSE": "all", "OMP_NUM_THREADS": "1"}
            out = subprocess.run(
                [sys.executable, __file__, "--child-onednn", str(c2), str(batch)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            call = out.split("@@BEGIN", 1)[1].split("@@END", 1)[0]
            execs = [ln.split(",") for ln in call.splitlines() if ",exec," in ln]
            convs = [e for e in execs if e[5] == "convolution"]
            conv2 = next(e for e in convs if f"ic16oc{c2}_" in e[-2])
            rows.append(
                {
                    "batch": batch,
                    "c2": c2,
                    "impl": conv2[6],
                    "alg": conv2[-3].replace("alg:", ""),
                    "formats": conv2[8],
                    "exec_ms": float(conv2[-1]),
                    "convs": len(convs),
                    "reorders": sum(e[5] == "reorder" for e in execs),
                    "reorder_ms": sum(float(e[-1]) for e in execs if e[5] == "reorder"),
                    "create_hits": call.count(",create:cache_hit,"),
                    "create_misses": call.count(",create:cache_miss,"),
                }
            )
            rows[-1].update(profile_conv2(c2, batch))
            print(rows[-1], flush=True)
    return rows


def profile_conv2(c2: int, batch: int, calls: int = 200) -> dict:
    """conv2 alone (as the table times it) under the torch profiler: the mean self CPU
    time of ``aten::mkldnn_convolution`` per call (profiler overhead included)."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, c2, 5).eval()
    fn = _Fixed(build_runtime(conv, "eager", torch.rand(batch, 16, 12, 12), 1), (16, 12, 12), batch)
    with torch.no_grad():
        for _ in range(20):
            fn(None)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                fn(None)
    ev = {e.key: e for e in prof.key_averages()}
    mk = ev["aten::mkldnn_convolution"]
    return {
        "profiled_mkldnn_self_us": mk.self_cpu_time_total / mk.count,
        "profiled_conv2d_total_us": ev["aten::conv2d"].cpu_time_total / ev["aten::conv2d"].count,
    }


# -- context ------------------------------------------------------------------------------
def context(batch: int, rounds: int, repeats: int) -> dict:
    torch.manual_seed(0)
    m = make("lenet5")
    lm = LatencyModel(m, SHAPE, batch_size=batch, cache_dir="/tmp/prunekit-context-unused")
    calls = {
        f"model c2={c}": _Fixed(
            deploy(lm.with_widths(m, [16, c, 480]), SHAPE, runtime="eager", batch_size=batch),
            SHAPE,
            batch,
        )
        for c in C2
    }
    for c in C2:
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(16, c, 5).eval()
        fc = torch.nn.Linear(16 * c, 480).eval()
        calls[f"conv2 16x{c}"] = _Fixed(
            build_runtime(conv, "eager", torch.rand(batch, 16, 12, 12), 1), (16, 12, 12), batch
        )
        calls[f"fc1 {16 * c}x480"] = _Fixed(
            build_runtime(fc, "eager", torch.rand(batch, 16 * c), 1), (16 * c,), batch
        )
    calls[REF] = lm.ref
    before = load()
    runs = [
        compare(calls, (1,), 1, repeats=repeats, warmup=2, min_time_s=0.002) for _ in range(rounds)
    ]
    return {
        "batch": batch,
        "rounds": rounds,
        "repeats": repeats,
        "us": {k: [1000 * r[k] for r in runs] for k in calls},
        "loadavg": [before, load()],
    }


# -- chunk --------------------------------------------------------------------------------
def chunk(batch: int, rounds: int, repeats: int) -> dict:
    """ResNet-20's 16->16 3x3 conv on 28x28 maps (a table entry) timed in three kinds
    of interleaved loop, each round: with its 15 sibling entries (widths 4..16 in and out,
    one table chunk), with 3 siblings, alone (+ the reference)."""
    from prunekit.latency.table import Layer

    layer = Layer("conv", "conv", 0, 16, 1, 1, 16, (28, 28), ((3, 3), (1, 1), (1, 1), (1, 1)), 784)
    widths = (4, 8, 12, 16)

    def entry(ci: int, co: int) -> torch.nn.Module:
        torch.manual_seed(0)
        x = torch.rand(batch, ci, 28, 28)
        return _Fixed(build_runtime(layer.module(ci, co), "eager", x, 1), (ci, 28, 28), batch)

    lm_ref = LatencyModel(make("lenet5"), SHAPE, batch_size=batch, cache_dir="/tmp/prunekit-x").ref
    loops = {
        "16 entries": [(i, o) for i in widths for o in widths],
        "4 entries": [(16, 16), (16, 12), (12, 16), (12, 12)],
        "alone": [(16, 16)],
    }

    def nbytes(ci: int, co: int) -> int:  # float32 input, output and weights
        return 4 * (batch * (ci + co) * 784 + ci * co * 9)

    mb = {k: sum(nbytes(i, o) for i, o in v) / 2**20 for k, v in loops.items()}
    before = load()
    units: dict[str, list[float]] = {k: [] for k in loops}
    for _ in range(rounds):
        for k, pairs in loops.items():
            calls = {f"{i}x{o}": entry(i, o) for i, o in pairs}
            calls[REF] = lm_ref
            ms = compare(calls, (1,), 1, repeats=repeats, warmup=2, min_time_s=0.002)
            units[k].append(ms["16x16"] / ms[REF])
    return {
        "batch": batch,
        "rounds": rounds,
        "repeats": repeats,
        "units": units,
        "mb": mb,
        "loadavg": [before, load()],
    }


def render_chunk(d: dict) -> list[str]:
    out = [
        f"## One table entry in loops of different size, batch {d['batch']} ({d['_file']})",
        "",
        "ResNet-20's 16 -> 16 3x3 conv on 28x28 maps, timed in an interleaved loop with its "
        "15 sibling entries (widths 4, 8, 12, 16 in and out: one table chunk), with 3 siblings, and alone (each with the reference layer); reference units "
        f"per round ({d['rounds']} rounds, {d['repeats']} repeats). MB = bytes the loop cycles "
        f"through (inputs, outputs, weights). Load average {d['loadavg'][0]} -> {d['loadavg'][1]}.",
        "",
        "| loop | MB | per round | median | spread |",
        "|---|---|---|---|---|",
    ]
    for k, v in d["units"].items():
        out.append(
            f"| {k} | {d['mb'][k]:.1f} | {', '.join(f'{x:.2f}' for x in v)} | "
            f"{statistics.median(v):.2f} | {100 * spread(v):.0f} % |"
        )
    return [*out, ""]


# -- faults -------------------------------------------------------------------------------
def faults_child(mode: str, batch: int, rounds: int) -> None:
    """ResNet-20's 16->16 3x3 conv on 28x28 maps, a fresh build per round, 20 calls:
    thread CPU ms, minor page faults and system ms per call, printed as JSON lines."""
    import resource

    from prunekit.latency.timing import steady_allocator

    torch.set_num_threads(1)
    if mode == "steady":
        assert steady_allocator()
    for _ in range(rounds):
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(16, 16, 3, padding=1).eval()
        fn = _Fixed(
            build_runtime(conv, "eager", torch.rand(batch, 16, 28, 28), 1), (16, 28, 28), batch
        )
        with torch.no_grad():
            for _ in range(3):
                fn(None)
            r0, t0 = resource.getrusage(resource.RUSAGE_THREAD), time.thread_time()
            for _ in range(20):
                fn(None)
            t1, r1 = time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD)
        row = {
            "ms": (t1 - t0) / 20 * 1000,
            "minflt": (r1.ru_minflt - r0.ru_minflt) / 20,
            "sys_ms": (r1.ru_stime - r0.ru_stime) / 20 * 1000,
        }
        print("@@" + json.dumps(row), flush=True)


def faults(batch: int, rounds: int) -> dict:
    before = load()
    out = {}
    for mode in ("default", "steady"):
        text = subprocess.run(
            [sys.executable, __file__, "--child-faults", mode, str(batch), str(rounds)],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        out[mode] = [json.loads(ln[2:]) for ln in text.splitlines() if ln.startswith("@@")]
    return {"batch": batch, "rounds": rounds, "rows": out, "loadavg": [before, load()]}


def render_faults(d: dict) -> list[str]:
    out = [
        f"## Page faults per call: glibc's default allocator vs steady_allocator, batch {d['batch']}",
        "",
        "ResNet-20's 16 -> 16 3x3 conv on 28x28 maps, a fresh build per round (as a table "
        "entry is built), 20 calls after 3 warm-up calls, in a fresh process per mode; per "
        "call: thread CPU ms, minor page faults, system ms (getrusage, this thread). "
        f"Load average {d['loadavg'][0]} -> {d['loadavg'][1]}.",
        "",
        "| allocator | round | ms / call | minor faults / call | system ms / call |",
        "|---|---|---|---|---|",
    ]
    for mode, rows in d["rows"].items():
        for i, r in enumerate(rows):
            out.append(f"| {mode} | {i} | {r['ms']:.2f} | {r['minflt']:.0f} | {r['sys_ms']:.2f} |")
    return [*out, ""]


# -- spread -------------------------------------------------------------------------------
def aa_spread(name: str, batch: int, rounds: int, repeats: int) -> dict:
    """The same models, ``rounds`` separate interleaved measurements (``lm.measure``),
    each round once with window-mean samples and once with per-call-median samples."""
    torch.manual_seed(0)
    m = make(name)
    lm = LatencyModel(m, SHAPE, batch_size=batch, cache_dir="/tmp/prunekit-spread-unused")
    models = {
        "dense": m,
        "half": lm.with_widths(m, lm.half()),
        "min": lm.with_widths(m, lm.minimum()),
    }
    before = load()
    runs: dict[str, list[dict]] = {"mean": [], "median": []}
    for _ in range(rounds):
        for stat in runs:
            runs[stat].append(lm.measure(models, repeats=repeats, per_call_median=stat == "median"))
    return {
        "model": name,
        "batch": batch,
        "rounds": rounds,
        "repeats": repeats,
        "ref_units": {s: {k: [r[k] for r in rs] for k in models} for s, rs in runs.items()},
        "ref_ms": {s: [r["ref_ms"] for r in rs] for s, rs in runs.items()},
        "loadavg": [before, load()],
    }


# -- validate -----------------------------------------------------------------------------
def validate(name: str, batch: int, cache_dir: str | None, times: int, n_fresh: int) -> dict:
    torch.manual_seed(0)
    model = make(name)
    t0 = time.time()
    lm = LatencyModel(model, SHAPE, batch_size=batch, cache_dir=cache_dir)
    before = {k: list(v) for k, v in lm.cache.samples.items()}
    load_table = load()
    new = lm.measure_table()
    table = {
        "entries": len(lm.cache.entries),
        "new": new,
        "seconds": time.time() - t0,
        "loadavg": load_table,
        "rechecked": {
            k: {"before": before[k], "after": lm.cache.samples[k]}
            for k in before
            if lm.cache.samples.get(k) != before[k]
        },
    }
    t1 = time.time()
    cal = lm.calibrate(seed=0)
    cal_s = time.time() - t1
    # the leave-one-out-selected fit on the same calibration rows, for a paired comparison
    loo_coef, loo_cols, loo_score = fit_selected(*lm.calibration)

    def predict_loo(w: list[int]) -> float:
        return float(sum(c * f for c, f in zip(loo_coef.tolist(), lm.features(w), strict=True)))

    fit = set(map(tuple, lm.calibration_widths(12, 0).values()))
    configs = {
        k: w
        for k, w in lm.calibration_widths(n_fresh, seed=2026).items()
        if k.startswith("random") and tuple(w) not in fit
    }
    gen = torch.Generator().manual_seed(11)
    scores = [torch.rand(n, generator=gen) for n in lm.full]
    dense_pred = lm.predict(lm.full)
    for k in TARGETS:
        if lm.predict(lm.minimum()) <= dense_pred / k:
            w = plan(lm, scores, dense_pred / k, "none", {})[0]
            if tuple(w) not in fit:
                configs[f"alloc{k:g}x"] = w
    models = {"dense": model, **{k: lm.with_widths(model, w) for k, w in configs.items()}}
    load_measure = load()
    t2 = time.time()
    runs = [lm.measure(models, repeats=9) for _ in range(times)]
    rows = []
    dense_loo = predict_loo(lm.full)
    for k, w in {"dense": lm.full, **configs}.items():
        pred = lm.predict(w)
        pred_loo = predict_loo(w)
        meas = [r[k] for r in runs]
        rel = [r[k] / r["dense"] for r in runs]
        rows.append(
            {
                "config": k,
                "widths": list(w),
                "predicted": pred,
                "measured": meas,
                "error_ref": pred / statistics.median(meas) - 1,
                "error_dense": (pred / dense_pred) / statistics.median(rel) - 1,
                "error_ref_loo": pred_loo / statistics.median(meas) - 1,
                "error_dense_loo": (pred_loo / dense_loo) / statistics.median(rel) - 1,
                "spread": spread(meas),
                "spread_rel": spread(rel),
            }
        )
    return {
        "model": name,
        "batch": batch,
        "table": table,
        "calibration": {
            "coef": list(lm.coef),
            "fit_error": cal["fit_error"],
            "seconds": cal_s,
            "loo_coef": loo_coef.tolist(),
            "loo_features": loo_cols,
            "loo_error": loo_score,
        },
        "times": times,
        "rows": rows,
        "ref_ms": [r["ref_ms"] for r in runs],
        "measure_seconds": time.time() - t2,
        "loadavg": [load_measure, load()],
    }


# -- render -------------------------------------------------------------------------------
def pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


def render(files: list[Path], command: str, note: str = "") -> str:
    out = [
        "# Latency predictor: batch-1 misses, measurement spread, validation",
        "",
        f"Command: `{command}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs ({platform.machine()}), "
        "the machine's load average while a part ran is in its section. One thread, eager "
        "runtime (deployed: BN folded, exact rewrites), clock = CPU time of the calling "
        "thread, interleaved repeats, medians.",
        "",
    ]
    if note:
        out += [f"Note: {note}", ""]
    for f in files:
        d = json.loads(f.read_text())
        d["_file"] = f.name
        out += RENDER[d["part"]](d)
    return "\n".join(out) + "\n"


def render_onednn(d: dict) -> list[str]:
    out = [
        "## oneDNN implementation of LeNet-5 conv2 per width (ONEDNN_VERBOSE=all)",
        "",
        "Deployed LeNet-5 with widths (16, c2, 480), one forward after 3 warm-up calls (one call: its times are noisy); "
        "impl / alg / formats of conv2's primitive, its exec time, and the reorders "
        "oneDNN ran during the whole forward; primitive creations in that forward "
        "(primitive-cache hits / misses); and conv2 alone (as the table times it) under "
        "the torch profiler, 200 calls: mean self CPU time of aten::mkldnn_convolution and "
        "total of aten::conv2d per call (profiler overhead included).",
        "",
        "| batch | c2 | impl | alg | formats (src wei bia dst) | conv2 exec ms | convs | reorders | reorder ms | creates hit / miss | alone: mkldnn self us | alone: conv2d us |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        out.append(
            f"| {r['batch']} | {r['c2']} | {r['impl']} | {r['alg']} | `{r['formats']}` | "
            f"{r['exec_ms']:.4f} | {r['convs']} | {r['reorders']} | {r['reorder_ms']:.4f} | "
            f"{r['create_hits']} / {r['create_misses']} | {r['profiled_mkldnn_self_us']:.1f} | "
            f"{r['profiled_conv2d_total_us']:.1f} |"
        )
    return [*out, ""]


def render_context(d: dict) -> list[str]:
    us = {k: statistics.median(v) for k, v in d["us"].items()}
    sp = {k: spread(v) for k, v in d["us"].items()}
    base = 16
    out = [
        f"## In context vs isolated, batch {d['batch']}",
        "",
        f"One interleaved loop ({d['repeats']} repeats) of the whole deployed models and of "
        f"conv2 / fc1 alone (as the table times them), {d['rounds']} rounds; "
        f"microseconds (median of rounds) and the spread of the rounds. "
        f"Load average {d['loadavg'][0]} -> {d['loadavg'][1]}. "
        f"delta = change against c2 = {base}.",
        "",
        "| c2 | whole model us | spread | delta whole | conv2 alone us | fc1 alone us | delta conv2 + fc1 alone |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in C2:
        w, cv, fc = f"model c2={c}", f"conv2 16x{c}", f"fc1 {16 * c}x480"
        b = (f"model c2={base}", f"conv2 16x{base}", f"fc1 {16 * base}x480")
        out.append(
            f"| {c} | {us[w]:.1f} | {100 * sp[w]:.0f} % | {us[w] - us[b[0]]:+.1f} | "
            f"{us[cv]:.1f} | {us[fc]:.1f} | {us[cv] + us[fc] - us[b[1]] - us[b[2]]:+.1f} |"
        )
    out.append(f"\nReference layer: {us[REF]:.1f} us (spread {100 * sp[REF]:.0f} %).")
    return [*out, ""]


def render_spread(d: dict) -> list[str]:
    out = [
        f"## Run-to-run spread of the same model: {d['model']}, batch {d['batch']}",
        "",
        f"{d['rounds']} separate measurements (each: {d['repeats']} interleaved repeats, "
        "median) of the same three models, alternating two sample statistics: 'mean' = "
        "a sample is the mean call over a 5 ms window of thread time (prunekit's table "
        "clock until now), 'median' = the median single call of that window. spread = "
        "(max - min) / median over the rounds; 'of medians of 3' = the same over "
        "consecutive triples of rounds (what calibration uses), 'of 5' = of consecutive "
        "groups of 5 (what the validation below uses); 'ms' = "
        "milliseconds, 'ref' = reference-layer units, '/dense' = latency relative to the "
        f"dense model of the same round. Load average {d['loadavg'][0]} -> {d['loadavg'][1]}.",
        "",
        "| sample | model | median ms | spread ms | spread ref | spread ref, medians of 3 | of 5 | spread /dense |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stat, units in d["ref_units"].items():
        ref_ms = d["ref_ms"][stat]
        for k, v in units.items():
            ms = [u * r for u, r in zip(v, ref_ms, strict=True)]
            triples = [statistics.median(v[i : i + 3]) for i in range(0, len(v) - 2, 3)]
            fives = [statistics.median(v[i : i + 5]) for i in range(0, len(v) - 4, 5)]
            rel = [u / x for u, x in zip(v, units["dense"], strict=True)]
            out.append(
                f"| {stat} | {k} | {statistics.median(ms):.3f} | {100 * spread(ms):.1f} % | "
                f"{100 * spread(v):.1f} % | {100 * spread(triples):.1f} % | "
                f"{100 * spread(fives):.1f} % ({len(fives)}) | "
                + ("-" if k == "dense" else f"{100 * spread(rel):.1f} %")
                + " |"
            )
        out.append(
            f"| {stat} | reference layer | {statistics.median(ref_ms):.4f} | "
            f"{100 * spread(ref_ms):.1f} % | - | - | - | - |"
        )
    return [*out, ""]


def render_validate(d: dict) -> list[str]:
    t, c = d["table"], d["calibration"]
    rows = [r for r in d["rows"] if r["config"] != "dense"]
    within = sum(abs(r["error_ref"]) <= 0.10 for r in rows)
    within_d = sum(abs(r["error_dense"]) <= 0.10 for r in rows)
    within_s = sum(abs(r["error_ref"]) <= max(0.10, r["spread"]) for r in rows)
    out = [
        f"## {d['model']}, batch {d['batch']}: predicted vs measured on fresh configurations "
        f"({d['_file']})",
        "",
        f"Table: {t['entries']} entries ({t['new']} new, {len(t['rechecked'])} re-checked "
        f"cached ones), {t['seconds']:.0f} s, load {t['loadavg']}. Calibration (seed 0, 15 "
        f"configurations, median of 3 rounds): worst fit error "
        f"{100 * max(abs(v) for v in c['fit_error'].values()):.1f} %, coefficients "
        f"(a, volume terms, r0) {', '.join(f'{x:.3g}' for x in c['coef'])}, {c['seconds']:.0f} s. "
        f"Validation: {len(rows)} configurations the fit never saw, measured with the dense model "
        f"{d['times']} times (9 interleaved repeats each), {d['measure_seconds']:.0f} s, load "
        f"{d['loadavg'][0]} -> {d['loadavg'][1]}.",
        "",
        "error = predicted / median measured - 1, in reference-layer units (latency) and anchored "
        "on the dense model of the same loop (speed-up); spread = (max - min) / median of the "
        f"{d['times']} measurements of that configuration.",
        "",
        "| config | widths | predicted (ref) | measured (ref) | error | error (dense) | spread |",
        "|---|---|---|---|---|---|---|",
    ]
    loo = "error_ref_loo" in rows[0]
    if loo:
        out[-2] = out[-2].replace(
            " | spread |", " | spread | error, LOO fit | error (dense), LOO fit |"
        )
        out[-1] += "---|---|"
        out[-4] += (
            " 'LOO fit' = the same calibration rows fitted with only the features of smallest "
            f"leave-one-out error (`fit_selected`: features {c['loo_features']} of 0 = layer sum, "
            f"1.. = volume terms, last = r0; LOO error {100 * c['loo_error']:.1f} %)."
        )
    if d.get("note"):
        out[1:1] = ["", f"Note: {d['note']}"]
    for r in d["rows"]:
        out.append(
            f"| {r['config']} | {', '.join(map(str, r['widths']))} | {r['predicted']:.2f} | "
            f"{statistics.median(r['measured']):.2f} | {pct(r['error_ref'])} | "
            f"{pct(r['error_dense'])} | {100 * r['spread']:.0f} % |"
            + (f" {pct(r['error_ref_loo'])} | {pct(r['error_dense_loo'])} |" if loo else "")
        )
    med_spread = statistics.median(r["spread"] for r in rows)
    out += [
        "",
        f"- within 10 %: **{within}/{len(rows)}** (latency, reference units), {within_d}/{len(rows)} "
        f"(speed-up, dense-anchored); within max(10 %, own spread): {within_s}/{len(rows)}; median "
        f"spread {100 * med_spread:.1f} %; reference layer {1000 * statistics.median(d['ref_ms']):.1f} us.",
    ]
    if loo:
        w_l = sum(abs(r["error_ref_loo"]) <= 0.10 for r in rows)
        w_ld = sum(abs(r["error_dense_loo"]) <= 0.10 for r in rows)

        def rms(key: str) -> float:
            return 100 * (sum(r[key] ** 2 for r in rows) / len(rows)) ** 0.5

        out.append(
            f"- LOO fit: within 10 %: {w_l}/{len(rows)} (latency), {w_ld}/{len(rows)} (speed-up); "
            f"root mean square error {rms('error_ref_loo'):.1f} % vs {rms('error_ref'):.1f} % "
            f"(all features), speed-up {rms('error_dense_loo'):.1f} % vs {rms('error_dense'):.1f} %."
        )
    if t["rechecked"]:
        re = t["rechecked"]

        def moved(k: str) -> float:
            return statistics.median(re[k]["after"]) / re[k]["before"][0] - 1

        big = sorted(re, key=lambda k: -abs(moved(k)))
        n_big = sum(abs(moved(k)) > 0.10 for k in re)
        drift = statistics.median(moved(k) for k in re)
        out += [
            "",
            f"Cached entries (one sample each, from before this change) re-measured by the "
            f"passes: {len(re)}; {n_big} of them moved by more than 10 %, the median change "
            f"was {pct(drift)}. The 8 that moved "
            "most, and LeNet-5's conv1 entries and the conv2 entries 16 -> any, 12 -> 8, "
            "8 -> 20 (reference units, "
            "samples before -> after; the entry is the median of the samples after):",
            "",
        ]
        # the entries the old batch-1 misses (latency_followup.md: widths 16/8/*, 12/8/*,
        # 8/20/*) used: LeNet-5's conv1, conv2 from 16 channels, 12 -> 8 and 8 -> 20
        lenet = (
            "k(5, 5)s(1, 1)p(0, 0)d(1, 1)|28x28|1x",
            "|12x12|16x",
            "|12x12|12x8",
            "|12x12|8x20",
        )
        conv2 = [k for k in re if any(x in k for x in lenet)]
        for k in dict.fromkeys([*big[:8], *conv2]):
            b = ", ".join(f"{x:.3g}" for x in re[k]["before"])
            a = ", ".join(f"{x:.3g}" for x in re[k]["after"])
            out.append(f"- `{k}`: [{b}] -> [{a}] ({pct(moved(k))})")
    return [*out, ""]


RENDER = {
    "chunk": render_chunk,
    "faults": render_faults,
    "onednn": render_onednn,
    "context": render_context,
    "spread": render_spread,
    "validate": render_validate,
}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child-onednn":
        onednn_child(int(sys.argv[2]), int(sys.argv[3]))
        return
    if len(sys.argv) == 5 and sys.argv[1] == "--child-faults":
        faults_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=sorted(RENDER))
    p.add_argument("--model", default="lenet5")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--times", type=int, default=3)
    p.add_argument("--fresh", type=int, default=12)
    p.add_argument("--cache-dir")
    p.add_argument("--json", type=Path)
    p.add_argument("--render", type=Path, nargs="+")
    p.add_argument("--out", type=Path)
    p.add_argument("--command", default="")
    p.add_argument("--note", default="", help="a paragraph under the header (render only)")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.render:
        text = render(a.render, a.command, a.note)
        if a.out:
            a.out.write_text(text)
        print(text)
        return
    if a.part == "onednn":
        res = {"part": "onednn", "rows": onednn(a.batches)}
        a.json.write_text(json.dumps(res, indent=1))
        return
    for batch in a.batches:
        if a.part == "context":
            res = context(batch, a.rounds, a.repeats)
        elif a.part == "chunk":
            res = chunk(batch, a.rounds, a.repeats)
        elif a.part == "faults":
            res = faults(batch, a.rounds)
        elif a.part == "spread":
            res = aa_spread(a.model, batch, a.rounds, a.repeats)
        else:
            res = validate(a.model, batch, a.cache_dir, a.times, a.fresh)
        res["part"] = a.part
        path = a.json.with_name(f"{a.json.stem}-b{batch}{a.json.suffix}")
        path.write_text(json.dumps(res, indent=1))
        print(f"[{a.part} {a.model} b{batch}] -> {path}", flush=True)


if __name__ == "__main__":
    main()

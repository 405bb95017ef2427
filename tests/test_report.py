"""The comparison report: numbers -> words, Markdown + self-contained HTML, and the
HTML rendered by headless Chromium (every image loaded, no console error, a real
non-blank screenshot)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from prunekit.evaluation.interleaved import SPEEDUP_STATISTIC
from prunekit.experiments.plan import config_from_dict, plan
from prunekit.experiments.plots import heatmap_data, layer_removed, pareto_front
from prunekit.experiments.report import write_report
from prunekit.experiments.store import Store, read_rows
from prunekit.experiments.summary import method_notes, summary_matrix
from prunekit.experiments.tables import runs_table

CFG = {
    "name": "fake",
    "models": ["lenet300"],
    "dataset": "digits",
    "methods": ["magnitude", "random", "gmp", "l1-filter", "l0-neuron"],
    "sparsities": [0.5, 0.9],
    "seeds": [0, 1],
    "budget": {"epochs": 1, "finetune_epochs": 1},
}
N_TEST = 1000  # test examples of every fake run: binomial error sqrt(p (1 - p) / 1000)
# accuracy per (method, sparsity), seed 0 / seed 1
ACC = {
    ("dense", 0.0): (0.90, 0.92),
    ("magnitude", 0.5): (0.905, 0.915),
    ("magnitude", 0.9): (0.88, 0.86),
    ("gmp", 0.5): (0.906, 0.912),  # 0.0010 below magnitude: within noise
    ("gmp", 0.9): (0.80, 0.82),  # 0.06 below: beyond noise
    ("random", 0.5): (0.70, 0.72),
    ("random", 0.9): (0.30, 0.34),
    ("l1-filter", 0.5): (0.85, 0.87),
    ("l1-filter", 0.9): (0.50, 0.52),
    ("l0-neuron", 0.5): (0.84, 0.86),
    ("l0-neuron", 0.9): (0.60, 0.62),
}
LAT = {"dense": 1.0, "magnitude": 1.0, "gmp": 1.0, "random": 1.0, "l1-filter": 0.4}
LAT["l0-neuron"] = 0.4  # ms at batch 1
NEURON = ("l1-filter", "l0-neuron")


def _timing(iqr: tuple[float, float], busy: bool = False) -> dict:
    return {
        "repeats": 10,
        "spread": {"1": {"speedup_iqr": list(iqr)}},
        "speedup_statistic": SPEEDUP_STATISTIC,
        "busy": busy,
        "loadavg_before": [0.1, 0.1, 0.1],
    }


# Every image of the report, in page order: the plots, then the pictures of what pruning did.
IMAGES = (
    "accuracy_vs_sparsity",
    "accuracy_vs_macs",
    "robustness",
    "latency_pareto",
    "layer_heatmap",
    "input_connections",
    "units_kept",
    "sparsity_steps",
    "l0_gates",
    "unit_entropy",
    "noise_levels",
)


def _result(method: str, s: float, acc: float) -> dict:
    if method in NEURON and s > 0:  # physically removed units: the layers are smaller
        kept = round(10 * (1 - s))
        layers = {
            "fc1": {"params": 10 * kept, "nonzero": 10 * kept, "sparsity": 0.0, "units": kept},
            "fc2": {"params": 5 * kept, "nonzero": 5 * kept, "sparsity": 0.0, "units": 5},
        }
    else:
        layers = {
            "fc1": {
                "params": 100,
                "nonzero": round(100 * (1 - s)),
                "sparsity": s,
                "units": 10,
                "units_alive": 10,
            },
            "fc2": {"params": 50, "nonzero": 50, "sparsity": 0.0, "units": 5, "units_alive": 5},
        }
    r = {
        "accuracy": acc,
        "test_examples": N_TEST,
        "achieved_sparsity": s,
        "macs_dense": 150,
        "macs_effective": round(150 * (1 - s)) + 1,
        "params_nonzero": sum(layer["nonzero"] for layer in layers.values()),
        # only the unit-removing methods get faster with sparsity
        "latency_ms": {"1": LAT[method] * (1 - s / 2 if method in NEURON else 1), "64": 5.0},
        "layers": layers,
        "granularity": "neuron" if method in NEURON else "weight",
        "versions": {"prunekit": "0", "torch": "2", "python": "3"},
    }
    if method in NEURON and s > 0:
        r["shrunk"] = True
        r["architecture_original"] = {"fc1": 10, "fc2": 5}
    if method == "magnitude":
        # Its own interleaved measurement beside dense (1.1x at batch 1, but the per-repeat
        # ratios spread over 0.9-1.3x) must win over dividing by the dense row's latency.
        r["latency_ms_dense"] = {"1": 1.1, "64": 5.0}
        r["speedup"] = {"1": 1.1, "64": 1.0}
        r["timing"] = _timing((0.9, 1.3))
    if method == "l1-filter":
        r["speedup"] = {"1": 1.0 / (1 - s / 2) / 0.4, "64": 1.0}
        r["timing"] = _timing((2.0, 5.0), busy=s == 0.9)
    if method == "dense":  # timed against itself: noise made it look faster
        r["speedup"] = {"1": 1.13, "64": 1.0}
        r["timing"] = _timing((1.05, 1.2))
    if method != "random":  # a method that does not report robustness: NULL, not 0
        r["accuracy_corrupted_mean"] = acc - 0.1
        r["accuracy_gaussian"] = {"0.1": acc - 0.05, "0.3": acc - 0.15}
        r["accuracy_saltpepper"] = {"0.1": acc - 0.1}
    # What pruning did (the report's pictures read whatever keys the rows carry): a 2x2
    # "image" into fc1's 10 units, the pruning events, the removed units of l1-filter,
    # and an L0-like gate report and entropy trace on magnitude's rows.
    kept = round(10 * (1 - s))
    r["input_connections"] = {
        "layer": "fc1",
        "kind": "input",
        "shape": [1, 2, 2],
        "fan_out": kept if method == "l1-filter" else 10,
        "fan_out_original": 10,
        "counts": [kept, kept, 10, 0] if method == "magnitude" else [kept] * 4,
    }
    r["pruning_events"] = [{"step": 0, "target": s}]
    if method == "l1-filter":
        r["architecture"] = {"fc1": kept, "fc2": 5}
        r["architecture_original"] = {"fc1": 10, "fc2": 5}
    if method == "magnitude":
        r["objective_report"] = {
            "trace": [{"step": 1, "lambda": 1e-3, "density": 0.9}, {"step": 50, "density": 1 - s}],
            "keep_prob_hist": {"edges": [0.0, 0.5, 1.0], "counts": [90, 10]},
            "start": {"units": {"fc1": [0.1, 0.5, 1.0]}},
            "end": {"units": {"fc1": [-1.0, 0.2, 0.9]}},
        }
    return r


def fake_comparison(out: Path, keep: int | None = None) -> list:
    """A stored comparison of the cells of CFG; ``keep``: only its first cells (a partial run)."""
    cfg = config_from_dict(CFG)
    cells = plan(cfg)
    store = Store(out, cfg.hash(), "heatmap_sparsity: 0.9\n")
    store.plan_cells([c.id for c in cells])
    for cell in cells[:keep]:
        key = (cell.label, cell.run.sparsity)
        acc = ACC[key][cell.run.seed]
        if key == ("random", 0.9) and cell.run.seed == 1:
            store.record(
                cell,
                command=cell.command(),
                error="PrunekitError: loss became nan",
                wall_seconds=0.5,
            )
        else:
            wall = 10.0 if cell.label == "random" else 2.0
            store.record(
                cell,
                command=cell.command(),
                result=_result(cell.label, *key[1:], acc),
                wall_seconds=wall,
            )
    store.close()
    return cells


def test_summary_and_words_come_from_the_numbers(tmp_path):
    fake_comparison(tmp_path)
    rows = read_rows(tmp_path)
    header, body = summary_matrix(rows)
    assert header == ["method", "granularity", "fine-tune", "0 (dense)", "0.5", "0.9", "runs"]
    table = {r[0]: r for r in body}
    assert table["magnitude"][4] == "0.9100 ± 0.0071"  # mean, sample std of 0.905, 0.915
    assert table["random"][5] == "0.3000"  # the failed seed is not averaged in
    assert table["random"][6] == "3/4"
    # the dense row sits in its own sparsity-0 column, not under 0.5
    assert table["dense"][2:6] == ["1 ep", "0.9100 ± 0.0141", "", ""]
    assert table["magnitude"][3] == ""
    # weight-level methods first, then neuron-level ones
    assert [r[0] for r in body] == ["dense", "gmp", "magnitude", "random", "l0-neuron", "l1-filter"]
    notes = method_notes(rows)
    mag, rnd, gmp, l1f = notes["magnitude"], notes["random"], notes["gmp"], notes["l1-filter"]
    # 0.5: magnitude 0.9100 vs gmp 0.9090 -- a gap far inside the sampling error
    assert "most accurate weight-level method at sparsity 0.9 (beyond noise)" in mag["strengths"]
    assert (
        "tied for most accurate weight-level method at sparsity 0.5 (within noise)"
        in (mag["strengths"])
    )
    assert (
        "tied for most accurate weight-level method at sparsity 0.5 (within noise)"
        in (gmp["strengths"])
    )
    assert "within 1 point of dense accuracy up to sparsity 0.5" in mag["strengths"]
    assert (
        "least accurate weight-level method at sparsity 0.5, 0.9 (beyond noise)"
        in (rnd["weaknesses"])
    )
    assert "already 20.0 points below dense at sparsity 0.5" in rnd["weaknesses"]
    assert any(
        w.startswith("failed at sparsity 0.9 (PrunekitError: loss became nan)")
        for w in rnd["weaknesses"]
    )
    # wall: random 10 s per run vs median of (2, 10, 2, 2, 2) = 2 s
    assert "costly: 10.0 s per run (5.0x the median method)" in rnd["weaknesses"]
    # neuron-level methods are ranked among themselves: at 0.9 l0-neuron beats l1-filter
    assert (
        "most accurate neuron-level method at sparsity 0.9 (beyond noise)"
        in (notes["l0-neuron"]["strengths"])
    )
    assert not any("most accurate" in t and "sparsity 0.9 (" in t for t in l1f["strengths"])
    # l1-filter's interleaved speed-up 2.5x / 1.82x, per-repeat IQR 2-5x: above 1, stated;
    # the 0.9 run was timed on a busy machine and says so
    assert (
        "real speed-up at sparsity 0.9: batch-1 forward 4.55x faster (median of per-repeat "
        "ratios; per-repeat IQR 2.00-5.00x; timed while the machine was busy)" in l1f["strengths"]
    )
    # magnitude: 1.1x, but the per-repeat ratios run from 0.9 to 1.3x: within noise
    assert (
        "no speed-up beyond timing noise (best batch-1 at sparsity 0.5: within noise (1.10x, "
        "median of per-repeat ratios; per-repeat IQR 0.90-1.30x)): zeros keep the dense shapes"
        in mag["weaknesses"]
    )
    # robustness: random reports none, so the ranking is between magnitude and gmp
    assert not any("input noise" in w for w in rnd["weaknesses"] + rnd["strengths"])
    assert "most accurate under input noise at sparsity 0.9" in mag["strengths"]


def test_dense_row_is_the_reference_never_faster_than_itself(tmp_path):
    fake_comparison(tmp_path)
    rows = read_rows(tmp_path)
    header, body = runs_table(rows)
    col = header.index("speed-up b1")
    dense = [r for r in body if r[0] == "dense"]
    assert dense and {r[col] for r in dense} == {"1x (reference)"}  # stored 1.13x: ignored
    mag = [r for r in body if r[0] == "magnitude"]
    assert {r[col] for r in mag} == {"1.10x (within noise)"}
    assert not any("1.13" in r[col] for r in body)


def test_rows_of_an_older_timing_statistic_are_never_claimed(tmp_path):
    """Rows stored before the speed-up was the median of the per-repeat ratios hold a
    ratio of medians beside the ratios' IQR: table and text say so and claim nothing."""
    fake_comparison(tmp_path)
    rows = read_rows(tmp_path)
    for r in rows:
        (r.get("timing") or {}).pop("speedup_statistic", None)
    header, body = runs_table(rows)
    col = header.index("speed-up b1")
    l1f = [r[col] for r in body if r[0] == "l1-filter"]
    assert l1f and all("x (other statistic" in c for c in l1f)
    notes = method_notes(rows)["l1-filter"]
    assert not any("real speed-up" in t for t in notes["strengths"])
    (text,) = [t for t in notes["weaknesses"] if "speed-up" in t]
    assert text.startswith("speed-up not claimed (best batch-1 at sparsity 0.9: 4.55x as a ")
    assert "ratio of medians (per-repeat IQR 2.00-5.00x: another statistic" in text


def test_partial_report_says_how_many_planned_cells_it_holds(tmp_path):
    cells = fake_comparison(tmp_path, keep=7)
    md, html_path = write_report(tmp_path)
    text = md.read_text()
    assert f"7 of {len(cells)} planned cells (partial: {len(cells) - 7} not run yet)" in text
    assert f"7 of {len(cells)} planned cells" in html_path.read_text()
    full = tmp_path / "full"
    fake_comparison(full)
    text = write_report(full)[0].read_text()
    assert f"{len(cells)} of {len(cells)} planned cells:" in text and "partial" not in text
    # 2 of the ok runs were timed on a busy machine (l1-filter at 0.9, both seeds)
    assert "2 of 21 ok runs were timed while the machine was busy" in text


def test_pareto_front_and_heatmap(tmp_path):
    assert pareto_front([(1.0, 0.9), (0.5, 0.8), (0.7, 0.7), (2.0, 0.95), (0.5, 0.6)]) == [
        (0.5, 0.8),
        (1.0, 0.9),
        (2.0, 0.95),
    ]
    rows = [
        {
            "kind": "method",
            "method": "a",
            "sparsity": s,
            "seed": 0,
            "status": "ok",
            "layers": {"fc1": {"sparsity": s}, "fc2": {"sparsity": s / 2}},
        }
        for s in (0.5, 0.9)
    ]
    s, methods, layers, values = heatmap_data(rows, 0.85)
    assert (s, methods, layers, values) == (0.9, ["a"], ["fc1", "fc2"], [[0.9, 0.45]])
    # physically removed units: the shrunk layers have no zeros, yet half of fc1's and
    # fc2's original weights are gone (against the dense row's layers), 5 of 10 units kept
    fake_comparison(tmp_path)
    s, methods, layers, values = heatmap_data(read_rows(tmp_path), 0.5)
    row = dict(zip(methods, values, strict=True))["l1-filter"]
    assert s == 0.5 and row == [pytest.approx(0.5), pytest.approx(0.5)]
    shrunk = next(r for r in read_rows(tmp_path) if r["method"] == "l1-filter")
    dense_layers = next(r for r in read_rows(tmp_path) if r["kind"] == "dense")["layers"]
    assert layer_removed(shrunk, "fc1", dense_layers) == (pytest.approx(0.5), "5/10")
    assert layer_removed(shrunk, "fc1", None) == (pytest.approx(0.5), "5/10")  # units only


def test_report_files_are_complete_and_self_contained(tmp_path):
    cells = fake_comparison(tmp_path)
    md_path, html_path = write_report(tmp_path)
    md, page = md_path.read_text(), html_path.read_text()
    for name in IMAGES:
        assert (tmp_path / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](plots/{name}.png)" in md
        assert f"id='{name}'" in page
    srcs = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(srcs) == len(IMAGES)
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    assert "http://" not in page and "https://" not in page  # nothing fetched from outside
    # every row of every table names the command that reproduces it
    for cell in cells:
        assert f"`{cell.command()}`" in md
    assert "`prunekit compare --only random`" in md
    assert "## Neuron-level methods at equal parameter count" in md


# -- headless Chromium ----------------------------------------------------------------------

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium; CI installs it)"
)

# Injected into a copy of the page: records every error event (resource errors too, in
# the capture phase) and, after load, each image's state, into the DOM for --dump-dom.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.target.src || e.type)), true);
console.error = (...a) => window.__errors.push('console.error: ' + a.join(' '));
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => i.id + ':' + (i.complete && i.naturalWidth > 0 ? 'loaded' : 'broken'));
  const p = document.createElement('pre'); p.id = 'probe';
  p.textContent = JSON.stringify({imgs, errors: window.__errors});
  document.body.appendChild(p);
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_chromium
def test_report_renders_in_headless_chromium(tmp_path):
    import json

    import matplotlib.image as mpimg
    import numpy as np

    fake_comparison(tmp_path)
    _, html_path = write_report(tmp_path)
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(html_path.read_text().replace("<head>", "<head>" + PROBE, 1))
    dom = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe_page.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stderr[-2000:]
    state = json.loads(found.group(1).replace("&quot;", '"'))
    assert state["errors"] == []
    assert state["imgs"] == [f"{n}:loaded" for n in IMAGES]

    shot = tmp_path / "shot.png"
    run = _chromium(
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1280,4000",
        "--hide-scrollbars",
        html_path.as_uri(),
    )
    assert shot.exists(), run.stderr[-2000:]
    # the report itself has no script: any console message would be a page error
    assert not [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln]
    img = mpimg.imread(str(shot))
    assert img.shape[:2] == (4000, 1280)
    rgb = (img[..., :3] * 255).round().astype(np.uint8)
    # plots are drawn: many distinct colours, and a real share of non-white pixels
    colours = np.unique(rgb.reshape(-1, 3), axis=0)
    assert len(colours) > 200, len(colours)
    assert (rgb < 250).any(axis=-1).mean() > 0.03


def test_no_finetune_rows_are_their_own_setting(tmp_path):
    """`no_finetune: [m]` plans m again with finetune_epochs 0; those rows are listed
    after the fine-tuned ones, beside the dense model before fine-tuning, and ranked
    only among themselves."""
    cfg = config_from_dict(
        {**CFG, "methods": ["magnitude", "gmp"], "seeds": [0], "no_finetune": ["magnitude", "gmp"]}
    )
    labels = {e.label: e for e in cfg.methods}
    assert labels["magnitude (no fine-tune)"].budget == {"finetune_epochs": 0}
    cells = plan(cfg)
    assert {c.run.finetune_epochs for c in cells if "no fine-tune" in c.label} == {0}
    assert {c.run.finetune_epochs for c in cells if "no fine-tune" not in c.label} == {1}
    acc = {"dense": 0.91, "magnitude": 0.90, "gmp": 0.89}
    one_shot = {"magnitude": 0.60, "gmp": 0.40}  # far below: no retraining
    store = Store(tmp_path, cfg.hash(), "x")
    store.plan_cells([c.id for c in cells])
    for c in cells:
        name = c.label.removesuffix(" (no fine-tune)")
        value = one_shot[name] if c.run.finetune_epochs == 0 else acc[name]
        result = {**_result("magnitude", c.run.sparsity, value), "accuracy_dense": 0.85}
        store.record(c, command=c.command(), result=result, wall_seconds=1.0)
    store.close()
    rows = read_rows(tmp_path)
    header, body = summary_matrix(rows)
    names = [r[0] for r in body]
    assert names == [
        "dense",
        "gmp",
        "magnitude",
        "dense, not fine-tuned",
        "gmp (no fine-tune)",
        "magnitude (no fine-tune)",
    ]
    table = {r[0]: r for r in body}
    assert table["dense, not fine-tuned"][2:4] == ["none (one-shot)", "0.8500"]
    assert table["magnitude (no fine-tune)"][2] == "none (one-shot)"
    notes = method_notes(rows)
    one = notes["magnitude (no fine-tune)"]
    assert (
        "most accurate weight-level method without fine-tuning at sparsity 0.5, 0.9 "
        "(beyond noise)" in one["strengths"]
    )
    # the fine-tuned ranking ignores the one-shot rows (magnitude 0.90 vs gmp 0.89: tied)
    assert any(
        t.startswith("tied for most accurate weight-level method at")
        for t in notes["magnitude"]["strengths"]
    )
    # one-shot drop is measured from the dense model it was pruned from (0.85), not 0.91
    assert (
        "already 25.0 points below the dense model it was pruned from at sparsity 0.5"
        in (one["weaknesses"])
    )
    md, _ = write_report(tmp_path)
    assert "`prunekit compare --only 'magnitude (no fine-tune)'`" in md.read_text()

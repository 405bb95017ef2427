"""End-to-end pipeline on small data: exact sparsity, save -> load, bad input."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from conftest import needs_fashion
from safetensors.torch import load_file

from prunekit import PrunekitError, RunConfig, load, run, sparsity


def small(**kw: object) -> RunConfig:
    base = dict(
        model="lenet300",
        dataset="synthetic",
        epochs=1,
        finetune_epochs=1,
        latency_repeats=2,
        latency_batch_sizes=[1, 8],
    )
    base.update(kw)
    return RunConfig(**base)


def weight_sparsity(path: Path) -> float:
    t = load_file(str(path / "model.safetensors"))
    ws = [v for k, v in t.items() if k.endswith("weight")]
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def test_run_saves_contract_and_load_is_bit_identical(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = run(small(sparsity=0.8), out=out)
    res = json.loads((out / "result.json").read_text())
    for key in (
        "model",
        "dataset",
        "method",
        "granularity",
        "target_sparsity",
        "achieved_sparsity",
        "params_total",
        "params_nonzero",
        "macs_dense",
        "macs_effective",
        "accuracy_dense",
        "accuracy",
        "latency_ms",
        "size_bytes",
        "seed",
        "config",
    ):
        assert key in res, key
    assert res["achieved_sparsity"] == pytest.approx(round(0.8 * 266200) / 266200, abs=1e-12)
    assert weight_sparsity(out) == pytest.approx(res["achieved_sparsity"], abs=1e-12)
    assert res["params_total"] == 266610
    assert set(res["latency_ms"]) == {"1", "8"}
    # the dense twin is timed in the same loop; speedup is the median of the per-repeat
    # ratios dense / pruned, inside their interquartile range
    for b in ("1", "8"):
        spread = res["timing"]["spread"][b]
        assert res["speedup"][b] == pytest.approx(statistics.median(spread["speedup_ratios"]))
        assert spread["speedup_iqr"][0] <= res["speedup"][b] <= spread["speedup_iqr"][1]
    loaded = load(out)
    x = torch.rand(16, 1, 28, 28)
    r.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), r.model(x))
    assert sparsity(loaded) == pytest.approx(res["achieved_sparsity"], abs=1e-12)


def test_same_seed_same_result(tmp_path: Path) -> None:
    a = run(small(method="random", sparsity=0.5, seed=3)).result
    b = run(small(method="random", sparsity=0.5, seed=3)).result
    assert a["accuracy"] == b["accuracy"] and a["params_nonzero"] == b["params_nonzero"]


@pytest.mark.parametrize("schedule", ["oneshot", "iterative", "cubic"])
def test_schedules_reach_target(schedule: str) -> None:
    res = run(small(sparsity=0.75, schedule=schedule)).result
    assert res["achieved_sparsity"] == pytest.approx(round(0.75 * 266200) / 266200, abs=1e-12)
    assert res["pruning_events"][-1]["target"] == 0.75


def test_layer_scope_and_no_finetune() -> None:
    r = run(small(sparsity=0.6, scope="layer", finetune_epochs=0))
    for name in ("fc1", "fc2", "fc3"):
        layer = r.result["layers"][name]
        assert layer["nonzero"] == layer["params"] - round(0.6 * layer["params"])


def test_neuron_granularity_run() -> None:
    r = run(small(method="l1-filter", sparsity=0.5)).result
    assert r["params_total"] < r["params_total_original"]  # physically smaller, timed as such
    assert set(r["speedup"]) == set(r["latency_ms_dense"]) == set(r["latency_ms"])
    assert r["layers"]["fc1"]["units_alive"] == 150
    assert r["layers"]["fc2"]["units_alive"] == 50
    assert r["layers"]["fc3"]["units_alive"] == 10


def test_output_dir_with_different_run_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(small(sparsity=0.5), out=out)
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(PrunekitError, match="already holds a different run"):
        run(small(sparsity=0.6), out=out)
    assert (out / "model.safetensors").read_bytes() == before
    run(small(sparsity=0.6), out=out, overwrite=True)
    assert json.loads((out / "result.json").read_text())["target_sparsity"] == 0.6


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        (dict(sparsity=1.0), r"sparsity must be in \[0, 1\)"),
        (dict(sparsity=-0.5), r"sparsity must be in \[0, 1\)"),
    ],
)
def test_bad_config(kw: dict, pattern: str) -> None:
    with pytest.raises(PrunekitError, match=pattern):
        small(**kw)


@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        (dict(model="vgg99"), "unknown model 'vgg99'; known: .*lenet300"),
        (dict(dataset="imagenet"), "unknown dataset 'imagenet'; known: .*fashion-mnist"),
        (dict(method="magic"), "unknown method 'magic'; known: .*magnitude"),
        (dict(granularity="blocks"), "unknown granularity 'blocks'"),
        (dict(method_args={"warp": 1}), "does not take option"),
    ],
)
def test_bad_names_fail_before_writing(tmp_path: Path, kw: dict, pattern: str) -> None:
    out = tmp_path / "run"
    with pytest.raises(PrunekitError, match=pattern):
        run(small(**kw), out=out)
    assert not out.exists()


def test_corrupted_saved_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(small(sparsity=0.5), out=out)
    st = out / "model.safetensors"
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 2])
    with pytest.raises(PrunekitError, match="corrupted or truncated"):
        load(out)
    st.write_bytes(data)
    (out / "model.json").write_text("{not json")
    with pytest.raises(PrunekitError, match="model.json is corrupted"):
        load(out)
    with pytest.raises(PrunekitError, match="not a directory"):
        load(tmp_path / "missing")


@needs_fashion
def test_cli_contract_on_fashion_mnist_limited(tmp_path: Path) -> None:
    # The full contract (all 60k images) runs in the slow test below; this one is quick.
    out = tmp_path / "fm"
    res = run(
        RunConfig(
            model="lenet300",
            dataset="fashion-mnist",
            sparsity=0.9,
            epochs=1,
            finetune_epochs=1,
            limit=6000,
            test_limit=2000,
            latency_repeats=2,
        ),
        out=out,
    ).result
    assert res["achieved_sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert weight_sparsity(out) == pytest.approx(res["achieved_sparsity"], abs=1e-12)
    assert res["accuracy"] > 0.6

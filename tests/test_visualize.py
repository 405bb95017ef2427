"""prunekit.visualize: the data behind each picture is exact (hand-counted), the figures
render to PNG, and a real run stores what the report draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import prunekit
from prunekit import visualize as vis
from prunekit.pruning.masks import apply_mask

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("name", "pruned"),
    [("weight", 24), ("neuron", 24), ("nm", 24), ("kernel", 6 * 9)],
)
def test_granularity_pictures_use_the_real_masks(name, pruned):
    w, mask = vis.granularity_masks(name, 0.5)
    assert w.shape == mask.shape
    assert int((mask == 0).sum()) == pruned  # half of 48 weights / of 12 kernels of 3x3
    if name == "neuron":  # whole rows
        assert sorted({float(r.mean()) for r in mask}) == [0.0, 1.0]
    if name == "nm":  # 2 kept in every group of 4 inputs
        assert (mask.reshape(6, 2, 4).sum(-1) == 2).all()
    if name == "kernel":  # whole 3x3 kernels
        assert set(np.unique(mask.reshape(12, 9).sum(1))) == {0.0, 9.0}
    assert vis.figure_png(vis.granularity_figure(name))[:8] == PNG


def test_input_connections_count_surviving_weights_per_pixel():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    mask = torch.tensor([[1, 0, 1, 0], [1, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.float32)
    apply_mask(model[1], mask)
    conn = vis.input_connections(model, (1, 2, 2))
    assert conn == {
        "layer": "1",
        "kind": "input",
        "shape": [1, 2, 2],
        "fan_out": 3,
        "fan_out_original": 3,
        "counts": [3, 1, 2, 0],
    }
    shrunk = vis.input_connections(model, (1, 2, 2), {"1": 5})
    assert shrunk["fan_out_original"] == 5
    assert vis.input_connections(model, (1, 3, 3)) is None  # not the flattened input
    conv = nn.Sequential(nn.Conv2d(2, 4, 3))
    c = vis.input_connections(conv, (2, 8, 8))
    assert (c["kind"], c["shape"], c["counts"][:2]) == ("kernel", [2, 3, 3], [4, 4])
    fig = vis.input_connections_figure({"a": conn, "b": shrunk})
    assert vis.figure_png(fig)[:8] == PNG


def test_units_kept_prefers_the_shrunk_architecture():
    shrunk = {
        "architecture": {"fc1": 150, "fc2": 50, "fc3": 10},
        "architecture_original": {"fc1": 300, "fc2": 100, "fc3": 10},
        "layers": {"fc1": {"units": 150, "units_alive": 150}},  # the small model: 0 % sparse
    }
    assert vis.units_kept(shrunk) == {"fc1": (150, 300), "fc2": (50, 100), "fc3": (10, 10)}
    masked = {"layers": {"fc1": {"units": 300, "units_alive": 120}}}
    assert vis.units_kept(masked) == {"fc1": (120, 300)}
    fig = vis.units_kept_figure({"shrunk": shrunk, "masked": masked})
    assert vis.figure_png(fig)[:8] == PNG


def test_traces_entropies_and_noise_curves():
    r = {
        "accuracy": 0.8,
        "accuracy_gaussian": {"0.3": 0.6, "0.1": 0.75},
        "accuracy_saltpepper": {"0.1": 0.7},
        "pruning_events": [{"step": 10, "target": 0.5}, {"step": 20, "target": 0.9}],
        "objective_report": {
            "trace": [{"step": 1, "lambda": 0.1, "density": 1.0}, {"step": 50, "density": 0.25}],
            "keep_prob_hist": {"edges": [0.0, 0.5, 1.0], "counts": [3, 1]},
            "end": {"units": {"fc1": [0.5, -1.0], "fc2": [2.0]}},
        },
    }
    assert vis.noise_curves(r) == {
        "gaussian": [(0.0, 0.8), (0.1, 0.75), (0.3, 0.6)],
        "saltpepper": [(0.0, 0.8), (0.1, 0.7)],
    }
    assert vis.sparsity_steps(r) == {
        "pruning events": [(10.0, 0.5), (20.0, 0.9)],
        "expected (L0)": [(1.0, 0.0), (50.0, 0.75)],
    }
    assert vis.unit_entropies(r) == {"end": [0.5, -1.0, 2.0]}
    for fig in (
        vis.noise_curves_figure({"m": r}),
        vis.sparsity_steps_figure({"m": r}),
        vis.l0_gates_figure({"m": r}),
        vis.entropy_histogram_figure({"m": r}),
    ):
        assert vis.figure_png(fig)[:8] == PNG


def test_runs_store_what_the_report_draws(tmp_path):
    from conftest import small_run_config

    mag = prunekit.run(small_run_config(method="magnitude")).result
    conn = mag["input_connections"]
    assert conn["layer"] == "fc1" and conn["shape"] == [1, 28, 28]
    assert sum(conn["counts"]) == mag["layers"]["fc1"]["nonzero"]
    ent = prunekit.run(
        small_run_config(method="entropy", sparsity=0.5, method_args={"calibration_batch_size": 32})
    ).result
    units = ent["criterion_report"]["entropy"]["units"]
    assert {n: len(v) for n, v in units.items()} == {"fc1": 300, "fc2": 100}
    assert len(vis.unit_entropies(ent)["at_prune"]) == 400
    l0 = prunekit.run(small_run_config(method="l0", finetune_epochs=1)).result
    hist = l0["objective_report"]["keep_prob_hist"]
    gates = sum(layer["params"] for layer in l0["layers"].values())  # one gate per weight
    assert sum(hist["counts"]) == gates and len(hist["edges"]) == 21


def test_peer_rows_carry_first_layer_connections():
    """Torch-Pruning's model is physically smaller: the fan-out is the kept units',
    the original is the dense model's (the report scales by it)."""
    from conftest import small_run_config

    from prunekit.experiments.peers import run_peer
    from prunekit.pipeline import dataset_for, dense_config, train_dense

    cfg = small_run_config(sparsity=0.5, finetune_epochs=1)
    data = dataset_for(cfg)
    model, _, seconds = train_dense(dense_config(cfg), data)
    result, _ = run_peer("tp-magnitude", cfg, data, (model, seconds))
    conn = result["input_connections"]
    assert (conn["fan_out"], conn["fan_out_original"]) == (150, 300)
    assert sum(conn["counts"]) == 150 * 784  # every kept unit still reads every pixel

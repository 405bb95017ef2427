"""Wanda / SparseGPT on whole models: sequential calibration, allocation, registration."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import small_run_config
from torch import nn
from typer.testing import CliRunner

from prunekit import METHODS, create_model, prune, run, sparsity
from prunekit.cli import app
from prunekit.pruning.masks import clone, effective, prunable_modules
from prunekit.pruning.reconstruction import InputStats, sparsegpt_prune
from prunekit.pruning.reconstruction.allocation import allocate, fit_counts
from prunekit.pruning.reconstruction.calibrate import forward_order
from prunekit.pruning.reconstruction.model import reconstruct
from prunekit.registry import PrunekitError


def _data(n: int = 96, shape: tuple[int, ...] = (1, 28, 28)) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, *shape, generator=gen), torch.randint(0, 10, (n,), generator=gen)


class Swapped(nn.Module):
    """Registers ``late`` before ``early`` but calls ``early`` first."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Linear(6, 3)
        self.early = nn.Linear(8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.late(torch.relu(self.early(x)))


def test_forward_order_follows_calls_not_registration() -> None:
    model = Swapped()
    mods = prunable_modules(model)
    assert list(mods) == ["late", "early"]
    assert forward_order(model, mods, torch.randn(4, 8)) == ["early", "late"]


def test_layers_are_calibrated_on_the_pruned_model_before_them() -> None:
    torch.manual_seed(0)
    model, x = Swapped(), torch.randn(200, 8)
    w_early, w_late = model.early.weight.detach().clone(), model.late.weight.detach().clone()
    reconstruct(
        model, prunable_modules(model), x, algorithm="sparsegpt", sparsity=0.5, scope="layer"
    )
    # by hand: prune 'early' on x, then 'late' on the outputs of the pruned 'early'
    stats = InputStats(8)
    stats.update(x)
    early, _ = sparsegpt_prune(w_early, stats.hessian(), 0.5)
    hidden = torch.relu(x @ early.t() + model.early.bias.detach())
    stats = InputStats(6)
    stats.update(hidden)
    late, _ = sparsegpt_prune(w_late, stats.hessian(), 0.5)
    assert torch.allclose(effective(model.early), early, atol=1e-6)
    assert torch.allclose(effective(model.late), late, atol=1e-5)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_library_prune_exact_sparsity(method: str) -> None:
    model = create_model("lenet300")
    prune(model, method, 0.9, data=_data())
    assert sparsity(model) == pytest.approx(0.9, abs=1e-12)
    layer = create_model("lenet300")
    prune(layer, method, 0.7, scope="layer", data=_data())
    for name, m in prunable_modules(layer).items():
        w = effective(m)
        assert int((w == 0).sum()) == round(0.7 * w.numel()), name


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_nm_on_a_model_keeps_n_of_every_m(method: str) -> None:
    model = create_model("lenet300")
    prune(model, method, 0.5, granularity="nm", n=2, m=4, data=_data())
    for m in prunable_modules(model).values():
        assert ((effective(m) != 0).reshape(-1, 4).sum(1) == 2).all()
    with pytest.raises(PrunekitError, match="fixes sparsity"):
        prune(create_model("lenet300"), method, 0.9, granularity="nm", data=_data())


def test_conv_model_sparsegpt_exact_and_finite() -> None:
    model = create_model("lenet5")
    prune(model, "sparsegpt", 0.8, scope="layer", data=_data(64))
    for name, m in prunable_modules(model).items():
        w = effective(m)
        assert torch.isfinite(w).all()
        assert int((w == 0).sum()) == round(0.8 * w.numel()), name


def test_sparsegpt_keeps_outputs_closer_than_magnitude() -> None:
    x, _ = _data(256)
    dense = create_model("lenet300")
    with torch.no_grad():
        ref = dense(x)
    outs = {}
    for method in ("magnitude", "sparsegpt"):
        model = clone(dense)
        prune(model, method, 0.8, scope="layer", data=(x, None))
        with torch.no_grad():
            outs[method] = float((model(x) - ref).norm())
    assert outs["sparsegpt"] < outs["magnitude"]


def test_already_pruned_weights_stay_pruned() -> None:
    model = create_model("lenet300")
    prune(model, "magnitude", 0.5, scope="layer")
    before = {n: effective(m) == 0 for n, m in prunable_modules(model).items()}
    prune(model, "sparsegpt", 0.8, data=_data())
    assert sparsity(model) == pytest.approx(0.8, abs=1e-12)
    for n, m in prunable_modules(model).items():
        assert (effective(m)[before[n]] == 0).all()


def test_stale_values_under_a_mask_are_ignored() -> None:
    model = create_model("lenet300")
    prune(model, "magnitude", 0.5, scope="layer")
    twin = clone(model)
    with torch.no_grad():  # weight_orig keeps old values under the mask (e.g. decayed)
        for m in prunable_modules(model).values():
            m.weight_orig.add_((m.weight_mask == 0) * 3.0)
    for mdl in (model, twin):
        prune(mdl, "sparsegpt", 0.8, data=_data())
    pairs = zip(prunable_modules(model).items(), prunable_modules(twin).values(), strict=True)
    for (name, a), b in pairs:
        assert torch.allclose(effective(a), effective(b), atol=1e-6), name


def test_neuron_granularity_uses_plain_scores() -> None:
    model = create_model("lenet300")
    prune(model, "wanda", 0.5, granularity="neuron", scope="layer", data=_data())
    rows = effective(model.get_submodule("fc1")).abs().sum(1)
    assert int((rows == 0).sum()) == 150


def test_needs_calibration_data() -> None:
    with pytest.raises(PrunekitError, match="needs calibration data"):
        prune(create_model("lenet300"), "sparsegpt", 0.5)


def test_allocations_sum_exactly() -> None:
    model = create_model("lenet300")
    mods = prunable_modules(model)
    total = sum(m.weight.numel() for m in mods.values())
    x, _ = _data()
    for how in ("global", "owl"):
        counts = allocate(how, model, mods, 0.9, x)
        assert sum(counts.values()) == round(0.9 * total), how
    assert allocate("uniform", model, mods, 0.9, x) == {
        n: round(0.9 * m.weight.numel()) for n, m in mods.items()
    }
    with pytest.raises(PrunekitError, match="unknown allocation 'nope'"):
        allocate("nope", model, mods, 0.9, x)
    # a common shift c: 10(0.5+c) + 100(0.9+c) + 1000(0.95+c) = 1000 -> c = -0.0405,
    # real counts 4.59, 85.95, 909.46 -> floors 4, 85, 909 + the two largest remainders
    assert fit_counts([10, 100, 1000], [0.5, 0.9, 0.95], 1000, [0, 0, 0]) == [5, 86, 909]
    # clipped at 1: 10 + 10(0.1 + c) = 12 -> c = 0.1, counts 10 and 2
    assert fit_counts([10, 10], [0.99, 0.1], 12, [0, 0]) == [10, 2]
    # floors (already pruned weights) are respected
    assert fit_counts([10, 10], [0.0, 0.5], 6, [4, 0]) == [4, 2]


def test_registered_and_routed() -> None:
    for name in ("wanda", "sparsegpt"):
        assert METHODS.get(name).criterion == name
    with pytest.raises(PrunekitError, match="allocation"):
        run(small_run_config(method="wanda", method_args={"bogus": 1}))


def test_pipeline_one_shot_without_finetuning() -> None:
    r = run(
        small_run_config(method="sparsegpt", finetune_epochs=0, method_args={"allocation": "owl"})
    )
    assert r.result["achieved_sparsity"] == pytest.approx(0.9, abs=1e-9)
    assert r.result["pruning_events"] == [{"step": 0, "target": 0.9}]
    assert r.result["bn_recalibration"] == {
        "enabled": True,
        "batchnorm_layers": 0,
        "events": 0,
        "examples": 60,
    }


def test_cli_one_shot(tmp_path) -> None:
    out = tmp_path / "w"
    res = CliRunner().invoke(
        app,
        [
            "prune", "--model", "lenet300", "--dataset", "synthetic", "--method", "wanda",
            "--sparsity", "0.8", "--epochs", "1", "--finetune-epochs", "0", "--limit", "300",
            "--latency-repeats", "1", "--eval-sigmas", "", "--eval-densities", "",
            "-o", "allocation=uniform", "--quiet", "--out", str(out),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == "wanda" and result["config"]["finetune_epochs"] == 0
    assert result["achieved_sparsity"] == pytest.approx(0.8, abs=1e-9)

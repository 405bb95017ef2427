"""Structured surgery: dependency groups, exact removal of dead units, BN folding,
round-to, save -> load of shrunk models, and refusals of what it cannot follow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import prunekit
from prunekit import PrunekitError, RunConfig, create_model, load, run
from prunekit.evaluation import param_counts
from prunekit.pruning.masks import effective
from prunekit.pruning.step import target_modules
from prunekit.storage.modelfile import save_model
from prunekit.surgery import UnsupportedModel, analyze, fold_batchnorm, keep_plan, shrink

ZOO = {  # name -> (input shape, kept units per group at 50 %: exact counts)
    "lenet300": ((1, 28, 28), [150, 50]),
    "lenet5": ((1, 28, 28), [10, 25, 250]),
    "seedcnn": ((1, 28, 28), [16, 32, 256]),
    "resnet20": ((3, 32, 32), [8, 8, 8, 8, 16, 16, 16, 16, 32, 32, 32, 32]),
}


def randomize_bn(model: nn.Module) -> nn.Module:
    """BN with non-trivial statistics: a removed channel must not leak beta."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


class ResidualNet(nn.Module):
    """User-defined: stem conv+BN, a block whose output is added to the stem's, a
    pooled flatten fan-out (each channel -> 4 inputs of the head)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(8)
        self.a = nn.Conv2d(8, 12, 3, padding=1, bias=False)
        self.bna = nn.BatchNorm2d(12)
        self.b = nn.Conv2d(12, 8, 3, padding=1, bias=False)
        self.bnb = nn.BatchNorm2d(8)
        self.head = nn.Linear(8 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn0(self.stem(x)))
        z = F.relu(self.bna(self.a(y)))
        y = F.relu(y + self.bnb(self.b(z)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(y, 2), 1))


@torch.no_grad()
def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.eval()(x)


# -- equivalence: masked model == shrunk model ---------------------------------------------
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_shrink_matches_masked_model_and_reloads(name: str, tmp_path: Path) -> None:
    shape, kept = ZOO[name]
    model = randomize_bn(create_model(name))
    prunekit.prune(model, "l1-filter", 0.5, granularity="neuron")
    x = torch.rand(4, *shape)
    small, info = shrink(model, x)
    assert [g["units"] for g in info["groups"]] == kept
    assert torch.allclose(outputs(small, x), outputs(model, x), rtol=0, atol=1e-5)
    assert param_counts(small)[0] < 0.5 * param_counts(model)[0]
    save_model(tmp_path, small, {"name": name, "kwargs": {}, "input_shape": list(shape)})
    assert torch.equal(outputs(load(tmp_path), x), outputs(small, x))  # _resize rebuilds it


def test_user_residual_model_groups_and_equivalence() -> None:
    model = randomize_bn(ResidualNet())
    groups = analyze(model)
    assert [(g.producers, g.followers, g.consumers, g.fixed) for g in groups] == [
        (["stem", "b"], ["bn0", "bnb"], [("a", 1), ("head", 4)], None),  # tied by the add
        (["a"], ["bna"], [("b", 1)], None),
        (["head"], [], [], "model output"),
    ]
    assert list(target_modules(model, "neuron")) == ["stem", "a", "b"]
    prunekit.prune(model, "l1-filter", 0.5, granularity="neuron")
    # tied: stem and b lose the same 4 channels; their BNs are masked with them
    dead = (effective(model.stem).flatten(1) == 0).all(1)
    assert int(dead.sum()) == 4
    assert torch.equal((effective(model.b).flatten(1) == 0).all(1), dead)
    for bn in (model.bn0, model.bnb):
        assert bool(
            (effective(bn, "weight")[dead] == 0).all() and (effective(bn, "bias")[dead] == 0).all()
        )
        assert bool((effective(bn, "weight")[~dead] != 0).all())
    x = torch.rand(5, 3, 8, 8)
    small, info = shrink(model, x)
    assert (small.stem.out_channels, small.a.out_channels, small.head.in_features) == (4, 6, 16)
    assert small.bn0.num_features == small.bnb.num_features == 4
    assert torch.allclose(outputs(small, x), outputs(model, x), rtol=0, atol=1e-5)


def test_linear_chain_slices_exactly_the_live_rows_and_columns() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight[1] = 0
        model[0].bias[1] = 0
        model[0].weight[3] = 0
        model[0].bias[3] = 0
    small, info = shrink(model, torch.randn(2, 3))
    assert info["units"] == {"0": 2, "2": 2}
    assert torch.equal(small[0].weight, model[0].weight[[0, 2]])
    assert torch.equal(small[0].bias, model[0].bias[[0, 2]])
    assert torch.equal(small[2].weight, model[2].weight[:, [0, 2]])
    assert torch.equal(small[2].bias, model[2].bias)
    assert model[0].weight.shape == (4, 3)  # the original is not changed


def test_flatten_fan_out_keeps_each_channels_spatial_block() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.Flatten(), nn.Linear(3 * 2 * 2, 2))
    with torch.no_grad():
        model[0].weight[1] = 0
        model[0].bias[1] = 0
    small, _ = shrink(model, torch.randn(2, 1, 2, 2))
    # channel c owns inputs 4c..4c+3 (NCHW order): channel 1's block 4..7 goes
    assert torch.equal(small[2].weight, model[2].weight[:, [0, 1, 2, 3, 8, 9, 10, 11]])


def test_bn_beta_keeps_a_zero_filter_alive() -> None:
    """A zero filter followed by BN with beta != 0 outputs a constant: not removable."""
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)
    )
    with torch.no_grad():
        model[0].weight[0] = 0
        model[0].bias[0] = 0
        model[1].bias.fill_(0.5)
    x = torch.randn(2, 1, 5, 5)
    small, _ = shrink(model, x)
    assert small[0].out_channels == 2
    with torch.no_grad():
        model[1].bias[0] = 0
    small, _ = shrink(model, x)
    assert small[0].out_channels == 1
    assert torch.allclose(outputs(small, x), outputs(model, x), rtol=0, atol=1e-6)


def test_depthwise_conv_is_a_follower() -> None:
    model = nn.Sequential(
        nn.Conv2d(2, 6, 1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, groups=6),
        nn.ReLU(),
        nn.Conv2d(6, 3, 1),
    )
    randomize_bn(model)
    (g, _) = analyze(model)
    assert (g.producers, g.followers, g.consumers) == (["0"], ["1", "3"], [("5", 1)])
    prunekit.prune(model, "l1-filter", 0.5, granularity="neuron")
    x = torch.randn(3, 2, 6, 6)
    small, _ = shrink(model, x)
    assert (small[3].in_channels, small[3].out_channels, small[3].groups) == (3, 3, 3)
    assert torch.allclose(outputs(small, x), outputs(model, x), rtol=0, atol=1e-5)


# -- round-to -----------------------------------------------------------------------------
def test_keep_plan_rounds_with_dead_units_then_new_zero_units() -> None:
    alive = torch.tensor([True, False, True, False, False, True])
    assert keep_plan(alive).tolist() == [0, 2, 5]
    assert keep_plan(alive, 2).tolist() == [0, 1, 2, 5]
    assert keep_plan(alive, 8).tolist() == [0, 1, 2, 3, 4, 5, -1, -1]
    with pytest.raises(PrunekitError, match="round_to"):
        keep_plan(alive, 0)


def test_shrink_round_to_pads_to_multiples_and_keeps_outputs() -> None:
    model = randomize_bn(create_model("resnet20"))
    prunekit.prune(model, "l1-filter", 0.6, granularity="neuron")  # 16 -> 6 units
    x = torch.rand(2, 3, 32, 32)
    small, info = shrink(model, x, round_to=8)
    assert [g["units"] for g in info["groups"]][:4] == [8, 8, 8, 8]  # 6 alive + 2 dead
    assert all(u % 8 == 0 for n, u in info["units"].items() if n != "fc")
    assert torch.allclose(outputs(small, x), outputs(model, x), rtol=0, atol=1e-5)
    again, _ = shrink(small, x, round_to=16)  # nothing dead left: new zero units
    assert again.conv1.out_channels == 16 and again.layer3[0].conv1.out_channels == 32
    assert torch.allclose(outputs(again, x), outputs(model, x), rtol=0, atol=1e-5)


def test_neuron_granularity_round_to_keeps_best_extra_units() -> None:
    torch.manual_seed(0)
    ref = create_model("lenet5")
    torch.manual_seed(0)
    rounded = create_model("lenet5")
    prunekit.prune(ref, "l1-filter", 0.5, granularity="neuron")
    prunekit.prune(rounded, "l1-filter", 0.5, granularity="neuron", round_to=8)
    alive = {
        n: int((effective(m).flatten(1) != 0).any(1).sum())
        for n, m in target_modules(rounded, "neuron").items()
    }
    assert alive == {"features.conv1": 16, "features.conv2": 32, "classifier.fc1": 256}
    kept_ref = (effective(ref.features.conv1).flatten(1) != 0).any(1)
    kept = (effective(rounded.features.conv1).flatten(1) != 0).any(1)
    assert bool((kept | ~kept_ref).all())  # a superset of plain 50 % pruning's choice
    l1 = rounded.features.conv1.weight_orig.detach().abs().mean((1, 2, 3))
    assert float(l1[kept & ~kept_ref].min()) >= float(l1[~kept].max())  # the best extras


# -- BatchNorm folding -----------------------------------------------------------------------
def test_fold_batchnorm_resnet20_same_outputs_no_bn_left() -> None:
    model = randomize_bn(create_model("resnet20"))
    folded, names = fold_batchnorm(model)
    assert len(names) == 1 + 9 * 2 + 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(3, 3, 32, 32)
    assert torch.allclose(outputs(folded, x), outputs(model, x), rtol=0, atol=1e-5)


def test_fold_skips_bn_whose_input_is_used_twice() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y

    _, names = fold_batchnorm(Two())
    assert names == []


# -- pipeline -------------------------------------------------------------------------------
def test_pipeline_saves_the_shrunk_resnet20_at_most_035x(tmp_path: Path) -> None:
    """The issue's done-when check, on a small synthetic budget."""
    cfg = RunConfig(
        model="resnet20",
        dataset="synthetic",
        method="l1-filter",
        granularity="neuron",
        sparsity=0.5,
        epochs=1,
        finetune_epochs=1,
        limit=128,
        test_limit=32,
        latency_repeats=1,
        latency_batch_sizes=[1],
        noise_sigmas=[],
        noise_densities=[],
    )
    out = tmp_path / "run"
    r = run(cfg, out=out)
    res = json.loads((out / "result.json").read_text())
    saved = load_file(str(out / "model.safetensors"))
    stats = (
        "running_mean",
        "running_var",
        "num_batches_tracked",
        "normalize.mean",
        "normalize.std",
    )
    n_saved = sum(t.numel() for k, t in saved.items() if not k.endswith(stats))
    dense = create_model("resnet20", in_channels=1, input_size=28)
    n_dense = sum(p.numel() for p in dense.parameters())
    assert n_saved == res["params_total"] and n_dense == res["params_total_original"]
    assert n_saved <= 0.35 * n_dense
    assert res["architecture"]["conv1"] == 8 and res["architecture_original"]["conv1"] == 16
    assert res["architecture"]["layer3.2.conv1"] == 32 and res["architecture"]["fc"] == 10
    assert res["macs_dense"] < 0.35 * res["macs_dense_original"]
    assert res["achieved_sparsity"] > 0.45  # of the masked model, vs the original shapes
    loaded = load(out)
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(outputs(loaded, x), outputs(r.model, x), rtol=0, atol=1e-6)


def test_pipeline_without_shrink_keeps_zeroed_units() -> None:
    cfg = RunConfig(
        model="lenet300",
        dataset="synthetic",
        method="l1-filter",
        sparsity=0.5,
        epochs=0,
        finetune_epochs=0,
        limit=64,
        test_limit=16,
        latency_repeats=1,
        latency_batch_sizes=[1],
        noise_sigmas=[],
        noise_densities=[],
        shrink=False,
    )
    res = run(cfg).result
    assert "architecture" not in res and res["params_total"] == 266610
    assert res["layers"]["fc1"]["units"] == 300 and res["layers"]["fc1"]["units_alive"] == 150


# -- refusals -------------------------------------------------------------------------------
class WithLayer(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.block = nn.Sequential(layer)
        self.head = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.conv(x)).flatten(1))


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (nn.Softmax(dim=1), "unsupported layer Softmax at 'block.0'"),
        (nn.Sigmoid(), "unsupported layer Sigmoid at 'block.0'"),
        (nn.Conv2d(4, 4, 1, groups=2), "grouped convolution 'block.0' (groups=2"),
    ],
)
def test_unsupported_layer_named_with_its_path(layer: nn.Module, message: str) -> None:
    model = WithLayer(layer)
    with pytest.raises(UnsupportedModel, match=message.replace("(", r"\(")):
        shrink(model, torch.randn(1, 1, 6, 6))
    with pytest.warns(UserWarning, match="layer by layer"):  # masks still work, per layer
        prunekit.prune(model, "l1-filter", 0.5, granularity="neuron")


def test_groupnorm_keeps_the_units_it_normalizes() -> None:
    # GroupNorm's statistics span a group of channels: removing a zero channel would move
    # the others' outputs, so the conv before it keeps its units (its group is fixed)
    model = WithLayer(nn.GroupNorm(2, 4))
    groups = analyze(model)
    conv = next(g for g in groups if g.producers == ["conv"])
    assert conv.fixed is not None and "GroupNorm 'block.0'" in conv.fixed
    with torch.no_grad():
        model.conv.weight[1].zero_()
        model.conv.bias[1] = 0.0
    x = torch.randn(2, 1, 6, 6)
    small, info = shrink(model, x)
    assert info["units"]["conv"] == 4


def test_unsupported_function_inside_a_custom_module_is_named() -> None:
    class Gate(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(x)

    with pytest.raises(UnsupportedModel, match="sigmoid in 'block.0'"):
        analyze(WithLayer(Gate()))


def test_untraceable_model_refused() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(UnsupportedModel, match="Branchy cannot be traced"):
        analyze(Branchy())


def test_unsupported_op_on_the_output_side_is_fine() -> None:
    """Softmax on the logits touches only a fixed group: nothing to refuse."""
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3), nn.Softmax(dim=1))
    assert [g.producers for g in analyze(model) if g.fixed is None] == [["0"]]


def test_constant_added_makes_the_group_fixed() -> None:
    class Shift(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(F.relu(self.b(F.relu(self.a(x)) + 1.0)))

    groups = {g.producers[0]: g.fixed for g in analyze(Shift())}
    assert groups["a"] is not None and "constant" in groups["a"] and groups["b"] is None
    assert list(target_modules(Shift(), "neuron")) == ["b"]


def test_every_unit_zero_refused() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
    with pytest.raises(PrunekitError, match="every unit of '0' is zero; at least one must stay"):
        shrink(model)
    with pytest.raises(PrunekitError, match="at least one must stay"):
        prunekit.prune(create_model("lenet5"), "l1-filter", 0.99, granularity="neuron")


def test_output_mismatch_is_caught() -> None:
    """shrink's last line of defence: outputs compared on the example input."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight[0] = 0
        model[0].bias[0] = 0
    small, _ = shrink(model, torch.randn(2, 3))
    with torch.no_grad():
        small[2].bias.add_(1.0)
    from prunekit.surgery.shrink import _check_same

    with pytest.raises(PrunekitError, match="changed the outputs"):
        _check_same(model, small, torch.randn(2, 3))


def test_round_to_is_a_routable_neuron_option_and_ties_are_not() -> None:
    from prunekit.pruning.methods import get_method, with_method_args

    assert with_method_args(get_method("l1-filter"), {"round_to": 8}).granularity_args == {
        "round_to": 8
    }
    with pytest.raises(PrunekitError, match="does not take option.* ties; it takes: round_to"):
        with_method_args(get_method("l1-filter"), {"ties": [["a"]]})


@pytest.mark.slow
def test_cli_done_when_resnet20_synthetic(tmp_path: Path) -> None:
    """The issue's command verbatim (+ one epoch each), then load and ONNX export."""
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "prunekit",
        "prune",
        "--model",
        "resnet20",
        "--dataset",
        "synthetic",
        "--method",
        "l1-filter",
        "--granularity",
        "neuron",
        "--sparsity",
        "0.5",
        "--epochs",
        "1",
        "--finetune-epochs",
        "1",
        "--out",
        str(out),
        "-q",
    ]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path, timeout=1800)
    saved = load_file(str(out / "model.safetensors"))
    n_saved = sum(
        t.numel()
        for k, t in saved.items()
        if "running" not in k and "num_batches" not in k and not k.startswith("normalize.")
    )
    n_dense = sum(
        p.numel() for p in create_model("resnet20", in_channels=1, input_size=28).parameters()
    )
    assert n_saved <= 0.35 * n_dense
    assert outputs(load(out), torch.rand(2, 1, 28, 28)).shape == (2, 10)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "prunekit",
            "export",
            str(out),
            "--onnx",
            str(tmp_path / "m.onnx"),
            "--fold-bn",
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
        timeout=600,
    )

"""Measurement layer: hand-computed figures on tiny models."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import prune

from prunekit.evaluation import (
    accuracy,
    achieved_sparsity,
    compare_latency,
    effective_tensors,
    layer_sparsity,
    macs,
    measure_latency,
    param_counts,
    predict,
    size_bytes,
    summary,
)
from prunekit.registry import PrunekitError


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2))


def nonzero(t: torch.Tensor) -> int:
    return int(torch.count_nonzero(t))


# ---------------------------------------------------------------- MACs


def test_conv_macs_dense_and_half_zeroed() -> None:
    conv = nn.Conv2d(1, 2, 3, bias=False)
    assert macs(conv, (1, 5, 5)) == (162, 162)  # 3*3 out * 2 ch * 1 in * 3*3 kernel
    with torch.no_grad():
        conv.weight.view(-1)[:9] = 0  # half of the 18 weights
    assert macs(conv, (1, 5, 5)) == (162, 81)


def test_conv_then_linear_macs_add_up() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(18, 4)
    )
    assert macs(net, (1, 5, 5)) == (162 + 72, 162 + 72)  # BN/ReLU count 0


def test_linear_macs_count_nonzeros_and_leading_dims() -> None:
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight.view(-1)[[0, 2, 5, 7, 11]] = 1.0
    assert macs(lin, (4,)) == (12, 5)
    assert macs(lin, (7, 4)) == (84, 35)  # 7 leading positions


def test_grouped_and_conv1d_macs() -> None:
    conv = nn.Conv2d(4, 6, 3, groups=2, padding=1)
    assert macs(conv, (4, 5, 5))[0] == 5 * 5 * 6 * (4 // 2) * 3 * 3
    conv1d = nn.Conv1d(3, 4, 3, stride=2)  # length 9 -> 4
    assert macs(conv1d, (3, 9))[0] == 4 * 4 * 3 * 3


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.conv(x))  # shared layer called twice


def test_macs_follow_real_forward_including_reuse() -> None:
    assert macs(Residual(), (2, 4, 4))[0] == 2 * (4 * 4 * 2 * 2 * 3 * 3)


def test_macs_use_mask_and_restore_state() -> None:
    net = mlp().train()
    net[2].eval()
    prune.custom_from_mask(net[0], "weight", torch.zeros(5, 10))
    assert macs(net, (10,)) == (60, nonzero(net[2].weight))
    assert net.training and net[0].training and not net[2].training
    assert all(not m._forward_hooks for m in net.modules())


def test_macs_removes_hooks_on_error() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.fc(x)
            raise RuntimeError("boom")

    model = Broken().train()
    with pytest.raises(RuntimeError):
        macs(model, (2,))
    assert not model.fc._forward_hooks and model.training


# ---------------------------------------------------------------- params / masks


def test_param_counts_with_l1_unstructured() -> None:
    net = mlp()
    prune.l1_unstructured(net[0], "weight", amount=30)
    total, nz = param_counts(net)
    assert total == 50 + 5 + 10 + 2
    mask = net[0].weight_mask
    others = nonzero(net[0].bias) + nonzero(net[2].weight) + nonzero(net[2].bias)
    assert nz == int(mask.sum()) + others == 20 + others


def test_custom_from_mask_uses_mask_not_stale_attribute() -> None:
    net = mlp()
    mask = (torch.rand(5, 10) > 0.5).float()
    prune.custom_from_mask(net[0], "weight", mask)
    net[0].weight_mask.zero_()  # module.weight is now stale until the next forward
    total, nz = param_counts(net)
    assert total == 67
    assert nz == nonzero(net[0].bias) + nonzero(net[2].weight) + nonzero(net[2].bias)
    assert layer_sparsity(net)["0"]["nonzero"] == 0


def test_effective_tensors_public_names_and_strict_load() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(18, 3))
    fresh = copy.deepcopy(net)
    prune.l1_unstructured(net[0], "weight", amount=0.5)
    prune.random_unstructured(net[3], "weight", amount=0.7)
    tensors = effective_tensors(net)
    assert not any(k.endswith(("_orig", "_mask")) for k in tensors)
    assert {"1.running_mean", "1.running_var", "1.num_batches_tracked"} <= set(tensors)
    torch.testing.assert_close(tensors["3.weight"], net[3].weight_orig * net[3].weight_mask)
    fresh.load_state_dict(tensors, strict=True)
    assert torch.equal(fresh[3].weight, net[3].weight_orig * net[3].weight_mask)
    assert nonzero(fresh[3].weight) <= 54 - 38  # 70 % of 54 pruned (38)


def test_effective_tensors_skip_non_persistent_buffers() -> None:
    net = mlp()
    net.register_buffer("scratch", torch.ones(3), persistent=False)
    net.register_buffer("scale", torch.ones(3))
    assert "scratch" not in effective_tensors(net)
    assert "scale" in effective_tensors(net)


def test_tied_weights_count_once_and_serialise() -> None:
    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    net[1].weight = net[0].weight
    assert param_counts(net)[0] == 16
    assert set(effective_tensors(net)) == {"0.weight", "1.weight"}
    assert size_bytes(net)["raw"] > 0


# ---------------------------------------------------------------- sparsity


def test_layer_sparsity_units_alive() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(36, 3))
    with torch.no_grad():
        net[0].weight[1:3] = 0  # two whole output channels
        net[2].weight[0] = 0
        net[2].weight[2] = 0
    layers = layer_sparsity(net)
    assert layers["0"] == {
        "params": 36,
        "nonzero": 18,
        "sparsity": 0.5,
        "units": 4,
        "units_alive": 2,
    }
    assert layers["2"]["units"] == 3 and layers["2"]["units_alive"] == 1
    assert layers["2"]["nonzero"] == 36


def test_achieved_sparsity_ignores_biases_and_bn() -> None:
    net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    with torch.no_grad():
        net[0].weight.view(-1)[:15] = 0
        net[0].bias.zero_()
        net[1].weight.zero_()
        net[2].weight.fill_(1.0)
    assert achieved_sparsity(net) == pytest.approx(15 / 30)
    total, nz = param_counts(net)
    assert achieved_sparsity(net, "all") == pytest.approx(1 - nz / total)
    with pytest.raises(PrunekitError):
        achieved_sparsity(net, "everything")


# ---------------------------------------------------------------- bytes


def test_size_bytes_gzip_shrinks_with_zeros_and_raw_matches_file(tmp_path) -> None:
    dense = nn.Linear(200, 200)
    pruned = copy.deepcopy(dense)
    prune.l1_unstructured(pruned, "weight", amount=0.9)
    d, p = size_bytes(dense), size_bytes(pruned)
    assert d["raw"] == p["raw"]
    assert p["gzip"] < 0.5 * d["gzip"]
    path = tmp_path / "m.safetensors"
    save_file(effective_tensors(pruned), str(path))
    assert path.stat().st_size == p["raw"]
    assert set(load_file(str(path))) == {"weight", "bias"}


def test_summary_keys() -> None:
    s = summary(mlp(), (10,))
    assert s["params_total"] == 67 and s["macs_dense"] == 60 and s["achieved_sparsity"] == 0.0
    assert set(s) == {
        "params_total",
        "params_nonzero",
        "achieved_sparsity",
        "macs_dense",
        "macs_effective",
        "size_bytes",
        "size_bytes_gzip",
        "layers",
    }
    assert set(s["layers"]) == {"0", "2"}


# ---------------------------------------------------------------- latency


def test_measure_latency_restores_threads_and_mode() -> None:
    net = mlp().train()
    before = torch.get_num_threads()
    res = measure_latency(net, (10,), repeats=3, warmup=1, threads=1)
    assert set(res) == {"1", "64"}
    assert all(isinstance(v, float) and v > 0 for v in res.values())
    assert torch.get_num_threads() == before and net.training


def test_measure_latency_min_time() -> None:
    res = measure_latency(mlp(), (10,), (2,), repeats=2, warmup=0, min_time_s=0.002)
    assert res["2"] > 0


def test_compare_latency_one_entry_per_candidate() -> None:
    a, b = mlp(), mlp()
    prune.l1_unstructured(b[0], "weight", amount=0.5)
    res = compare_latency({"dense": a, "pruned": b}, (10,), 8, repeats=3, warmup=1)
    assert set(res) == {"dense", "pruned"} and all(v > 0 for v in res.values())


@pytest.mark.parametrize(
    "kwargs",
    [{"batch_sizes": (0,)}, {"batch_sizes": ()}, {"repeats": 0}, {"warmup": -1}, {"threads": 0}],
)
def test_measure_latency_bad_input(kwargs: dict) -> None:
    with pytest.raises(PrunekitError):
        measure_latency(mlp(), (10,), **kwargs)


def test_compare_latency_bad_input() -> None:
    with pytest.raises(PrunekitError):
        compare_latency({}, (10,), 1)
    with pytest.raises(PrunekitError):
        compare_latency({"m": mlp()}, (10,), 0)
    with pytest.raises(PrunekitError):
        macs(mlp(), ())


# ---------------------------------------------------------------- accuracy


def constant_classifier(cls: int, n_classes: int = 4) -> nn.Linear:
    lin = nn.Linear(3, n_classes)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        lin.bias[cls] = 1.0
    return lin


def test_accuracy_of_constant_prediction_is_class_frequency() -> None:
    x = torch.randn(101, 3)
    y = torch.randint(0, 4, (101,))
    model = constant_classifier(2).train()
    assert accuracy(model, x, y, batch_size=7) == pytest.approx(float((y == 2).float().mean()))
    assert model.training
    assert predict(model, x, 10).tolist() == [2] * 101


def test_accuracy_bad_input() -> None:
    model = constant_classifier(0)
    with pytest.raises(PrunekitError):
        accuracy(model, torch.empty(0, 3), torch.empty(0, dtype=torch.long))
    with pytest.raises(PrunekitError):
        accuracy(model, torch.randn(4, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(PrunekitError):
        predict(model, torch.randn(4, 3), batch_size=0)


def test_one_interleaved_sampler_orders_and_clocks() -> None:
    """The single timing loop: alternate reverses the order on odd rounds, warm-up rounds
    are not recorded, and a sample is clock time per call (a fake clock: 1/1024 s a tick)."""
    from prunekit.evaluation.latency import interleaved_samples

    order: list[str] = []
    ticks = iter(range(10_000))
    ms = interleaved_samples(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")},
        repeats=2,
        warmup=1,
        alternate=True,
        clock=lambda: next(ticks) / 1024,
    )
    assert order == ["a", "b", "b", "a", "a", "b"]
    tick_ms = 1000 / 1024  # exact in binary: every sample is one tick
    assert ms == {"a": [tick_ms, tick_ms], "b": [tick_ms, tick_ms]}
    with pytest.raises(PrunekitError, match="at least one candidate"):
        interleaved_samples({})

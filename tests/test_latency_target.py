"""Latency tables, the predictor, latency-targeted allocation and depth pruning."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from prunekit import RunConfig
from prunekit.latency import LatencyModel, grid
from prunekit.latency.allocate import allocate, kept, log_kept, uniform
from prunekit.latency.depth import block_importance, removable_blocks, without_blocks
from prunekit.latency.table import TableCache, table_key
from prunekit.latency.target import Target, prepare, run_target
from prunekit.models import create_model
from prunekit.registry import PrunekitError
from prunekit.storage.modelfile import save_model
from prunekit.storage.saving import load


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 12, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12 * 4 * 4, 10),
    )


def test_grid_widths():
    assert grid(6) == [1, 2, 3, 4, 5, 6]
    assert grid(20) == [4, 8, 12, 16, 20]
    assert grid(50) == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 50]
    assert grid(500)[:3] == [32, 64, 96] and grid(500)[-1] == 500 and len(grid(500)) == 16


def test_cache_is_keyed_and_survives_corruption(tmp_path):
    key = table_key("eager", 2, 1)
    c = TableCache(key, tmp_path)
    c.entries["x"] = 1.5
    c.save()
    assert TableCache(key, tmp_path).entries == {"x": 1.5}
    assert TableCache(table_key("eager", 4, 1), tmp_path).entries == {}  # other batch size
    c.path.write_text("{not json")
    assert TableCache(key, tmp_path).entries == {}
    assert key["torch"] == torch.__version__ and key["runtime"] == "eager"


@pytest.mark.parametrize("runtime", ["eager", pytest.param("onnxruntime", marks=pytest.mark.slow)])
def test_table_measured_once_then_cached(tmp_path, runtime):
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    m = tiny()
    lm = LatencyModel(m, (1, 8, 8), runtime=runtime, batch_size=2, cache_dir=tmp_path, repeats=1)
    assert [g.producers for g in lm.groups] == [["0"], ["3"]]
    assert [(layer.name, layer.fan) for layer in lm.layers] == [("0", 1), ("3", 1), ("6", 16)]
    # conv0: 1 x 8 widths, conv3: 8 x grid(12)=3, linear: 3 x 1
    assert lm.measure_table() == 8 + 8 * 3 + 3
    again = LatencyModel(m, (1, 8, 8), runtime=runtime, batch_size=2, cache_dir=tmp_path, repeats=1)
    assert again.measure_table() == 0
    data = json.loads(lm.cache.path.read_text())
    assert data["key"]["batch_size"] == 2 and data["key"]["runtime"] == runtime
    assert len(data["entries"]) == 35 and lm.cache.path.name.startswith(runtime)
    report = lm.calibrate(n_random=2)
    assert set(report["measured"]) == {"dense", "half", "min", "random0", "random1"}
    assert math.isfinite(lm.predict(lm.full)) and lm.predict(lm.full) > 0


def test_with_widths_keeps_the_best_units_and_shapes(tmp_path):
    m = tiny().eval()
    lm = LatencyModel(m, (1, 8, 8), batch_size=2, cache_dir=tmp_path, repeats=1)
    scores = [torch.arange(8.0), torch.arange(12.0)]
    small = lm.with_widths(m, [3, 4], scores)
    assert small[0].out_channels == 3 and small[3].in_channels == 3
    assert small[3].out_channels == 4 and small[6].in_features == 4 * 16
    # the top-3 units by score are 5, 6, 7
    assert torch.equal(small[0].weight, m[0].weight[5:8])


class FakeLM:
    """Predicted latency = sum of widths times per-group unit costs (hand-checkable)."""

    def __init__(self, cost):
        self.cost = cost
        self.grids = [[1, 2, 3, 4], [1, 2, 3, 4]]
        self.full = [4, 4]
        self.groups = [object(), object()]

    def predict(self, w, removed=()):
        return sum(c * x for c, x in zip(self.cost, w, strict=True))


def test_kept_importance_formula():
    s = torch.tensor([4.0, 1.0, 3.0, 2.0])
    assert kept(s, 2) == 7.0
    assert log_kept(s, 2) == pytest.approx(math.log(7 / 10))
    assert log_kept(torch.zeros(4), 1) == pytest.approx(math.log(1 / 4))


def test_allocation_prunes_where_latency_is_cheap_to_buy():
    # group 0 costs 10 per unit, group 1 costs 1: same scores, so group 0 goes first
    lm = FakeLM([10.0, 1.0])
    scores = [torch.ones(4), torch.ones(4)]
    a = allocate(lm, scores, target=30.0)
    assert a.widths == [2, 4] and a.predicted == 24.0 <= 30.0
    # uniform keeps the same fraction everywhere: 50 % -> 2 + 2 -> 22
    assert uniform(lm, 30.0) == [2, 2]


def test_allocation_protects_important_units():
    lm = FakeLM([1.0, 1.0])
    scores = [torch.tensor([10.0, 10.0, 10.0, 10.0]), torch.tensor([10.0, 10.0, 0.1, 0.1])]
    a = allocate(lm, scores, target=6.0)
    assert a.widths == [4, 2]  # group 1's two near-zero units go, nothing else


def test_target_checks_are_one_line_errors(monkeypatch):
    with pytest.raises(PrunekitError, match="exactly one"):
        Target().check()
    with pytest.raises(PrunekitError, match="must be > 1"):
        Target(speedup=0.5).check()
    with pytest.raises(PrunekitError, match="unknown runtime"):
        Target(speedup=2, runtime="tensorrt").check()
    import sys

    monkeypatch.setattr(
        sys.modules["prunekit.inference.deploy"], "_available", lambda r: r != "onnxruntime"
    )
    with pytest.raises(PrunekitError, match="onnxruntime is not installed"):
        Target(speedup=2, runtime="onnxruntime").check()


def test_no_structured_groups_and_unreachable_target(tmp_path):
    head_only = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with pytest.raises(PrunekitError, match="has no structured groups"):
        prepare(head_only, (1, 4, 4), Target(speedup=2, batch_size=2, cache_dir=tmp_path), "m")
    with pytest.raises(PrunekitError, match=r"cannot be reached .* best reachable is \d"):
        prepare(tiny(), (1, 8, 8), Target(speedup=1000, batch_size=2, cache_dir=tmp_path), "m")


def test_structured_method_required_before_training():
    cfg = RunConfig(model="lenet5", dataset="synthetic", method="magnitude", sparsity=0.0)
    with pytest.raises(PrunekitError, match="structured method"):
        run_target(cfg, Target(speedup=2))


def test_depth_blocks_exact_identity_and_importance():
    m = create_model("resnet20", in_channels=1, input_size=8).eval()
    names = removable_blocks(m)
    assert names == ["layer1.0", "layer1.1", "layer1.2", "layer2.1", "layer2.2"] + [
        "layer3.1",
        "layer3.2",
    ]
    # a block whose branch outputs exactly zero (bn2 gamma = beta = 0) IS the identity
    with torch.no_grad():
        m.layer2.get_submodule("1").bn2.weight.zero_()
        m.layer2.get_submodule("1").bn2.bias.zero_()
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    small = without_blocks(m, ["layer2.1"]).eval()
    assert isinstance(small.layer2.get_submodule("1"), nn.Identity)
    torch.testing.assert_close(small(x), m(x), rtol=0, atol=1e-6)
    imp = block_importance(m, x, y)
    assert set(imp) == set(names) and abs(imp["layer2.1"]) < 1e-6


def test_depth_pruned_model_saves_and_loads(tmp_path):
    m = create_model("resnet20", in_channels=1, input_size=8).eval()
    small = without_blocks(m, ["layer3.2"])
    arch = {
        "name": "resnet20",
        "kwargs": {"in_channels": 1, "input_size": 8},
        "input_shape": [1, 8, 8],
        "identity": ["layer3.2"],
    }
    save_model(tmp_path, small, arch)
    back = load(tmp_path)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(back(x), small.eval()(x))


def test_thread_clock_times_and_rejects_unknown_clocks():
    from prunekit.latency.table import compare

    m = nn.Linear(64, 64)
    ms = compare({"a": m, "b": nn.Linear(64, 8)}, (64,), 4, repeats=2, min_time_s=0.001)
    assert set(ms) == {"a", "b"} and all(v > 0 for v in ms.values())
    with pytest.raises(PrunekitError, match="clock must be one of thread, wall"):
        compare({"a": m}, (64,), 1, clock="cpu")
    with pytest.raises(PrunekitError, match="clock must be one of"):
        LatencyModel(tiny(), (1, 8, 8), clock="gpu")


def test_fill_gives_back_what_fits_under_the_budget():
    from prunekit.latency.allocate import fill

    lm = FakeLM([10.0, 1.0])
    scores = [torch.ones(4), torch.ones(4)]
    # group 0 cannot grow (2 -> 3 would be 32 > 30); group 1 grows to full width
    assert fill(lm, scores, [2, 2], 30.0) == ([2, 4], 24.0)


def test_layer_weighting_protects_groups_tied_across_layers():
    lm = FakeLM([1.0, 1.0])
    scores = [torch.ones(4), torch.ones(4)]
    # equal cost and scores: unweighted, the log objective splits the cut evenly
    assert allocate(lm, scores, target=6.0).widths == [3, 3]
    # group 0 produced by 3 tied layers: removing its units costs 3x, group 1 goes instead
    assert allocate(lm, scores, target=6.0, weights=[3, 1]).widths == [4, 2]


def test_the_target_is_part_of_the_run_identity() -> None:
    """The same flags with another latency target are another run: ``--out`` then
    refuses to replace one with the other (the hash goes into check_out_dir)."""
    from prunekit.config import RunConfig
    from prunekit.latency.target import Target, target_fields, target_hash

    cfg = RunConfig(model="lenet5", method="l1-filter", sparsity=0.0)
    two = target_hash(cfg, Target(speedup=2.0))
    assert two == target_hash(cfg, Target(speedup=2.0, cache_dir="/elsewhere"))
    assert two != target_hash(cfg, Target(speedup=3.0))
    assert two != target_hash(cfg, Target(speedup=2.0, runtime="onnxruntime"))
    assert two != target_hash(
        RunConfig(model="lenet5", method="l1-filter", sparsity=0.0, seed=1), Target(speedup=2.0)
    )
    assert "cache_dir" not in target_fields(Target(speedup=2.0))


def test_nonnegative_relative_fit_by_hand():
    from prunekit.latency.table import fit_nonnegative

    # exact: y = 2 * layer_sum + 0.5 * volume + 1 (every coefficient recovered)
    x = torch.tensor(
        [[1.0, 0.2, 1], [2.0, 0.5, 1], [3.0, 0.1, 1], [5.0, 1.0, 1]], dtype=torch.float64
    )
    y = x @ torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64)
    assert fit_nonnegative(x, y).tolist() == pytest.approx([2.0, 0.5, 1.0])
    # y = 2 * layer_sum - 1: unconstrained least squares gives the intercept -1 (a
    # negative time); the constrained fit drops it and refits the scale on the rest
    y = x[:, 0] * 2 - 1
    c = fit_nonnegative(x[:, [0, 2]], y)
    assert c[1] == 0.0 and c[0] > 0
    # relative error: the scale minimizes sum (c x_i / y_i - 1)^2, by hand
    r = x[:, 0] / y
    assert c[0] == pytest.approx(float(r.sum() / (r * r).sum()))


def test_predictor_has_one_volume_term_per_resolution(tmp_path):
    m = tiny()
    lm = LatencyModel(m, (1, 8, 8), batch_size=2, cache_dir=tmp_path, repeats=1)
    # conv0 out 6x6, conv3 out 4x4, the Linear 1: three resolutions
    assert lm.resolutions == [36, 16, 1]
    f = lm.features(lm.full) if lm.measure_table() >= 0 else None
    dense = 8 * 36 + 12 * 16 + 10
    assert f[1:] == pytest.approx([8 * 36 / dense, 12 * 16 / dense, 10 / dense, 1.0])
    report = lm.calibrate(n_random=3)
    assert set(report["volume_terms"]) == {"36", "16", "1"}
    assert all(c >= 0 for c in lm.coef)
    assert lm.predict(lm.full) == pytest.approx(sum(c * v for c, v in zip(lm.coef, f, strict=True)))


class _Res(nn.Module):
    """conv0 -> (conv1 -> conv2) + residual, conv3, head: one tied group (conv0, conv2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Linear(6 * 4 * 4, 10)

    def forward(self, x):
        x = self.conv0(x)
        x = x + self.conv2(torch.relu(self.conv1(x)))
        return self.head(torch.relu(self.conv3(x)).flatten(1))


def test_touched_weighting_counts_producers_and_consumers(tmp_path):
    from prunekit.latency.allocate import group_weights

    lm = LatencyModel(_Res(), (1, 4, 4), batch_size=2, cache_dir=tmp_path, repeats=1)
    assert [g.producers for g in lm.groups] == [["conv0", "conv2"], ["conv1"], ["conv3"]]
    # residual stream: written by conv0 and conv2, read by conv1 and conv3 -> 4 layers;
    # conv1's units: conv1 and conv2 -> 2; conv3's: conv3 and the head -> 2
    assert group_weights(lm.groups, "touched") == [4.0, 2.0, 2.0]
    assert group_weights(lm.groups, "layers") == [2.0, 1.0, 1.0]
    assert group_weights(lm.groups, "group") == [1.0, 1.0, 1.0]
    with pytest.raises(PrunekitError, match="weighting must be one of"):
        group_weights(lm.groups, "bytes")


def test_deployed_scores_fold_batchnorm_and_read_consumers(tmp_path):
    from prunekit.latency.target import group_scores
    from prunekit.pruning.criteria import Context

    m = tiny().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(1.0)
        m[0].weight[2].fill_(2.0)  # filter 2 twice the others...
        m[1].weight.fill_(1.0)
        m[1].weight[2] = 0.25  # ...but BN scales it by 0.25: deployed it is the smallest
        m[1].running_var.fill_(1.0 - m[1].eps)  # sqrt(var + eps) = 1
        m[3].weight[:, 5].fill_(3.0)  # conv3 reads channel 5 with 3x weights
        m[6].weight[:, 7 * 16 : 8 * 16].fill_(0.0)  # the head never reads conv3's unit 7
    lm = LatencyModel(m, (1, 8, 8), batch_size=2, cache_dir=tmp_path, repeats=1)
    ctx = Context()
    raw = group_scores(m, lm, "magnitude", ctx, scoring="producers")
    assert int(raw[0].argmax()) == 2 and torch.allclose(raw[1], torch.full((12,), 1.25))
    dep = group_scores(m, lm, "magnitude", ctx, scoring="deployed")
    # group 0, unit c: mean of conv0's (folded) |W'| row and conv3's |W[:, c]|, each
    # divided by its mean over the 8 units: unit 2 -> 0.5 / mean0, unit 5 -> 3 / mean3
    folded = torch.ones(8)
    folded[2] = 0.5
    consumer = torch.ones(8)
    consumer[5] = 3.0
    expect0 = (folded / folded.mean() + consumer / consumer.mean()) / 2
    assert torch.allclose(dep[0], expect0)
    assert int(dep[0].argmin()) == 2 and int(dep[0].argmax()) == 5
    # group 1: conv3's rows (all the same) and the head's 16 flattened columns per unit
    assert float(dep[1][7]) == pytest.approx(0.5 * 1 + 0.5 * 0.0) and int(dep[1].argmin()) == 7
    with pytest.raises(PrunekitError, match="scoring must be one of"):
        group_scores(m, lm, "magnitude", ctx, scoring="bn")


def test_tplike_scores_read_raw_filters_batchnorm_gammas_and_consumers(tmp_path):
    from prunekit.latency.target import group_scores
    from prunekit.pruning.criteria import Context

    m = tiny().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(1.0)
        m[0].weight[2].fill_(2.0)  # raw filter 2: twice the others
        m[1].weight[2] = 0.25  # its BN gamma a quarter
        m[1].running_var.fill_(3.0)  # tplike does not fold: the variance plays no part
        m[3].weight[:, 5].fill_(3.0)  # conv3 reads channel 5 with 3x weights
        m[6].weight[:, 7 * 16 : 8 * 16].fill_(0.0)
    lm = LatencyModel(m, (1, 8, 8), batch_size=2, cache_dir=tmp_path, repeats=1)
    s = group_scores(m, lm, "magnitude", Context(), scoring="tplike")
    # group 0, three layers, each divided by its mean over the 8 units:
    # filters 1,1,2,1,... (mean 9/8), gammas 1,1,1/4,1,... (mean 29/32), consumer
    # columns 1,...,3 at unit 5 (mean 5/4)
    unit0 = (8 / 9 + 32 / 29 + 4 / 5) / 3
    unit2 = (16 / 9 + 8 / 29 + 4 / 5) / 3
    unit5 = (8 / 9 + 32 / 29 + 12 / 5) / 3
    assert float(s[0][0]) == pytest.approx(unit0)
    assert float(s[0][2]) == pytest.approx(unit2)
    assert float(s[0][5]) == pytest.approx(unit5)
    # folded, filter 2 would be the weakest (2 * 1/4); raw, its filter outweighs its gamma
    assert float(s[0][2]) > float(s[0][0]) and int(s[0].argmax()) == 5
    # group 1 has no BatchNorm: conv3's rows and the head's columns, as deployed reads them
    dep = group_scores(m, lm, "magnitude", Context(), scoring="deployed")
    assert torch.allclose(s[1], dep[1]) and float(s[1][7]) == pytest.approx(0.5)


def test_tplike_reads_batchnorm_gammas_only_with_the_magnitude_criterion(tmp_path):
    from prunekit.latency.target import group_scores
    from prunekit.pruning.criteria import Context

    m = tiny().eval()
    lm = LatencyModel(m, (1, 8, 8), batch_size=2, cache_dir=tmp_path, repeats=1)
    plain = group_scores(
        m, lm, "random", Context(generator=torch.Generator().manual_seed(0)), scoring="tplike"
    )
    with torch.no_grad():
        m[1].weight[7] = 50.0  # one huge BN gamma
    big = group_scores(
        m, lm, "random", Context(generator=torch.Generator().manual_seed(0)), scoring="tplike"
    )
    # random scores do not depend on the weights, and no gamma is mixed into them
    assert all(torch.equal(a, b) for a, b in zip(plain, big, strict=True))
    mag = group_scores(m, lm, "magnitude", Context(), scoring="tplike")
    assert int(mag[0].argmax()) == 7  # magnitude does read it

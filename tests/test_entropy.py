"""Entropy family (issue 5): estimators, activation taps, the entropy criterion, the
maxent/minent objectives, the methods end to end, and bad input."""

from __future__ import annotations

import json
import math
import shlex
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from conftest import needs_fashion
from torch import nn

from prunekit import PrunekitError, RunConfig, prune, run
from prunekit.cli import main
from prunekit.models import create_model
from prunekit.pruning.criteria import CRITERIA, Context
from prunekit.pruning.entropy import (
    LOG_2PI_E,
    RunningMoments,
    batch_gaussian_entropy,
    find_taps,
    gaussian_entropy,
    histogram_entropy,
    unit_entropies,
)
from prunekit.pruning.methods import get_method, with_method_args
from prunekit.pruning.objectives import OBJECTIVES


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """One torch thread: on the shared 2-core machine two threads under contention ran
    10-30x slower per example (measured for benchmarks/entropy.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- estimators ------------------------------------------------------------------------
def test_gaussian_estimator_matches_closed_form() -> None:
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0])
    x = torch.randn(200_000, 4, dtype=torch.float64) * sigma
    expected = 0.5 * torch.log(2 * math.pi * math.e * sigma.double() ** 2)
    got = batch_gaussian_entropy(x, eps=1e-12)
    assert torch.allclose(got, expected, atol=0.01)
    assert got[0] < 0 < got[3]  # differential entropy is negative for small sigma
    # The closed form itself, and the floor for a constant unit.
    assert float(gaussian_entropy(torch.tensor(1.0), eps=0.0)) == pytest.approx(0.5 * LOG_2PI_E)
    assert float(gaussian_entropy(torch.tensor(0.0), eps=1e-6)) == pytest.approx(
        0.5 * (LOG_2PI_E + math.log(1e-6))
    )


def test_running_moments_over_batches_equal_one_pass_variance() -> None:
    x = torch.randn(1000, 3, dtype=torch.float64) * 2 + 5
    m = RunningMoments()
    for chunk in x.split(128):
        m.update(chunk)
    assert torch.allclose(m.var(), x.var(0, unbiased=False), atol=1e-12)


def test_histogram_uniform_is_log_bins_and_constant_is_zero() -> None:
    even = torch.arange(1000.0).view(-1, 1)  # exactly 100 values per bin of 10
    assert float(histogram_entropy(even, bins=10)[0]) == pytest.approx(math.log(10), abs=1e-12)
    u = torch.rand(100_000, 2)
    assert torch.allclose(
        histogram_entropy(u, bins=16),
        torch.full((2,), math.log(16), dtype=torch.float64),
        atol=0.01,
    )
    const = torch.full((500, 3), 0.7)
    assert torch.equal(histogram_entropy(const, bins=32), torch.zeros(3, dtype=torch.float64))


def two_point_model(x_scale: float = 1.0) -> nn.Sequential:
    """fc: identity on 2 inputs (no nonlinearity), so unit activations are the inputs."""
    fc = nn.Linear(2, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.eye(2) * x_scale)
        fc.bias.zero_()
    return nn.Sequential(OrderedDict(fc=fc, head=nn.Linear(2, 2)))


def test_calibration_pass_equals_one_batch_estimate_for_both_estimators() -> None:
    model = two_point_model()
    x = torch.randn(1024, 2) * torch.tensor([0.5, 2.0])
    layers = {"fc": model.fc}
    hist = unit_entropies(model, x, layers, estimator="histogram", bins=20, batch_size=256)
    assert torch.allclose(hist["fc"].double(), histogram_entropy(x, bins=20), atol=1e-5)
    gauss = unit_entropies(model, x, layers, estimator="gaussian", batch_size=256)
    assert torch.allclose(gauss["fc"].double(), batch_gaussian_entropy(x.double()), atol=1e-5)
    # Only the requested full batches are used.
    one = unit_entropies(model, x, layers, estimator="gaussian", batch_size=256, batches=1)
    assert torch.allclose(one["fc"].double(), batch_gaussian_entropy(x[:256].double()), atol=1e-5)


# -- where activations are read ------------------------------------------------------------
def mlp_with_dead_unit(dead: int = 2) -> nn.Sequential:
    """fc1 (4 -> 6) + ReLU: every unit active with a varying output except ``dead``, whose
    pre-activation varies but is always negative (a dead ReLU)."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 6), relu1=nn.ReLU(), fc2=nn.Linear(6, 3)))
    with torch.no_grad():
        model.fc1.bias.fill_(5.0)
        model.fc1.bias[dead] = -100.0
    return model


def test_taps_read_after_the_nonlinearity() -> None:
    taps = find_taps(mlp_with_dead_unit(), {"fc1": nn.Module()})
    assert taps["fc1"].hook == "relu1" and taps["fc1"].path == "fc1 -> relu1"
    resnet = create_model("resnet20", in_channels=1, input_size=28)
    t = find_taps(
        resnet, {"layer1.0.conv1": resnet.layer1[0].conv1, "layer1.0.conv2": resnet.layer1[0].conv2}
    )
    assert t["layer1.0.conv1"].path == "layer1.0.conv1 -> layer1.0.bn1 -> layer1.0.relu1"
    assert t["layer1.0.conv2"].hook == "layer1.0.bn2"  # the residual sum is not the unit's own


def test_functional_relu_is_applied_to_the_hooked_output() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x)))

    model = Functional()
    with torch.no_grad():
        model.fc1.bias.fill_(5.0)
        model.fc1.bias[4] = -100.0
    tap = find_taps(model, {"fc1": model.fc1})["fc1"]
    assert tap.hook == "fc1" and tap.post is not None and tap.path == "fc1 -> relu"
    h = unit_entropies(model, torch.randn(256, 4), {"fc1": model.fc1}, estimator="histogram")
    assert float(h["fc1"][4]) == 0.0 and bool((h["fc1"][[0, 1, 2, 3, 5]] > 1.0).all())


@pytest.mark.parametrize("estimator", ["histogram", "gaussian"])
def test_dead_relu_unit_scores_lowest_and_is_pruned_first(estimator: str) -> None:
    model = mlp_with_dead_unit(dead=2)
    x = torch.randn(256, 4)
    scores = CRITERIA.get("entropy")(
        model,
        {"fc1": model.fc1},
        Context(data=(x, torch.zeros(256)), options={"estimator": estimator}),
    )
    assert scores["fc1"].shape == (6,)
    assert int(torch.argmin(scores["fc1"])) == 2
    floor = 0.0 if estimator == "histogram" else 0.5 * (LOG_2PI_E + math.log(1e-6))
    assert float(scores["fc1"][2]) == pytest.approx(floor, abs=1e-5)
    # The method: neuron granularity, one unit of six removed -> exactly the dead one.
    prune(model, "entropy", sparsity=1 / 6, data=(x, torch.zeros(256, dtype=torch.long)))
    zero_rows = (model.fc1.weight == 0).all(1)
    assert zero_rows.tolist() == [False, False, True, False, False, False]
    assert float(model.fc1.bias[2]) == 0.0


def test_dead_conv_channel_is_pruned_first() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(1, 4, 3),
            relu=nn.ReLU(),
            flatten=nn.Flatten(),
            fc=nn.Linear(4 * 6 * 6, 3),
        )
    )
    with torch.no_grad():
        model.conv.bias.fill_(1.0)
        model.conv.bias[1] = -50.0
    x = torch.rand(256, 1, 8, 8)
    h = unit_entropies(model, x, {"conv": model.conv}, estimator="histogram")
    assert h["conv"].shape == (4,) and int(torch.argmin(h["conv"])) == 1
    prune(model, "entropy", sparsity=0.25, data=(x, torch.zeros(256, dtype=torch.long)))
    assert (model.conv.weight == 0).flatten(1).all(1).tolist() == [False, True, False, False]


def test_weight_granularity_scores_weights_through_their_unit() -> None:
    model = mlp_with_dead_unit(dead=4)
    x = torch.randn(256, 4)
    prune(
        model,
        "entropy",
        sparsity=4 / 24,
        granularity="weight",
        scope="layer",
        data=(x, torch.zeros(256, dtype=torch.long)),
    )
    assert (model.fc1.weight == 0).sum(1).tolist() == [0, 0, 0, 0, 4, 0]


# -- objectives ----------------------------------------------------------------------------
def attached(kind: str, lam: float, scale: float) -> tuple[nn.Module, object, torch.Tensor]:
    model = two_point_model(scale)
    obj = OBJECTIVES.get(kind)(lam=lam)
    obj.attach(model, {"fc": model.fc})
    model.train()
    x = torch.randn(512, 2, generator=torch.Generator().manual_seed(1))
    return model, obj, x


def test_minent_is_zero_when_every_entropy_is_nonnegative() -> None:
    model, obj, x = attached("minent", lam=0.5, scale=2.0)  # sigma ~ 2 -> H ~ 2.1 > 0
    model(x)
    p = obj.penalty(model)
    assert float(p.detach()) == 0.0
    p.backward()
    assert float(model.fc.weight.grad.abs().sum()) == 0.0


def test_minent_sums_only_negative_entropies() -> None:
    model, obj, x = attached("minent", lam=0.5, scale=1.0)
    with torch.no_grad():
        model.fc.weight[1, 1] = 0.05  # unit 1: sigma ~ 0.05 -> H < 0; unit 0: sigma ~ 1, H > 0
    model(x)
    acts = model.fc(x).detach().double()
    h = 0.5 * torch.log(2 * math.pi * math.e * (acts.var(0, unbiased=False) + 1e-6))
    assert h[0] > 0 > h[1]
    assert float(obj.penalty(model).detach()) == pytest.approx(0.5 * float(h[1]), rel=1e-5)


def test_maxent_gradient_flows_to_weights_and_a_step_lowers_entropy() -> None:
    model, obj, x = attached("maxent", lam=1.0, scale=1.0)
    model(x)
    p = obj.penalty(model)
    acts = model.fc(x).detach().double()
    expected = 0.5 * torch.log(2 * math.pi * math.e * (acts.var(0, unbiased=False) + 1e-6)).sum()
    assert float(p.detach()) == pytest.approx(float(expected), rel=1e-5)
    p.backward()
    g = model.fc.weight.grad
    assert torch.isfinite(g).all() and float(g.abs().sum()) > 0
    with torch.no_grad():
        model.fc.weight -= 0.1 * g
    model(x)
    assert float(obj.penalty(model).detach()) < float(
        p.detach()
    )  # minimized as written: entropy goes down
    obj.detach(model)
    model(x)
    with pytest.raises(PrunekitError, match="fc"):  # hooks are gone after detach
        obj.penalty(model)


def test_objective_ignores_evaluation_forwards_and_reports() -> None:
    model, obj, x = attached("maxent", lam=1e-3, scale=1.0)
    with torch.no_grad():
        model(x)
    with pytest.raises(PrunekitError, match="cannot be hooked"):
        obj.penalty(model)
    for _ in range(3):
        model(x)
        obj.penalty(model)
    rep = obj.report()
    assert rep["regularized_batches"] == 3
    assert len(rep["start"]["units"]["fc"]) == 2 and "mean" in rep["end"]


def test_bad_objective_options() -> None:
    with pytest.raises(PrunekitError, match="lambda"):
        OBJECTIVES.get("maxent")(lam=-1.0)
    with pytest.raises(PrunekitError, match="eps"):
        OBJECTIVES.get("minent")(eps=0.0)


def test_options_are_routed_to_objective_and_criterion() -> None:
    m = with_method_args(
        get_method("maxent"),
        {"lam": 0.01, "calibration_batches": 1, "estimator": "gaussian", "bins": 8},
    )
    assert m.objective_args == {"lam": 0.01}
    assert m.criterion_args == {"calibration_batches": 1, "estimator": "gaussian", "bins": 8}
    assert (m.granularity, m.scope) == ("neuron", "layer")
    assert get_method("entropy").objective is None


# -- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "options", "message"),
    [
        (0, {}, "empty"),
        (100, {}, "fewer than one batch of 256"),
        (512, {"calibration_batches": 3}, "3 batches of 256 need 768"),
        (512, {"estimator": "kde"}, "histogram, gaussian"),
        (512, {"bins": 1}, "bins"),
    ],
)
def test_bad_calibration_input(n: int, options: dict, message: str) -> None:
    model = mlp_with_dead_unit()
    ctx = Context(data=(torch.randn(n, 4), torch.zeros(n)), options=options)
    with pytest.raises(PrunekitError, match=message):
        CRITERIA.get("entropy")(model, {"fc1": model.fc1}, ctx)
    with pytest.raises(PrunekitError, match="calibration data"):
        CRITERIA.get("entropy")(model, {"fc1": model.fc1}, Context())


def test_layers_whose_activations_cannot_be_hooked_are_named() -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.spare, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.fc1(x))

    class Shared(Unused):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.fc1(self.fc1(x)))

    x = torch.randn(256, 4)
    with pytest.raises(PrunekitError, match="'spare' is never called"):
        unit_entropies(Unused(), x, {"spare": Unused().spare})
    shared = Shared()
    with pytest.raises(PrunekitError, match="'fc1' is called 2 times"):
        unit_entropies(shared, x, {"fc1": shared.fc1})


def test_untraceable_model_falls_back_to_raw_outputs_and_checks_hooks() -> None:
    class Dynamic(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 3), nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc1(x)
            if h.sum() > 1e9:
                h = self.fc1(h[:, :4] if h.shape[1] >= 4 else x)
            return self.fc2(h)

    model = Dynamic()
    tap = find_taps(model, {"fc1": model.fc1})["fc1"]
    assert tap.hook == "fc1" and "not traceable" in tap.path
    h = unit_entropies(model, torch.randn(256, 4), {"fc1": model.fc1}, estimator="gaussian")
    assert h["fc1"].shape == (3,)


# -- end to end ----------------------------------------------------------------------------
def test_maxent_run_reports_measured_entropy_and_removes_whole_units(tmp_path: Path) -> None:
    cfg = RunConfig(
        model="lenet300",
        dataset="synthetic",
        method="maxent",
        sparsity=0.5,
        epochs=1,
        finetune_epochs=1,
        latency_repeats=1,
        latency_batch_sizes=[1],
        method_args={"calibration_batch_size": 100, "lam": 1e-3},
    )
    r = run(cfg, out=tmp_path / "run")
    res = r.result
    assert res["granularity"] == "neuron"
    for name, width in (("fc1", 300), ("fc2", 100)):  # zeroed, or removed when shrunk
        live = ~(getattr(r.model, name).weight == 0).all(1)
        assert int(live.sum()) == width // 2
    rep = res["objective_report"]
    assert rep["objective"] == "maxent lambda=0.001 eps=1e-06"
    assert rep["regularized_batches"] == 7  # int(0.5 x 15 steps of 1800 / 128)
    assert len(rep["start"]["units"]["fc1"]) == 300 and len(rep["at_prune"]["units"]["fc2"]) == 100
    assert rep["at_prune"]["estimator"] == "histogram"
    assert json.loads((tmp_path / "run" / "result.json").read_text())["objective_report"] == rep


def cli(args: list[str]) -> None:
    """The CLI in-process; typer ends a successful command with SystemExit(0)."""
    try:
        main(args)
    except SystemExit as e:
        assert e.code in (0, None), e.code


@needs_fashion
def test_cli_entropy_lenet5_fashion_removes_half_the_units_and_exports(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # No training (0 epochs): the structural contract is what is checked, quickly.
    args = shlex.split(
        "prune --model lenet5 --dataset fashion-mnist --method entropy --granularity neuron "
        "--sparsity 0.5 --epochs 0 --finetune-epochs 0 --limit 3000 --test-limit 200 "
        "--calibration-batches 1 --entropy-estimator gaussian --latency-repeats 1 -q --out"
    ) + [str(out)]
    cli(args)
    res = json.loads((out / "result.json").read_text())
    assert res["method"] == "entropy" and res["granularity"] == "neuron"
    assert res["config"]["method_args"] == {"calibration_batches": 1, "estimator": "gaussian"}
    cli(["entropy", str(out), "--out", str(tmp_path / "h.json")])
    h = json.loads((tmp_path / "h.json").read_text())
    widths = {"features.conv1": 20, "features.conv2": 50, "classifier.fc1": 500}
    for layer, width in widths.items():  # whole units zero (or physically removed): half
        assert len(h["entropy"][layer]) - len(h["pruned"][layer]) == width // 2
        assert len(h["entropy"][layer]) in (width, width // 2)
        assert all(h["entropy"][layer][j] == 0.0 for j in h["pruned"][layer])  # constant -> 0
    assert h["activation"]["features.conv1"] == "features.conv1 -> features.relu1"

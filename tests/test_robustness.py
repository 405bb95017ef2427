"""Robustness evaluation, the noise objectives / methods and their criterion."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import cli
from safetensors.torch import load_file
from torch import nn

from prunekit import PrunekitError, RunConfig, create_model, load_dataset, run
from prunekit.evaluation import accuracy
from prunekit.evaluation.robustness import corrupted, robustness
from prunekit.pruning.criteria import CRITERIA, Context
from prunekit.pruning.masks import apply_mask
from prunekit.pruning.methods import get_method, with_method_args
from prunekit.pruning.objectives import OBJECTIVES


def small(**kw: object) -> RunConfig:
    base = dict(
        model="lenet300",
        dataset="synthetic",
        epochs=1,
        finetune_epochs=1,
        latency_repeats=2,
        latency_batch_sizes=[1],
    )
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    data = load_dataset("synthetic")
    r = run(small(method="magnitude", sparsity=0.5), data=data)
    return r.model, data.test.x, data.test.y


# -- evaluation ------------------------------------------------------------------------


def test_clean_accuracy_equals_robustness_at_zero_noise(trained) -> None:
    model, x, y = trained
    rob = robustness(model, x, y, sigmas=[0.0, 0.3], densities=[0.0, 0.2])
    clean = accuracy(model, x, y)
    assert rob["accuracy_gaussian"]["0"] == clean
    assert rob["accuracy_saltpepper"]["0"] == clean
    assert rob["accuracy_gaussian"]["0.3"] < clean  # the noise is really applied
    accs = [*rob["accuracy_gaussian"].values(), *rob["accuracy_saltpepper"].values()]
    assert rob["accuracy_corrupted_mean"] == pytest.approx(sum(accs) / 4, abs=1e-15)


def test_keys_and_fixed_evaluation_seed(trained) -> None:
    model, x, y = trained
    full = robustness(model, x, y)
    assert list(full["accuracy_gaussian"]) == ["0.1", "0.2", "0.3", "0.5"]
    assert list(full["accuracy_saltpepper"]) == ["0.05", "0.1", "0.2"]
    # Same corrupted set whatever else is requested and whatever the global RNG state.
    torch.manual_seed(99)
    one = robustness(model, x, y, sigmas=[0.2], densities=[])
    assert one["accuracy_gaussian"]["0.2"] == full["accuracy_gaussian"]["0.2"]
    assert one["accuracy_saltpepper"] == {}
    assert torch.equal(corrupted(x, "gaussian", 0.2), corrupted(x, "gaussian", 0.2))
    assert not torch.equal(corrupted(x, "gaussian", 0.2, seed=1), corrupted(x, "gaussian", 0.2))
    none = robustness(model, x, y, sigmas=[], densities=[])
    assert none["accuracy_corrupted_mean"] is None


def test_evaluation_refuses_unscaled_images(trained) -> None:
    model, x, y = trained
    with pytest.raises(PrunekitError, match=r"images must be scaled to \[0, 1\]"):
        robustness(model, x * 255, y)
    with pytest.raises(PrunekitError, match="sigma must be"):
        robustness(model, x, y, sigmas=[-0.1])
    with pytest.raises(PrunekitError, match="density must be in"):
        RunConfig(noise_densities=[1.2])


# -- objectives ------------------------------------------------------------------------


def linear(weight: list[list[float]]) -> nn.Linear:
    m = nn.Linear(2, 2)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(weight))
        m.bias.fill_(7.0)  # biases are not penalized
    return m


def test_penalties_match_hand_computed_values() -> None:
    m = linear([[1.0, -2.0], [3.0, -0.5]])
    g = OBJECTIVES.get("gaussian")(lam=0.01)
    s = OBJECTIVES.get("saltpepper")(lam=0.01)
    for obj in (g, s):
        obj.attach(m, {"fc": m})
    # gaussian: 0.01 * (1 + 4 + 9 + 0.25); salt-and-pepper: 0.01 * (1 + 9)
    assert g.penalty(m).item() == pytest.approx(0.1425, abs=1e-7)
    assert s.penalty(m).item() == pytest.approx(0.10, abs=1e-7)
    # On the effective (masked) weights: pruning the 3 removes its term.
    apply_mask(m, torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    assert g.penalty(m).item() == pytest.approx(0.0525, abs=1e-7)
    assert s.penalty(m).item() == pytest.approx(0.01, abs=1e-7)
    # The gradient of lam * theta^2 is 2 lam theta (0 for pruned entries).
    g.penalty(m).backward()
    assert torch.allclose(m.weight_orig.grad, torch.tensor([[0.02, -0.04], [0.0, -0.01]]))


def test_transform_corrupts_exactly_the_noise_fraction() -> None:
    x = torch.full((10, 1, 8, 8), 0.5)
    y = torch.arange(10)
    obj = OBJECTIVES.get("saltpepper")(density=0.25, noise_fraction=0.3)
    xt, yt = obj.transform(x, y, torch.Generator().manual_seed(0))
    changed = (xt != 0.5).flatten(1).sum(1)
    assert changed.tolist() == [16, 16, 16] + [0] * 7
    assert torch.equal(yt, y) and (x == 0.5).all()
    clean = OBJECTIVES.get("gaussian")(noise_fraction=0.0)
    assert clean.transform(x, y, None)[0] is x


def test_options_routed_and_bad_options_refused() -> None:
    m = with_method_args(get_method("gaussian"), {"sigma": 0.2, "lam": 1e-3, "noise_fraction": 1.0})
    assert m.objective_args == {"sigma": 0.2, "lam": 1e-3, "noise_fraction": 1.0}
    assert m.objective_phase == "all"
    with pytest.raises(PrunekitError, match="does not take option"):
        with_method_args(get_method("gaussian"), {"density": 0.1})
    for name, opts, msg in [
        ("gaussian", {"sigma": -1}, "sigma must be"),
        ("saltpepper", {"density": 2}, "density must be in"),
        ("gaussian", {"noise_fraction": 1.5}, "noise_fraction must be"),
        ("saltpepper", {"lam": -1}, "lambda must be >= 0"),
    ]:
        with pytest.raises(PrunekitError, match=msg):
            OBJECTIVES.get(name)(**opts)


def test_bad_method_option_fails_before_training() -> None:
    # The dataset does not exist: reaching data loading would give another message.
    cfg = small(
        method="gaussian", dataset="mnist", data_dir="/nonexistent", method_args={"sigma": -0.5}
    )
    with pytest.raises(PrunekitError, match="sigma must be"):
        run(cfg)


# -- criterion -------------------------------------------------------------------------


def test_noise_sensitivity_is_w2_times_summed_squared_gradients() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.ReLU(), nn.Linear(5, 3))
    x = torch.rand(8, 1, 4, 4)
    y = torch.randint(0, 3, (8,))
    modules = {"1": model[1], "3": model[3]}
    ctx = Context(data=(x, y), options={"calibration_batches": 2})
    scores = CRITERIA.get("noise-sensitivity")(model, modules, ctx)  # no objective: clean
    fisher = [torch.zeros_like(m.weight) for m in modules.values()]
    for xb, yb in ((x[:4], y[:4]), (x[4:], y[4:])):
        grads = torch.autograd.grad(
            F.cross_entropy(model(xb), yb), [m.weight for m in modules.values()]
        )
        for f, gr in zip(fisher, grads, strict=True):
            f += gr.square()
    for (name, m), f in zip(modules.items(), fisher, strict=True):
        assert torch.allclose(scores[name], m.weight.detach().square() * f, rtol=1e-5, atol=0)


def test_gaussian_run_reports_robustness_and_exact_sparsity() -> None:
    res = run(
        small(method="gaussian", sparsity=0.9, noise_sigmas=[0.0, 0.2], noise_densities=[0.1])
    ).result
    assert res["achieved_sparsity"] == pytest.approx(round(0.9 * 266200) / 266200, abs=1e-12)
    assert res["accuracy_gaussian"]["0"] == res["accuracy"]
    assert set(res["accuracy_saltpepper"]) == {"0.1"}
    mean = (
        res["accuracy"] + res["accuracy_gaussian"]["0.2"] + res["accuracy_saltpepper"]["0.1"]
    ) / 3
    assert res["accuracy_corrupted_mean"] == pytest.approx(mean, abs=1e-15)


# -- independent re-evaluation of a saved run ----------------------------------------------


def test_saved_gaussian_run_reevaluated_independently(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    p = cli(
        "prune",
        "--model",
        "lenet300",
        "--dataset",
        "synthetic",
        "--method",
        "gaussian",
        "--sparsity",
        "0.9",
        "--epochs",
        "2",
        "--finetune-epochs",
        "1",
        "--noise-sigma",
        "0.2",
        "--latency-repeats",
        "2",
        "--out",
        str(out),
        "-q",
        capsys=capsys,
    )
    assert p[0] == 0, p[2]
    res = json.loads((out / "result.json").read_text())
    spec = json.loads((out / "model.json").read_text())
    model = create_model(spec["name"], **spec["kwargs"])
    model.load_state_dict(load_file(str(out / "model.safetensors")))
    model.eval()
    test = load_dataset("synthetic").test
    x, y, n = test.x, test.y, len(test)
    g = torch.Generator().manual_seed(2024)  # not the evaluation seed

    def acc(xc: torch.Tensor) -> float:
        with torch.no_grad():
            return int((model(xc).argmax(1) == y).sum()) / n

    def within_sampling_error(mine: float, reported: float) -> bool:
        se = math.sqrt(max(reported * (1 - reported), 0.01) / n)
        return abs(mine - reported) <= 3 * se

    assert acc(x) == pytest.approx(res["accuracy"], abs=1e-12)
    for key, reported in res["accuracy_gaussian"].items():
        mine = acc((x + float(key) * torch.randn(x.shape, generator=g)).clamp(0, 1))
        assert within_sampling_error(mine, reported), (key, mine, reported)
    for key, reported in res["accuracy_saltpepper"].items():
        u = torch.rand(x.shape, generator=g)  # Bernoulli per pixel, my own implementation
        xc = torch.where(u < float(key) / 2, 0.0, torch.where(u < float(key), 1.0, x))
        assert within_sampling_error(acc(xc), reported), (key, acc(xc), reported)
    # `prunekit eval` re-measures the same figures and prints the robustness table.
    code, stdout, stderr = cli("eval", str(out), "--json", capsys=capsys)
    assert code == 0, stderr
    again = json.loads(stdout)
    for key in ("accuracy_gaussian", "accuracy_saltpepper", "accuracy_corrupted_mean"):
        assert again[key] == res[key]
    table = cli("eval", str(out), capsys=capsys)[1]
    assert "gaussian 0.5" in table and "saltpepper 0.05" in table
    assert "accuracy under noise (mean)" in table


def test_cli_eval_levels(tmp_path: Path, capsys) -> None:
    p = cli(
        "prune",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--finetune-epochs",
        "0",
        "--latency-repeats",
        "1",
        "--eval-sigmas",
        "0.1,0.4",
        "--eval-densities",
        "",
        "--out",
        str(tmp_path / "r"),
        "-q",
        capsys=capsys,
    )
    assert p[0] == 0, p[2]
    res = json.loads((tmp_path / "r" / "result.json").read_text())
    assert list(res["accuracy_gaussian"]) == ["0.1", "0.4"] and res["accuracy_saltpepper"] == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--eval-sigmas", "0.1,x"], "comma-separated numbers"),
        (["--eval-densities", "0.5,1.5"], "density must be in [0, 1]"),
        (["--method", "gaussian", "--noise-sigma", "-1"], "sigma must be"),
        (["--method", "saltpepper", "--noise-density", "1.1"], "density must be in [0, 1]"),
    ],
)
def test_cli_bad_noise_input_one_line_error(args: list[str], message: str, capsys) -> None:
    code, _, err = cli("prune", "--dataset", "synthetic", *args, "-q", capsys=capsys)
    assert code == 2
    err = " ".join(err.split())  # rich may wrap the line
    assert message in err and "Traceback" not in err

"""L0 regularization with hard-concrete gates (Louizos et al. 2018): the math against
hand-computed values, the gates' attach/fold contract, bad input, and end-to-end runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import needs_fashion, small_run_config
from safetensors.torch import load_file
from torch import nn

from prunekit import RunConfig, run
from prunekit.pruning.criteria import CRITERIA, Context
from prunekit.pruning.masks import is_masked
from prunekit.pruning.methods import get_method, with_method_args
from prunekit.pruning.objectives import OBJECTIVES
from prunekit.pruning.objectives.hard_concrete import (
    closed_logit,
    hard_concrete,
    keep_probability,
)
from prunekit.pruning.objectives.hard_concrete import (
    deterministic_gate as z_test_gate,
)
from prunekit.pruning.objectives.l0 import L0Objective
from prunekit.pruning.objectives.l0_autograd import _GatedWeight, _HardConcreteGate
from prunekit.pruning.objectives.l0_gates import NoisePool
from prunekit.pruning.options import RunFacts
from prunekit.pruning.phase import build_objective
from prunekit.registry import PrunekitError

# beta log(-gamma/zeta) = (2/3) log(0.1/1.1) = -1.598598...
SHIFT = (2.0 / 3.0) * math.log(0.1 / 1.1)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def l0(**kw: object) -> L0Objective:
    """The l0 objective; ``granularity`` and ``window_steps`` are run facts."""
    kw.setdefault("target_sparsity", None)
    kw.setdefault("lam", 1e-3)
    run = RunFacts(str(kw.pop("granularity", "weight")), None, kw.pop("window_steps", None))  # type: ignore[arg-type]
    return OBJECTIVES.get("l0")(run, **kw)  # type: ignore[return-value]


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


# -- the distribution --------------------------------------------------------------------------
def test_hard_concrete_point_masses_hand_values() -> None:
    # log alpha = 0: P(z = 0) = 1 - sigmoid(0 - SHIFT) = sigmoid(SHIFT) = 0.168178
    #                P(z = 1) = sigmoid(0 - beta log 11) = sigmoid(-1.598598) = 0.168178
    assert float(keep_probability(torch.tensor(0.0))) == pytest.approx(sigmoid(-SHIFT), abs=1e-7)
    assert sigmoid(-SHIFT) == pytest.approx(0.831822, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    u = torch.rand(400_000, generator=g, dtype=torch.float64)
    z = hard_concrete(torch.zeros((), dtype=torch.float64), u)
    assert float(z.min()) == 0.0 and float(z.max()) == 1.0
    assert float((z == 0).double().mean()) == pytest.approx(0.168178, abs=3e-3)
    assert float((z == 1).double().mean()) == pytest.approx(0.168178, abs=3e-3)
    inside = z[(z > 0) & (z < 1)]
    assert len(inside) > 0.6 * len(z)  # the rest is continuous on (0, 1)


@pytest.mark.parametrize("log_alpha", [-3.0, -1.0, 0.5, 2.944])
def test_closed_form_keep_probability_matches_monte_carlo(log_alpha: float) -> None:
    g = torch.Generator().manual_seed(1)
    u = torch.rand(200_000, generator=g, dtype=torch.float64)
    z = hard_concrete(torch.tensor(log_alpha, dtype=torch.float64), u)
    closed = float(keep_probability(torch.tensor(log_alpha)))
    assert closed == pytest.approx(sigmoid(log_alpha - SHIFT), abs=1e-6)
    assert float((z != 0).double().mean()) == pytest.approx(closed, abs=4e-3)


def test_test_time_gate_hand_values_and_closed_logit() -> None:
    # min(1, max(0, sigmoid(a) * 1.2 - 0.1))
    la = torch.tensor([0.0, math.log(19.0), -3.0, 1.0])
    expect = [0.5, 1.0, 0.0, sigmoid(1.0) * 1.2 - 0.1]
    assert z_test_gate(la).tolist() == pytest.approx(expect, abs=1e-6)
    # z_test == 0 exactly for log alpha <= logit(1/12) = -log 11
    assert closed_logit() == pytest.approx(-math.log(11.0))
    assert float(z_test_gate(torch.tensor(closed_logit() - 1e-4))) == 0.0
    assert float(z_test_gate(torch.tensor(closed_logit() + 1e-3))) > 0.0


def test_fused_gate_matches_autograd_and_reaches_log_alpha() -> None:
    g = torch.Generator().manual_seed(2)
    la = torch.randn(500, generator=g, dtype=torch.float64) * 2
    u = torch.rand(500, generator=g, dtype=torch.float64)
    noise = torch.log(u) - torch.log1p(-u)
    w = torch.randn(500, generator=g, dtype=torch.float64)
    la1, la2 = la.clone().requires_grad_(), la.clone().requires_grad_()
    z1 = _HardConcreteGate.apply(la1, noise, 2 / 3, -0.1, 1.1)
    z2 = hard_concrete(la2, u)
    assert torch.allclose(z1, z2, atol=1e-12)
    (z1 * w).sum().backward()
    (z2 * w).sum().backward()
    assert torch.allclose(la1.grad, la2.grad, atol=1e-12)
    inside = (z2 > 0) & (z2 < 1)
    assert bool((la1.grad[inside] != 0).all()) and bool((la1.grad[~inside] == 0).all())
    assert torch.autograd.gradcheck(
        lambda a: _HardConcreteGate.apply(a, noise[:20], 2 / 3, -0.1, 1.1),
        (la1[:20].detach().clone().requires_grad_(),),
    )


def test_fused_gated_weight_matches_composed_ops_with_and_without_mask() -> None:
    g = torch.Generator().manual_seed(5)
    w = torch.randn(40, 30, generator=g, dtype=torch.float64)
    la = torch.randn(40, 30, generator=g, dtype=torch.float64) * 2
    u = torch.rand(40, 30, generator=g, dtype=torch.float64)
    noise = torch.log(u) - torch.log1p(-u)
    mask = (torch.rand(40, 30, generator=g) > 0.3).double()
    x = torch.randn(7, 30, generator=g, dtype=torch.float64)
    for m in (None, mask):
        w1, la1 = w.clone().requires_grad_(), la.clone().requires_grad_()
        w2, la2 = w.clone().requires_grad_(), la.clone().requires_grad_()
        W1 = _GatedWeight.apply(w1, la1, noise, m, 2 / 3, -0.1, 1.1)
        W2 = w2 * hard_concrete(la2, u) * (1.0 if m is None else m)
        assert torch.allclose(W1, W2, atol=1e-12)
        (x @ W1.T).square().sum().backward()
        (x @ W2.T).square().sum().backward()
        assert torch.allclose(w1.grad, w2.grad, atol=1e-10)
        assert torch.allclose(la1.grad, la2.grad, atol=1e-10)
        if m is not None:  # a masked-out entry: no gradient to its weight nor its logit
            assert bool((w1.grad[m == 0] == 0).all()) and bool((la1.grad[m == 0] == 0).all())
    assert torch.autograd.gradcheck(
        lambda a, b: _GatedWeight.apply(a, b, noise[:3, :4], mask[:3, :4], 2 / 3, -0.1, 1.1),
        (w[:3, :4].clone().requires_grad_(), la[:3, :4].clone().requires_grad_()),
    )


def test_noise_pool_is_logistic_and_independent_within_a_step() -> None:
    pool = NoisePool(50_000, torch.Generator().manual_seed(3))
    n = pool.take(50_000)
    u = torch.sigmoid(n.double())  # logistic -> uniform
    assert float(u.mean()) == pytest.approx(0.5, abs=5e-3)
    assert float((u < 0.25).double().mean()) == pytest.approx(0.25, abs=5e-3)
    # one step's values are one contiguous window of the pool: distinct entries
    assert n.numel() == 50_000 and n.is_contiguous()
    assert n.untyped_storage().data_ptr() == pool.pool.untyped_storage().data_ptr()


# -- the objective on a model ---------------------------------------------------------------------
def test_gates_reach_log_alpha_and_penalty_gradient_is_closed_form() -> None:
    model = mlp()
    obj = l0(lam=0.01)
    obj.attach(model, {"0": model[0], "2": model[2]})
    x = torch.randn(8, 6)
    loss = model(x).square().mean()
    pen = obj.penalty(model)
    expected = sum(float(keep_probability(la.detach()).sum()) for la in obj.log_alpha.values())
    assert float(pen) == pytest.approx(0.01 * expected, rel=1e-6)
    loss.backward()
    task = {n: la.grad.clone() for n, la in obj.log_alpha.items()}
    assert any(bool((g != 0).any()) for g in task.values())  # gradient reaches log alpha
    # The logits are the training loop's to step: one group, lr gate_lr, no decay.
    (group,) = obj.param_groups()
    assert group["lr"] == obj.gate_lr and group["weight_decay"] == 0.0
    assert [id(p) for p in group["params"]] == [id(la) for la in obj.log_alpha.values()]
    raw = {}
    obj._normalize_grads = lambda: raw.update(
        {n: la.grad.clone() for n, la in obj.log_alpha.items()}
    )  # type: ignore[method-assign]
    obj.before_step(model)  # what the optimizer's step pre-hook runs
    for n, la in obj.log_alpha.items():
        a = la.detach().clone().requires_grad_()
        (0.01 * keep_probability(a).sum()).backward()
        assert torch.allclose(raw[n], task[n] + a.grad, atol=1e-8)


def test_gate_gradient_stepped_by_plain_sgd_is_exactly_adam() -> None:
    # The loop's SGD (no momentum) on the handed-over gradient == torch's Adam on the raw one.
    model = mlp()
    obj = l0(lam=0.0)
    obj.attach(model, {"0": model[0], "2": model[2]})
    (group,) = obj.param_groups()
    sgd = torch.optim.SGD([group], lr=0.05)
    twins = [la.detach().clone().requires_grad_() for la in obj.log_alpha.values()]
    adam = torch.optim.Adam(twins, lr=0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        for la, tw in zip(obj.log_alpha.values(), twins, strict=True):
            grad = torch.randn(la.shape, generator=g) * 1e-3
            la.grad, tw.grad = grad.clone(), grad.clone()
        obj.before_step(model)
        sgd.step()
        adam.step()
    for la, tw in zip(obj.log_alpha.values(), twins, strict=True):
        torch.testing.assert_close(la.detach(), tw.detach(), rtol=1e-5, atol=1e-6)


def test_eval_gate_is_deterministic_and_fold_keeps_outputs() -> None:
    for gran in ("weight", "neuron"):
        model = mlp()
        obj = l0(granularity=gran)
        modules = {"0": model[0]} if gran == "neuron" else {"0": model[0], "2": model[2]}
        obj.attach(model, modules)
        with torch.no_grad():
            for la in obj.log_alpha.values():
                la.copy_(torch.linspace(-4, 4, la.numel()).view(la.shape))
        model.eval()
        x = torch.randn(16, 6)
        a, b = model(x), model(x)
        assert torch.equal(a, b)
        model.train()
        assert not torch.equal(model(x), a)  # training samples gates
        model.eval()
        obj.detach(model)
        assert obj.log_alpha == {}
        hooks = [h for m in model.modules() for h in m._forward_pre_hooks.values()]
        assert all(type(h).__name__ == "CustomFromMask" for h in hooks)
        assert not model[0]._forward_hooks
        assert torch.allclose(model(x), a, atol=1e-6)


def test_neuron_gates_score_units_and_criterion() -> None:
    model = mlp()
    obj = l0(granularity="neuron")
    obj.attach(model, {"0": model[0]})
    with torch.no_grad():
        obj.log_alpha["0"].copy_(torch.tensor([3.0, -1.0, 0.0, 2.0, -5.0]))
    scores = CRITERIA.get("l0-gate")(model, {"0": model[0]}, Context(objective=obj))
    assert scores["0"].shape == (5,)
    assert scores["0"].tolist() == pytest.approx(
        [sigmoid(v - SHIFT) for v in (3.0, -1.0, 0.0, 2.0, -5.0)], abs=1e-6
    )
    test = CRITERIA.get("l0-gate")(
        model, {"0": model[0]}, Context(objective=obj, options={"gate_score": "test"})
    )
    order = torch.argsort(test["0"]).tolist()
    assert order == [4, 1, 2, 3, 0]


def test_criterion_without_gates_is_an_error() -> None:
    model = mlp()
    with pytest.raises(PrunekitError, match="l0 objective"):
        CRITERIA.get("l0-gate")(model, {"0": model[0]}, Context())


def test_target_controller_sign_and_damping() -> None:
    obj = l0(lam=1.0, target_sparsity=0.9, rate=0.1, window_steps=100)
    assert obj.density_target(0) == 1.0 and obj.density_target(60) == pytest.approx(0.1)
    assert obj.density_target(30) == pytest.approx(0.55)
    obj._control(0.2)
    assert obj.coef == 1.0  # too many open: close
    obj._control(0.1)
    assert obj.coef == pytest.approx(1.1)  # same sign: grow by rate
    obj._control(-0.05)
    assert obj.coef == pytest.approx(-0.55)  # flipped: halve and open


def test_phase_fills_granularity_target_and_window() -> None:
    m = with_method_args(get_method("l0-neuron"), {"lam": 0.5})
    obj = build_objective(m, 0.8, 123)
    assert (obj.granularity, obj.target, obj.window, obj.lam) == ("neuron", 0.8, 123, 0.5)
    fixed = with_method_args(get_method("l0"), {"lam": 0.5, "target_sparsity": None})
    assert build_objective(fixed, 0.8, 10).target is None


# -- bad input ------------------------------------------------------------------------------------
def test_bad_input() -> None:
    with pytest.raises(PrunekitError, match="lambda must be >= 0"):
        OBJECTIVES.get("l0")(lam=-1.0)
    with pytest.raises(PrunekitError, match="needs --lambda"):
        OBJECTIVES.get("l0")(target_sparsity=None)
    with pytest.raises(PrunekitError, match="gates exist per .neuron. or .weight. unit"):
        OBJECTIVES.get("l0")(RunFacts(granularity="kernel"))
    assert "lambda=0.25" in l0(lam=0.25).describe()


def test_every_gate_closed_is_an_error_naming_layer_and_lambda() -> None:
    model = mlp()
    obj = l0(lam=5.0)
    obj.attach(model, {"first": model[0], "head": model[2]})
    with torch.no_grad():
        obj.log_alpha["head"].fill_(-6.0)
    with pytest.raises(PrunekitError, match=r"lambda=5 closed every gate of layer 'head'"):
        obj.check_alive()


def small_cfg(method: str, **kw: object) -> RunConfig:
    return small_run_config(method=method, seed=0, limit=1000, **kw)


def test_nan_loss_names_step_and_lambda() -> None:
    # lam=inf is refused up front (not a number); the largest finite one overflows the loss.
    cfg = small_cfg("l0", epochs=0, method_args={"lam": 1e308, "target_sparsity": None})
    with pytest.raises(PrunekitError, match=r"at step 0 .*l0 lambda=1e\+308"):
        run(cfg)


# -- end to end -----------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:l0. after")  # 8-step window: expected
def test_l0_run_reaches_target_with_real_zeros(tmp_path: Path) -> None:
    r = run(small_cfg("l0"), out=tmp_path / "run")
    assert r.result["achieved_sparsity"] == pytest.approx(0.9, abs=1e-3)
    rep = r.result["objective_report"]
    assert "lambda" in rep and rep["trace"]
    t = load_file(str(tmp_path / "run" / "model.safetensors"))
    ws = [v for k, v in t.items() if k.endswith("weight")]
    zeros = sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)
    assert zeros == pytest.approx(r.result["achieved_sparsity"], abs=1e-12)
    assert not any(is_masked(m) for m in r.model.modules())  # finalized, gates gone


@pytest.mark.filterwarnings("ignore:l0. after")  # 8-step window: expected
def test_l0_neuron_run_removes_whole_units(tmp_path: Path) -> None:
    run(small_cfg("l0", granularity="neuron", sparsity=0.5), out=tmp_path / "run")
    t = load_file(str(tmp_path / "run" / "model.safetensors"))
    removed = 0
    for layer, width in (("fc1", 300), ("fc2", 100)):
        w, b = t[f"{layer}.weight"], t[f"{layer}.bias"]
        rows = (w == 0).all(dim=1) & (b == 0)  # zero units (if not physically removed)
        removed += width - w.shape[0] + int(rows.sum())
    # whole units, exactly the target (global over the 400 hidden units); the head keeps 10
    assert removed == round(0.5 * 400)
    assert t["fc3.weight"].shape[0] == 10
    assert json.loads((tmp_path / "run" / "result.json").read_text())["granularity"] == "neuron"


@pytest.mark.slow
@needs_fashion
@pytest.mark.parametrize("method", ["l0", "l1"])
def test_fashion_lenet300_reaches_target(method: str, tmp_path: Path) -> None:
    cfg = RunConfig(
        model="lenet300",
        dataset="fashion-mnist",
        method=method,
        sparsity=0.9,
        epochs=3,
        finetune_epochs=2,
        latency_repeats=1,
        noise_sigmas=[],
        noise_densities=[],
        data_dir="/usr/share/datasets/fashion-mnist",
    )
    r = run(cfg, out=tmp_path / "run")
    assert abs(r.result["achieved_sparsity"] - 0.9) <= 0.01
    assert r.result["accuracy"] > r.result["accuracy_dense"] - 0.03
    t = load_file(str(tmp_path / "run" / "model.safetensors"))
    ws = [v for k, v in t.items() if k.endswith("weight")]
    zeros = sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)
    assert abs(zeros - 0.9) <= 0.01


@pytest.mark.parametrize("method", ["l0", "l1"])
def test_cli_negative_lambda_is_a_one_line_error(
    method: str, capsys: pytest.CaptureFixture
) -> None:
    from prunekit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["prune", "--method", method, "--lambda", "-1", "--dataset", "synthetic", "-q"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"{method}: lambda must be >= 0, got -1" in err and "Traceback" not in err


def test_criterion_warns_when_gates_are_far_from_target() -> None:
    model = mlp()
    obj = l0(lam=None, target_sparsity=0.9, window_steps=10)
    obj.attach(model, {"0": model[0]})
    obj.penalty(model)  # density at init: P(z != 0) at log alpha 2.94 = 0.989
    with pytest.warns(UserWarning, match=r"gates keep 98\.9% \(target 10\.0%\)"):
        CRITERIA.get("l0-gate")(model, {"0": model[0]}, Context(objective=obj))

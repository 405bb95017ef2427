"""DPF (dynamic pruning with feedback): exact sparsity, feedback to the pruned weights,
a wrongly pruned weight coming back, W ⊙ M as the final model, a hand-written loop,
the pipeline, and one-line errors for bad options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import cli, small_run_config
from safetensors.torch import load_file
from torch import nn

import prunekit
from prunekit import run
from prunekit.pruning.objectives.dpf import DPFObjective, window_marks
from prunekit.registry import PrunekitError


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 8), nn.ReLU(), nn.Linear(8, 3))


def train(pruner: prunekit.Pruner, model: nn.Module, opt, steps: int, x, y, spy=None) -> None:
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y) + pruner.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.step()
        if spy is not None:
            spy()


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize(("sparsity", "scope"), [(0.9, "global"), (0.75, "layer")])
def test_exact_final_sparsity_and_plain_weights(sparsity: float, scope: str) -> None:
    model = mlp()
    keys = set(model.state_dict())
    x, y = torch.randn(64, 12), torch.randint(0, 3, (64,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    pr = prunekit.Pruner(model, "dpf", sparsity, 40, optimizer=opt, scope=scope, period=3)
    train(pr, model, opt, 40, x, y)
    pr.finalize()
    layers = linears(model)
    if scope == "global":
        n = sum(m.weight.numel() for m in layers)
        assert sum(int((m.weight == 0).sum()) for m in layers) == round(sparsity * n)
    else:
        for m in layers:
            assert int((m.weight == 0).sum()) == round(sparsity * m.weight.numel())
    # no dense copy, no *_orig / *_mask, no hooks: the saved model is W ⊙ M alone
    assert set(model.state_dict()) == keys
    assert not any(torch.nn.utils.prune.is_pruned(m) for m in layers)
    assert pr.objective.dense == {} and pr.objective.keep == {}


def test_pruned_weights_get_the_pruned_models_gradient() -> None:
    """One SGD step: every dense weight, pruned ones included, moves by -lr * the
    gradient taken at W ⊙ M; the parameter then holds W ⊙ M again."""
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    x, y = torch.randn(16, 6), torch.randint(0, 2, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # ramp over one step: after step 1 the mask is at the target
    pr = prunekit.Pruner(model, "dpf", 0.6, 20, optimizer=opt, ramp_fraction=0.01, period=100)
    train(pr, model, opt, 1, x, y)
    obj: DPFObjective = pr.objective
    keep = {n: k.clone() for n, k in obj.keep.items()}
    assert sum(int((~k).sum()) for k in keep.values()) == round(0.6 * (30 + 10))
    dense = {n: d.clone() for n, d in obj.dense.items()}
    # the gradient of the pruned model, by hand
    ref = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    ref.load_state_dict(model.state_dict())
    nn.functional.cross_entropy(ref(x), y).backward()
    train(pr, model, opt, 1, x, y)
    for name in ("0", "2"):
        expected = dense[name] - 0.1 * ref.get_submodule(name).weight.grad
        assert torch.allclose(obj.dense[name], expected, atol=1e-6)
        pruned = ~keep[name]
        assert bool((obj.dense[name][pruned] != dense[name][pruned]).any())
        w = model.get_submodule(name).weight
        assert torch.equal(w, obj.dense[name] * obj.keep[name])


def test_a_weight_pruned_early_comes_back() -> None:
    """Least squares y = X w*, w* = (1, 0, 3, 0); w starts at (1, 0.9, 0.01, 0.8) and half
    the weights go after the first step, so w_3 (index 2) is pruned although the target
    needs it. Its gradient at W ⊙ M keeps growing it (feedback) until it re-enters the
    mask; gmp on the same schedule never brings it back."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = x @ torch.tensor([1.0, 0.0, 3.0, 0.0])

    def fit(method: str) -> tuple[torch.Tensor, list[bool]]:
        model = nn.Linear(4, 1, bias=False)
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[1.0, 0.9, 0.01, 0.8]]))
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        opts = (
            {"ramp_fraction": 0.01, "period": 5}
            if method == "dpf"
            else {"prune_fraction": 0.01, "frequency": 1}
        )
        pr = prunekit.Pruner(model, method, 0.5, 60, optimizer=opt, **opts)
        kept: list[bool] = []
        for _ in range(60):
            loss = (model(x).squeeze(1) - y).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            pr.step()
            w = (
                model.weight_orig * model.weight_mask
                if hasattr(model, "weight_mask")
                else model.weight
            )
            kept.append(bool(w[0, 2] != 0))
        pr.finalize()
        return model.weight.detach()[0], kept

    w, kept = fit("dpf")
    assert kept[0] is False  # pruned by the first mask
    assert kept[-1] is True  # and back
    assert torch.equal(w != 0, torch.tensor([True, False, True, False]))
    assert float(w[2]) == pytest.approx(3.0, abs=0.05)
    w_gmp, kept_gmp = fit("gmp")
    assert not any(kept_gmp) and float(w_gmp[2]) == 0.0


def test_the_final_model_is_w_times_m_with_the_mask_frozen() -> None:
    """At the window's end the parameters hold exactly W ⊙ M, the one-shot event keeps M,
    and with freeze_fraction the mask no longer changes over the frozen steps."""
    model = mlp()
    x, y = torch.randn(64, 12), torch.randint(0, 3, (64,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pr = prunekit.Pruner(
        model, "dpf", 0.8, 50, optimizer=opt, period=2, ramp_fraction=0.3, freeze_fraction=0.4
    )
    obj: DPFObjective = pr.objective
    ramp, last = window_marks(obj.window, 0.3, 0.4)
    assert (obj.window, ramp, last) == (49, 15, 29)
    seen: list[dict[str, torch.Tensor]] = []
    at_end: dict[str, torch.Tensor] = {}
    detach = obj.detach

    def spy_detach(m: nn.Module) -> None:
        for name, mod in obj.modules.items():
            w = mod.weight_orig * mod.weight_mask  # the event's mask is on by now
            assert torch.equal(w, obj.dense[name] * obj.keep[name])
            assert torch.equal(mod.weight_mask.bool(), obj.keep[name])
            at_end[name] = obj.keep[name].clone()
        detach(m)

    obj.detach = spy_detach  # type: ignore[method-assign]
    train(pr, model, opt, 50, x, y, spy=lambda: seen.append(dict(obj.keep)))
    pr.finalize()
    assert at_end, "the objective was not detached at the window's end"
    # seen[u - 1]: the mask after step u; from the last recomputation (u = 29) to the
    # window's last step (u = 48); the event and the detach come in the next step
    frozen = seen[last - 1 : obj.window - 1]
    assert len(frozen) == 20 and all(
        all(torch.equal(k[n], at_end[n]) for n in at_end) for k in frozen
    )
    for name, mod in zip(("0", "2", "4"), linears(model), strict=True):
        assert torch.equal(mod.weight != 0, at_end[name])  # the mask held in the last step


def test_hand_written_loop_without_the_optimizer_is_an_error() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    pr = prunekit.Pruner(model, "dpf", 0.5, 10)
    nn.functional.cross_entropy(model(torch.randn(4, 12)), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    with pytest.raises(PrunekitError, match="pass optimizer= to the Pruner"):
        pr.step(lr=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"period": 0}, "dpf: period must be >= 1, got 0"),
        ({"ramp_fraction": 0.0}, r"dpf: ramp_fraction must be in \(0, 1\]"),
        ({"freeze_fraction": 1.0}, r"dpf: freeze_fraction must be in \[0, 1\)"),
        ({"ramp_fraction": 0.7, "freeze_fraction": 0.5}, "ramp_fraction \\+ freeze_fraction"),
        ({"granularity": "neuron"}, "dpf: granularity must be 'weight'"),
        ({"period": "often"}, "period"),
        ({"cycles": 3}, "does not take option"),
    ],
)
def test_bad_options_are_one_line_errors(kwargs: dict, message: str) -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.raises(PrunekitError, match=message) as e:
        prunekit.Pruner(model, "dpf", 0.5, 20, optimizer=opt, **kwargs)
    assert "\n" not in str(e.value)


def test_data_driven_criterion_is_refused() -> None:
    method = prunekit.METHODS.get("dpf").with_options(criterion="wanda")
    with pytest.raises(PrunekitError, match="dpf: criterion must be one of magnitude, lamp"):
        prunekit.Pruner(mlp(), method, 0.5, 20, data=(torch.randn(8, 12), torch.zeros(8)))


def test_lamp_allocation_reaches_the_target() -> None:
    model = mlp()
    x, y = torch.randn(64, 12), torch.randint(0, 3, (64,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    method = prunekit.METHODS.get("dpf").with_options(criterion="lamp")
    pr = prunekit.Pruner(model, method, 0.9, 30, optimizer=opt, period=4)
    train(pr, model, opt, 30, x, y)
    pr.finalize()
    n = sum(m.weight.numel() for m in linears(model))
    assert sum(int((m.weight == 0).sum()) for m in linears(model)) == round(0.9 * n)


def test_dpf_run_through_the_pipeline(tmp_path: Path) -> None:
    r = run(small_run_config(method="dpf", method_args={"period": 4}), out=tmp_path / "run")
    assert r.result["achieved_sparsity"] == pytest.approx(0.9, abs=1e-3)
    report = r.result["objective_report"]
    assert report["mask_updates"] > 1 and report["revived_weights"] >= 0
    t = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert not any(k.endswith(("_orig", "_mask")) for k in t)
    ws = [v for k, v in t.items() if k.endswith("weight")]
    zeros = sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)
    assert zeros == pytest.approx(r.result["achieved_sparsity"], abs=1e-12)


def test_cli_bad_option_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(
        "prune", "--method", "dpf", "-o", "period=0", "--out", str(tmp_path / "r"), capsys=capsys
    )
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == ["error: dpf: period must be >= 1, got 0"]


def test_the_ramp_is_the_cubic_of_the_module_docstring() -> None:
    """s_t = s_f (1 - (1 - t / T_ramp)^3): 0 at the start, 7/8 of the target halfway,
    the target at T_ramp and after."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    pr = prunekit.Pruner(model, "dpf", 0.8, 41, optimizer=opt, ramp_fraction=0.5)
    obj: DPFObjective = pr.objective
    T = obj.ramp_end
    assert T == 20  # a window of 40 steps, ramped over half of it
    assert obj.sparsity_at(0) == 0.0
    assert obj.sparsity_at(T // 2) == pytest.approx(0.8 * 7 / 8)
    assert obj.sparsity_at(5) == pytest.approx(0.8 * (1 - (1 - 5 / 20) ** 3))
    assert obj.sparsity_at(T) == pytest.approx(0.8) and obj.sparsity_at(T + 7) == pytest.approx(0.8)

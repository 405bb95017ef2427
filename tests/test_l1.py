"""L1-regularized pruning: soft-threshold and group proximal steps against hand values,
the subgradient penalty, masks respected, bad input, and an end-to-end run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import small_run_config
from safetensors.torch import load_file
from torch import nn

from prunekit import RunConfig, run
from prunekit.pruning.masks import apply_mask, effective, original
from prunekit.pruning.methods import get_method
from prunekit.pruning.objectives import OBJECTIVES
from prunekit.pruning.objectives.l1 import L1Objective, soft_threshold
from prunekit.pruning.options import RunFacts
from prunekit.pruning.phase import build_objective
from prunekit.registry import PrunekitError


def l1(**kw: object) -> L1Objective:
    """The l1 objective; ``granularity`` is a run fact."""
    run = RunFacts(granularity=str(kw.pop("granularity", "weight")))
    return OBJECTIVES.get("l1")(run, **kw)  # type: ignore[return-value]


def linear(rows: list[list[float]]) -> nn.Linear:
    m = nn.Linear(len(rows[0]), len(rows))
    with torch.no_grad():
        m.weight.copy_(torch.tensor(rows))
    return m


def test_soft_threshold_hand_values() -> None:
    w = torch.tensor([-0.3, -0.05, 0.0, 0.04, 0.1, 0.5])
    assert soft_threshold(w, 0.05).tolist() == pytest.approx([-0.25, 0.0, 0.0, 0.0, 0.05, 0.45])


def test_proximal_step_zeroes_exactly_the_weights_below_threshold_and_keeps_masks() -> None:
    m = linear([[0.3, -0.02, 0.019, -0.5], [0.021, 0.0, -0.2, 0.8]])
    apply_mask(m, torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]))
    obj = l1(lam=0.2)
    obj.attach(nn.Sequential(m), {"m": m})
    before = original(m).detach().clone()
    obj.after_step(m, lr=0.1)  # threshold lr * lam = 0.02
    w = effective(m).detach()
    expect = torch.tensor([[0.28, 0.0, 0.0, 0.0], [0.001, 0.0, -0.18, 0.78]])
    assert torch.allclose(w, expect, atol=1e-6)
    below = before.abs() <= 0.02
    assert bool((w[below] == 0).all()) and bool((w[~below & (m.weight_mask == 1)] != 0).all())
    assert m.weight_mask[0, 3] == 0  # the mask is untouched: the masked entry stays masked


def test_group_proximal_step_hand_values() -> None:
    # rows: norm 5 and norm 0.5; n_g = 2; lr*lam*sqrt(2) = 1 -> scales 0.8 and 0
    m = linear([[3.0, 4.0], [0.3, 0.4]])
    obj = l1(lam=1.0 / math.sqrt(2.0), granularity="neuron")
    obj.attach(nn.Sequential(m), {"m": m})
    obj.after_step(m, lr=1.0)
    assert effective(m).detach().tolist() == [pytest.approx([2.4, 3.2]), [0.0, 0.0]]


def test_subgradient_penalty_values() -> None:
    m = linear([[3.0, -4.0], [0.3, 0.4]])
    obj = l1(lam=0.1, update="subgradient")
    obj.attach(nn.Sequential(m), {"m": m})
    assert float(obj.penalty(m).detach()) == pytest.approx(0.1 * 7.7)
    group = l1(lam=0.1, update="subgradient", granularity="neuron")
    group.attach(nn.Sequential(m), {"m": m})
    assert float(group.penalty(m).detach()) == pytest.approx(0.1 * math.sqrt(2) * 5.5)
    assert l1(lam=0.1).penalty(m) is None  # proximal: no loss term, the step does it


def test_subgradient_never_zero_proximal_does() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    zeros = {}
    for update in ("subgradient", "proximal"):
        torch.manual_seed(1)
        m = nn.Linear(10, 3)
        obj = l1(lam=0.05, update=update)
        obj.attach(nn.Sequential(m), {"m": m})
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        for _ in range(40):
            loss = nn.functional.cross_entropy(m(x), y)
            p = obj.penalty(m)
            loss = loss + p if p is not None else loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            obj.after_step(m, 0.1)
        zeros[update] = int((effective(m) == 0).sum())
    assert zeros["subgradient"] == 0 and zeros["proximal"] > 5


def test_bad_input_and_describe() -> None:
    with pytest.raises(PrunekitError, match="lambda must be >= 0"):
        l1(lam=-0.1)
    with pytest.raises(PrunekitError, match="update must be"):
        l1(update="adam")
    assert l1(lam=0.003).describe() == "l1 lambda=0.003 (proximal, lasso)"
    obj = build_objective(get_method("l1").with_options(granularity="neuron"), 0.9, 10)
    assert obj.group and "group lasso" in obj.describe()


def test_lambda_that_empties_a_layer_is_an_error() -> None:
    m = linear([[0.3, -0.2], [0.1, 0.4]])
    obj = l1(lam=10.0, check_every=1)
    obj.attach(nn.Sequential(m), {"fc": m})
    with pytest.raises(
        PrunekitError, match=r"l1 lambda=10 \(proximal\) drove every weight of layer 'fc'"
    ):
        obj.after_step(m, lr=0.1)


def small_cfg(**kw: object) -> RunConfig:
    """A tiny synthetic l1 run (see tests/conftest.py)."""
    return small_run_config(**{"method": "l1", **kw})


def test_nan_loss_names_step_and_lambda() -> None:
    cfg = small_cfg(epochs=0, method_args={"lam": 1e39, "update": "subgradient"})
    with pytest.raises(PrunekitError, match=r"at step 0 .*l1 lambda=1e\+39 \(subgradient"):
        run(cfg)


def test_l1_run_reaches_target_with_real_zeros(tmp_path: Path) -> None:
    r = run(small_cfg(method_args={"lam": 1e-2}), out=tmp_path / "run")
    assert r.result["achieved_sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert r.result["objective_report"]["zero_fraction_before_prune"] > 0
    t = load_file(str(tmp_path / "run" / "model.safetensors"))
    ws = [v for k, v in t.items() if k.endswith("weight")]
    zeros = sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)
    assert zeros == pytest.approx(r.result["achieved_sparsity"], abs=1e-12)

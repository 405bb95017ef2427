"""AC/DC (alternating compressed / decompressed training): its sub-phase plan, exact
sparsity, masks held in sparse sub-phases and lifted in dense ones, a wrongly pruned
weight coming back, and one-line errors for bad options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prunekit
from prunekit.pruning.objectives.acdc import ACDC, ACDCObjective, acdc_plan
from prunekit.registry import PrunekitError


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 8), nn.ReLU(), nn.Linear(8, 3))


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_plan_by_hand() -> None:
    # 49-step window: sub-phases of round(0.1 * 49) = 5 steps; 0.7 * 49 = 34 steps hold
    # 3 sparse + dense pairs (30 steps); the final sparse sub-phase starts at step 30
    assert acdc_plan(49, 0.1, 0.3) == (5, 30)
    assert acdc_plan(10, 0.4, 0.5) == (4, 0)  # no pair fits: one cut, masked training


def test_sparse_and_dense_sub_phases_and_exact_sparsity() -> None:
    model = mlp()
    keys = set(model.state_dict())
    x, y = torch.randn(64, 12), torch.randint(0, 3, (64,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pr = prunekit.Pruner(model, ACDC, 0.8, 50, optimizer=opt)
    obj: ACDCObjective = pr.objective
    n = sum(m.weight.numel() for m in linears(model))
    zeros: list[int] = []
    for _ in range(50):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        pr.step()
        zeros.append(sum(int((m.weight == 0).sum()) for m in linears(model)))
    pr.finalize()
    # zeros[u - 1]: after step u. Sparse sub-phases [0, 5), [10, 15), [20, 25), [30, 49):
    # exactly the target pruned; dense ones (5..9, 15..19, 25..29): the pruned weights train
    for u in range(1, 50):
        sparse, _ = obj.state(u) if u < 49 else (True, False)
        if sparse:
            assert zeros[u - 1] == round(0.8 * n), u
        else:
            assert zeros[u - 1] < round(0.8 * n), u  # the mask is lifted
    assert obj.cuts == 4
    assert sum(int((m.weight == 0).sum()) for m in linears(model)) == round(0.8 * n)
    assert set(model.state_dict()) == keys
    assert not any(torch.nn.utils.prune.is_pruned(m) for m in linears(model))


def test_a_weight_cut_at_the_first_sparse_phase_comes_back() -> None:
    """Least squares y = X w*, w* = (1, 0, 3, 0), w starting at (1, 0.9, 0.01, 0.8): the
    first cut (half the weights) drops w_3, the dense sub-phase grows it, the next cut
    keeps it."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = x @ torch.tensor([1.0, 0.0, 3.0, 0.0])
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.9, 0.01, 0.8]]))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    pr = prunekit.Pruner(
        model, ACDC, 0.5, 100, optimizer=opt, phase_fraction=0.2, final_fraction=0.5
    )
    assert float(model.weight.detach()[0, 2]) == 0.0
    for _ in range(100):
        loss = (model(x).squeeze(1) - y).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        pr.step()
    pr.finalize()
    w = model.weight.detach()[0]
    assert torch.equal(w != 0, torch.tensor([True, False, True, False]))
    assert float(w[2]) == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"phase_fraction": 0.0}, r"acdc: phase_fraction must be in \(0, 1\), got 0"),
        ({"final_fraction": 1.0}, r"acdc: final_fraction must be in \(0, 1\)"),
        ({"granularity": "neuron"}, "acdc: granularity must be 'weight'"),
        ({"period": 3}, "does not take option"),
    ],
)
def test_bad_options_are_one_line_errors(kwargs: dict, message: str) -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.raises(PrunekitError, match=message) as e:
        prunekit.Pruner(model, ACDC, 0.5, 20, optimizer=opt, **kwargs)
    assert "\n" not in str(e.value)

"""Mask invariants (PyTorch's own pruning tests, restated for prunekit)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as tprune

from prunekit import PrunekitError, finalize, prune, sparsity
from prunekit.pruning.masks import apply_mask, clone, effective, masked_parameters, original


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)
    )


def test_ones_mask_changes_nothing() -> None:
    model = mlp()
    x = torch.randn(5, 20)
    before = model(x)
    apply_mask(model[1], torch.ones(16, 20))
    assert torch.equal(model(x), before)


def test_global_magnitude_reaches_exact_sparsity() -> None:
    model = mlp()
    n = 20 * 16 + 16 * 8 + 8 * 4
    prune(model, "magnitude", 0.7)
    assert sparsity(model) == pytest.approx(round(0.7 * n) / n, abs=0)


def test_layer_scope_reaches_exact_sparsity_in_every_layer() -> None:
    model = mlp()
    prune(model, "magnitude", 0.5, scope="layer")
    for i in (1, 3, 5):
        w = effective(model[i])
        assert int((w == 0).sum()) == round(0.5 * w.numel())


def test_global_magnitude_prunes_smallest_weights() -> None:
    model = mlp()
    weights = torch.cat(
        [m.weight.detach().abs().flatten() for m in model if isinstance(m, nn.Linear)]
    )
    prune(model, "magnitude", 0.5)
    kept = torch.cat(
        [effective(m).detach().abs().flatten() for m in model if isinstance(m, nn.Linear)]
    )
    threshold = torch.sort(weights).values[round(0.5 * weights.numel()) - 1]
    assert kept[kept > 0].min() >= threshold


def test_masks_only_lose_entries_and_parameter_identity_kept() -> None:
    model = mlp()
    param = model[1].weight
    prune(model, "random", 0.3, seed=1)
    first = model[1].weight_mask.clone()
    assert original(model[1]) is param
    prune(model, "random", 0.6, seed=2)
    second = model[1].weight_mask
    assert bool(((second == 1) <= (first == 1)).all())
    assert sparsity(model) == pytest.approx(round(0.6 * 480) / 480, abs=0)


def test_pruned_weights_stay_zero_under_momentum_and_weight_decay() -> None:
    model = mlp()
    prune(model, "magnitude", 0.8)
    masks = {k: v.clone() for k, v in masked_parameters(model).items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    for _ in range(20):
        loss = model(torch.randn(32, 20)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, mask in masks.items():
        mod = model.get_submodule(name.rsplit(".", 1)[0])
        assert bool((effective(mod)[mask == 0] == 0).all())
        assert bool((mod.weight_orig.grad[mask == 0] == 0).all())


def test_finalize_keeps_outputs_and_plain_state_dict() -> None:
    model = mlp()
    prune(model, "magnitude", 0.9)
    x = torch.randn(7, 20)
    masked_out = model(x)
    finalize(model)
    assert torch.equal(model(x), masked_out)
    assert not any(k.endswith(("_orig", "_mask")) for k in model.state_dict())
    fresh = mlp()
    fresh.load_state_dict(model.state_dict(), strict=True)


def test_interoperates_with_torch_prune() -> None:
    model = mlp()
    tprune.l1_unstructured(model[1], "weight", amount=0.5)
    prune(model, "magnitude", 0.8)
    assert sparsity(model) >= 0.8 - 1e-9
    tprune.remove(model[1], "weight")  # torch's own remove works on prunekit state


def test_clone_of_masked_model() -> None:
    model = mlp()
    prune(model, "magnitude", 0.5)
    model(torch.randn(2, 20))  # hook leaves a non-leaf weight: plain deepcopy would fail
    copy = clone(model)
    x = torch.randn(3, 20)
    assert torch.equal(copy(x), model(x))


def test_neuron_granularity_zeroes_whole_units_and_keeps_head() -> None:
    model = mlp()
    prune(model, "l1-filter", 0.5)
    for i, units in ((1, 16), (3, 8)):
        rows = effective(model[i]).abs().sum(1)
        assert int((rows == 0).sum()) == units // 2
        assert bool((effective(model[i], "bias")[rows == 0] == 0).all())
    assert not hasattr(model[5], "weight_mask")


def test_neuron_pruning_every_unit_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 3))
    with pytest.raises(PrunekitError, match="at least one must stay"):
        prune(model, "l1-filter", 0.9)


def test_bad_inputs() -> None:
    with pytest.raises(PrunekitError, match=r"sparsity must be in \[0, 1\)"):
        prune(mlp(), "magnitude", 1.0)
    with pytest.raises(PrunekitError, match="sparsity"):
        prune(mlp(), "magnitude", -0.1)
    with pytest.raises(PrunekitError, match="unknown method 'nope'; known: .*magnitude"):
        prune(mlp(), "nope", 0.5)
    with pytest.raises(PrunekitError, match="no prunable layers"):
        prune(nn.Sequential(nn.ReLU()), "magnitude", 0.5)
    with pytest.raises(PrunekitError, match="mask shape"):
        apply_mask(mlp()[1], torch.ones(3, 3))

"""Issue 14: tied weights get one mask (finalize keeps outputs and sparsity exactly), a
tensor tied to a module prunekit cannot mask is left dense, `exclude` typos are named,
and a run that empties a layer or diverges says which option did it."""

from __future__ import annotations

import pytest
import torch
from conftest import small_run_config
from torch import nn

import prunekit
from prunekit import run
from prunekit.pruning.masks import masked_parameters
from prunekit.registry import PrunekitError


class Tied(nn.Module):
    """Two Linear layers sharing one weight tensor, then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(32, 32)
        self.b = nn.Linear(32, 32)
        self.b.weight = self.a.weight
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


def zero_fraction(t: torch.Tensor) -> float:
    return float((t == 0).float().mean())


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("method", ["random", "magnitude"])
def test_tied_weights_one_mask_finalize_exact(method: str, scope: str) -> None:
    torch.manual_seed(0)
    model, x = Tied(), torch.randn(16, 32)
    prunekit.prune(model, method, 0.5, scope=scope)
    assert model.a.weight_mask is model.b.weight_mask  # one mask per shared tensor
    before_sparsity, before_out = prunekit.sparsity(model), model(x)
    if scope == "layer":
        assert zero_fraction(model.a.weight) == 0.5
    prunekit.finalize(model)
    assert model.a.weight is model.b.weight
    assert prunekit.sparsity(model) == before_sparsity
    if scope == "layer":
        assert zero_fraction(model.a.weight) == 0.5  # was 0.75: two masks multiplied in
    torch.testing.assert_close(model(x), before_out, rtol=0, atol=0)


def test_tied_weights_repruned_stay_one_mask() -> None:
    torch.manual_seed(0)
    model = Tied()
    prunekit.prune(model, "random", 0.3, scope="layer")
    prunekit.prune(model, "magnitude", 0.6, scope="layer")
    assert model.a.weight_mask is model.b.weight_mask
    assert sorted(masked_parameters(model)) == ["a.weight", "b.weight", "head.weight"]
    prunekit.finalize(model)
    assert zero_fraction(model.a.weight) == pytest.approx(0.6, abs=1 / 1024)


class TiedEmbedding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.body = nn.Linear(8, 8)
        self.out = nn.Linear(8, 10, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.body(self.embed(idx))))


def test_weight_tied_to_an_unmaskable_module_is_left_dense() -> None:
    """An output layer tied to an embedding is not a prunable layer (it stays dense, as
    a language model's lm_head): the embedding is never touched, and sparsity is over
    the layers actually pruned."""
    model = TiedEmbedding()
    before = model.embed.weight.clone()
    prunekit.prune(model, "magnitude", 0.5)
    assert sorted(masked_parameters(model)) == ["body.weight"]
    assert prunekit.sparsity(model) == pytest.approx(0.5)
    prunekit.finalize(model)
    assert torch.equal(model.embed.weight, before)
    assert model.out.weight is model.embed.weight
    prunekit.prune(model, "magnitude", 0.5, exclude=["out"])  # naming it is allowed too
    assert torch.equal(model.embed.weight, before)


def test_exclude_typo_names_the_prunable_layers() -> None:
    model = prunekit.create_model("lenet300")
    with pytest.raises(
        PrunekitError, match="no prunable layer named 'typo'; prunable layers: fc1, fc2, fc3"
    ):
        prunekit.prune(model, "magnitude", 0.5, exclude=["typo"])
    with pytest.raises(PrunekitError, match="'typo'"):
        prunekit.prune(model, "l1-filter", 0.5, exclude=["typo"])


def test_huge_lambda_emptying_a_layer_names_layer_and_lambda() -> None:
    with pytest.raises(PrunekitError, match=r"no unit of layer 'fc1' alive.*lambda=1000"):
        run(small_run_config(method="l1", method_args={"lam": 1e3}))


def test_sparsity_emptying_a_layer_names_the_sparsity() -> None:
    with pytest.raises(PrunekitError, match=r"layer 'fc1'.*sparsity 0.995.*--scope layer"):
        run(small_run_config(method="magnitude", sparsity=0.995, epochs=0, finetune_epochs=0))


def test_divergence_names_lr_and_lambda() -> None:
    with pytest.raises(PrunekitError, match=r"loss became .*starting at 1e\+06.*lambda=0.01"):
        run(small_run_config(method="l1", lr=1e6, finetune_lr=1e6, epochs=0))

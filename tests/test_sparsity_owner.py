"""Sparsity has one definition (``prunekit.evaluation.cost``): the library's
``prunekit.sparsity``, the result record's ``achieved_sparsity``, the CSR conversion's
per-layer sparsity and the peers' figure against the dense model all agree, on the cases
where the four former copies disagreed (a Conv3d, a model without such layers, tied
weights, an output layer tied to an embedding)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prunekit
from prunekit.evaluation.cost import (
    achieved_sparsity,
    layer_sparsity,
    sparsity_against,
    summary,
    weight_sparsity,
)
from prunekit.inference import sparse


def test_one_function_behind_every_name() -> None:
    assert prunekit.sparsity is achieved_sparsity
    assert sparse.weight_sparsity is weight_sparsity
    from prunekit.pruning import masks

    assert not hasattr(masks, "sparsity")


def test_conv3d_counts() -> None:
    net = nn.Sequential(nn.Conv3d(1, 2, 2, bias=False), nn.Flatten(), nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        net[0].weight.zero_()  # 16 zeros
        net[2].weight.fill_(1.0)  # 6 nonzeros
    assert prunekit.sparsity(net) == 1.0 - 6 / 22
    assert summary(net, (1, 2, 2, 2))["achieved_sparsity"] == 1.0 - 6 / 22
    assert weight_sparsity(net[0]) == 1.0
    assert layer_sparsity(net)["0"]["sparsity"] == 1.0


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_model_without_layers_is_zero_everywhere() -> None:
    net = nn.Sequential(nn.BatchNorm1d(4), nn.ReLU())
    assert prunekit.sparsity(net) == 0.0
    assert summary(net, (4,))["achieved_sparsity"] == 0.0
    assert sparsity_against({}, {}) == 0.0
    assert weight_sparsity(nn.Linear(0, 3)) == 0.0  # an empty layer: 0.0, not 0/0


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 4)
        self.a = nn.Linear(4, 4, bias=False)
        self.b = nn.Linear(4, 4, bias=False)
        self.b.weight = self.a.weight  # shared by two layers: counted once
        self.out = nn.Linear(4, 5, bias=False)
        self.out.weight = self.embed.weight  # an embedding: not counted

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.out(self.b(self.a(self.embed(idx))))


def test_tied_weights_count_once_and_embeddings_not_at_all() -> None:
    model = Tied()
    with torch.no_grad():
        model.a.weight[:3] = 0.0  # 12 of 16 zero
    assert prunekit.sparsity(model) == 1.0 - 4 / 16
    prunekit.prune(model, "magnitude", 0.5)
    w = model.a.weight
    assert prunekit.sparsity(model) == 1.0 - int(torch.count_nonzero(w)) / w.numel()


def test_sparsity_against_dense_counts_removed_units_as_zeros() -> None:
    dense = layer_sparsity(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)))
    small = nn.Sequential(nn.Linear(4, 1), nn.Linear(1, 2))  # 3 of 4 hidden units removed
    assert sparsity_against(layer_sparsity(small), dense) == pytest.approx(1 - 6 / 24)

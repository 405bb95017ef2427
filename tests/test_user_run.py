"""prunekit.run on a user's model factory, DataLoaders and loss function."""

from __future__ import annotations

import json

import pytest
import torch
from test_pruner import Net, make_data
from torch.utils.data import DataLoader, TensorDataset

import prunekit
from prunekit import PrunekitError


def loaders():
    x, y = make_data(640, seed=1)
    xv, yv = make_data(128, seed=2)
    xt, yt = make_data(256, seed=3)
    g = torch.Generator().manual_seed(0)
    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=g)
    return train, DataLoader(TensorDataset(xv, yv), 64), DataLoader(TensorDataset(xt, yt), 64)


def test_run_on_a_factory_and_dataloaders(tmp_path):
    train, val, test = loaders()
    run = prunekit.run(
        Net,
        train=train,
        val=val,
        test=test,
        method="gmp",
        sparsity=0.8,
        epochs=2,
        finetune_epochs=2,
        out=tmp_path / "r",
        progress=False,
    )
    res = run.result
    assert res["method"] == "gmp" and res["dataset"] == "user"
    assert res["achieved_sparsity"] == pytest.approx(0.8, abs=0.005)
    assert res["accuracy"] > 0.6 and res["accuracy_dense"] > 0.6  # chance: 0.25
    assert res["pruning_events"][-1]["target"] == 0.8
    saved = json.loads((tmp_path / "r" / "result.json").read_text())
    assert saved["accuracy"] == res["accuracy"]
    again = prunekit.load(tmp_path / "r", model=Net())
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(again(x), run.model.eval()(x))


def test_run_user_objects_are_checked():
    train, _, _ = loaders()
    with pytest.raises(PrunekitError, match="not an nn.Module"):
        prunekit.run(lambda: 3, train=train, progress=False)
    with pytest.raises(PrunekitError, match="train is empty"):
        prunekit.run(Net, train=[], progress=False)
    with pytest.raises(PrunekitError, match="takes no train"):
        prunekit.run(prunekit.RunConfig(model="lenet300", dataset="synthetic"), train=train)


@pytest.mark.filterwarnings("ignore:l0. after")  # a short phase: the cut is partly blind
def test_run_l0_gates_join_the_runs_optimizer():
    # The run builds its learning-rate schedule after the Pruner added the gate group.
    train, val, test = loaders()
    res = prunekit.run(
        Net,
        train=train,
        val=val,
        test=test,
        method="l0",
        sparsity=0.8,
        epochs=1,
        finetune_epochs=1,
        progress=False,
        gate_lr=0.2,
    ).result
    assert res["achieved_sparsity"] == pytest.approx(0.8, abs=0.005)

"""BatchNorm recalibration: running statistics re-estimated, nothing else changes."""

from __future__ import annotations

import pytest
import torch
from conftest import small_run_config
from torch import nn

from prunekit import create_model, prune, run
from prunekit.pruning.criteria import Context
from prunekit.pruning.methods import get_method
from prunekit.pruning.phase import PruningPhase
from prunekit.pruning.reconstruction.batchnorm import recalibrate_batchnorm


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    )


def test_running_stats_equal_hand_statistics_and_weights_stay() -> None:
    model = _net().train()
    bn = model[1]
    bn.running_mean.fill_(5.0)
    bn.running_var.fill_(9.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(32, 1, 8, 8)
    assert recalibrate_batchnorm(model, x) == 1
    with torch.no_grad():
        z = model[0](x)  # what the BatchNorm sees: (N, C, H, W)
    per_channel = z.transpose(0, 1).reshape(4, -1)
    assert torch.allclose(bn.running_mean, per_channel.mean(1), atol=1e-6)
    assert torch.allclose(bn.running_var, per_channel.var(1, unbiased=True), atol=1e-5)
    after = model.state_dict()
    for k, v in before.items():
        if not k.startswith("1.running") and k != "1.num_batches_tracked":
            assert torch.equal(after[k], v), k  # weights, biases, BN affine untouched
    assert bn.momentum == 0.1 and model.training and bn.training  # modes restored


def test_batches_average_their_statistics() -> None:
    model = _net().eval()
    bn = model[1]
    x = torch.randn(40, 1, 8, 8)
    recalibrate_batchnorm(model, x, batch_size=20)
    with torch.no_grad():
        halves = [model[0](h).transpose(0, 1).reshape(4, -1) for h in x.split(20)]
    assert torch.allclose(bn.running_mean, sum(h.mean(1) for h in halves) / 2, atol=1e-6)
    assert torch.allclose(bn.running_var, sum(h.var(1) for h in halves) / 2, atol=1e-5)
    assert not model.training and bn.momentum == 0.1


def test_no_batchnorm_is_a_no_op() -> None:
    model = create_model("lenet300")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert recalibrate_batchnorm(model, torch.rand(8, 1, 28, 28)) == 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_library_prune_recalibrates_with_data() -> None:
    x = torch.rand(64, 1, 28, 28)
    model = create_model("resnet20", in_channels=1, input_size=28)
    stale = model.get_submodule("bn1").running_mean.clone()
    prune(model, "magnitude", 0.5, data=(x, torch.zeros(64, dtype=torch.long)))
    assert not torch.equal(model.get_submodule("bn1").running_mean, stale)
    off = create_model("resnet20", in_channels=1, input_size=28)
    prune(off, "magnitude", 0.5, data=(x, None), recalibrate_bn=False)
    assert torch.equal(off.get_submodule("bn1").running_mean, torch.zeros_like(stale))


def test_pruning_event_recalibrates() -> None:
    model, x = _net(), torch.randn(16, 1, 8, 8)
    phase = PruningPhase(get_method("magnitude"), 0.5, 0, ctx=Context(data=(x, None)))
    phase.on_start(model)
    phase.on_end(model, 0)  # a zero-step phase: the event runs at the end
    with torch.no_grad():
        z = model[0](x).transpose(0, 1).reshape(4, -1)
    assert phase.bn_recalibrations == 1
    assert torch.allclose(model[1].running_mean, z.mean(1), atol=1e-6)


@pytest.mark.slow
def test_pipeline_records_recalibration() -> None:
    cfg = small_run_config(
        model="resnet20", finetune_epochs=0, limit=100, test_limit=50, sparsity=0.5
    )
    r = run(cfg)
    layers = sum(isinstance(m, nn.BatchNorm2d) for m in r.model.modules())
    assert r.result["bn_recalibration"] == {
        "enabled": True,
        "batchnorm_layers": layers,
        "events": 1,
        "examples": 10,
    }

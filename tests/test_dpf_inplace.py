"""DPF keeps its dense weights in one buffer per layer, overwritten in place each step:
a seeded run gives bit-identical weights, masks and dense copies, step by step, to the
implementation that stored a fresh copy every step."""

from __future__ import annotations

import torch
from test_dpf import train
from torch import nn

import prunekit
from prunekit.pruning.masks import original
from prunekit.pruning.objectives.dpf import DPFObjective


def fresh_copy_each_step(self: DPFObjective) -> None:
    """The previous ``_store_and_mask``: a new clone of every layer's weights per step."""
    for name, m in self.modules.items():
        p = original(m)
        self.dense[name] = p.detach().clone()
        p.mul_(self.keep[name])


def seeded_run(steps: int = 30) -> tuple[list[dict], dict, dict, list[set[int]]]:
    """Per step: the parameters (W ⊙ M), the masks and the dense copies; then the
    finalized model, the objective's report and the dense buffers' addresses seen."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3)
    )
    x, y = torch.randn(48, 10), torch.randint(0, 3, (48,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    pr = prunekit.Pruner(model, "dpf", 0.8, steps + 5, optimizer=opt, period=2)
    obj: DPFObjective = pr.objective
    trace, addresses = [], []

    def record() -> None:
        trace.append(
            {
                "params": {k: v.clone() for k, v in model.state_dict().items()},
                "keep": {n: k.clone() for n, k in obj.keep.items()},
                "dense": {n: d.clone() for n, d in obj.dense.items()},
            }
        )
        addresses.append({d.data_ptr() for d in obj.dense.values()})

    train(pr, model, opt, steps, x, y, spy=record)
    report = obj.report()
    pr.finalize()
    return trace, dict(model.state_dict()), report, addresses


def test_in_place_dense_buffer_is_bit_identical_to_a_fresh_copy_each_step(monkeypatch) -> None:
    new_trace, new_final, new_report, new_addresses = seeded_run()
    with monkeypatch.context() as mp:
        mp.setattr(DPFObjective, "_store_and_mask", fresh_copy_each_step)
        old_trace, old_final, old_report, _ = seeded_run()
    assert len(new_trace) == len(old_trace) == 30
    for step, (new, old) in enumerate(zip(new_trace, old_trace, strict=True)):
        for part in ("params", "keep", "dense"):
            assert new[part].keys() == old[part].keys()
            for k in new[part]:
                assert torch.equal(new[part][k], old[part][k]), (step, part, k)
    assert new_final.keys() == old_final.keys()
    assert all(torch.equal(new_final[k], old_final[k]) for k in new_final)
    assert new_report == old_report and new_report["revived_weights"] > 0
    # masks did change along the run (otherwise the comparison says little), and the
    # same buffers held the dense weights through it
    assert new_report["mask_updates"] > 5
    assert len(set.union(*new_addresses)) == len(new_addresses[0]) == 3

"""LAMP scores against a hand computation, its global allocation, and knowledge
distillation (the loss's value by hand, the callback in a real fit)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prunekit.data import Split
from prunekit.distill import Distillation, distill_loss
from prunekit.pruning.criteria.lamp import lamp_scores
from prunekit.pruning.masks import effective
from prunekit.pruning.step import prune_step
from prunekit.registry import PrunekitError
from prunekit.training import TrainSettings, fit


def test_lamp_scores_match_a_hand_computation() -> None:
    # sorted squares 1, 4, 9; suffix sums 14, 13, 9
    w = torch.tensor([[3.0, -1.0, 2.0]])
    assert lamp_scores(w).flatten().tolist() == pytest.approx([1.0, 1 / 14, 4 / 13])


def _two_layers() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(3, 1, bias=False), nn.Linear(1, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
        model[1].weight.copy_(torch.tensor([[10.0], [20.0]]))
    return model


def test_lamp_global_allocation_differs_from_magnitude() -> None:
    # LAMP: layer 0 -> 1/14, 4/13, 1; layer 1 -> 100/500 = 0.2, 1. The 2 lowest of 5:
    # w=1 (1/14) and w=10 (0.2); magnitude would take w=1 and w=2 from layer 0.
    lamp = _two_layers()
    prune_step(lamp, criterion="lamp", granularity="weight", sparsity=0.4, scope="global")
    assert effective(lamp[0]).tolist() == [[0.0, 2.0, 3.0]]
    assert effective(lamp[1]).tolist() == [[0.0], [20.0]]
    mag = _two_layers()
    prune_step(mag, criterion="magnitude", granularity="weight", sparsity=0.4, scope="global")
    assert effective(mag[0]).tolist() == [[0.0, 0.0, 3.0]]


def test_lamp_as_a_method_through_the_pruner() -> None:
    # not registered as a method (the default comparison runs every registered one);
    # a Method with criterion="lamp" is how a user runs it
    from prunekit import Pruner
    from prunekit.pruning.methods import Method

    model = _two_layers()
    Pruner(model, Method("lamp", criterion="lamp"), 0.4, 0, allow_short=True).finalize()
    assert model[1].weight.tolist() == [[0.0], [20.0]]


def test_distill_loss_matches_a_hand_computation() -> None:
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    T = 2.0
    ps = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    pt = ps[::-1]
    kl = sum(a * math.log(a / b) for a, b in zip(pt, ps, strict=True))
    assert distill_loss(s, t, T).item() == pytest.approx(T * T * kl, rel=1e-6)
    assert distill_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_pulls_the_student_towards_the_teacher() -> None:
    torch.manual_seed(0)
    x = torch.rand(256, 8)
    teacher = nn.Sequential(nn.Linear(8, 4))
    split = Split(x, teacher(x).argmax(1).roll(1))  # labels that disagree with the teacher

    def train(alpha: float) -> float:
        torch.manual_seed(1)
        student = nn.Sequential(nn.Linear(8, 4))
        kd = Distillation(teacher, alpha=alpha, temperature=2.0)
        fit(
            student,
            split,
            steps=60,
            settings=TrainSettings(lr=0.2, batch_size=64, weight_decay=0.0),
            generator=torch.Generator().manual_seed(0),
            callbacks=[kd],
        )
        assert kd._handle is None  # the hook is gone after the run
        with torch.no_grad():
            return distill_loss(student(x), teacher(x), 2.0).item()

    assert train(5.0) < 0.5 * train(0.0)


def test_distillation_rejects_bad_settings() -> None:
    with pytest.raises(PrunekitError, match="temperature > 0"):
        Distillation(nn.Linear(2, 2), temperature=0.0)


def test_torch_l1_peer_and_prunekit_magnitude_fine_tune_to_the_same_weights() -> None:
    """The peer (torch's global L1 pruning + the phase's fine-tuning, as run_peer runs it)
    and prunekit's one-shot magnitude are the same recipe: bit-identical weights after
    the phase (so no fine-tune recipe of prunekit's is worse than the peer's)."""
    from prunekit import Pruner, create_model
    from prunekit.experiments.peers import PEERS, _finalize_torch
    from prunekit.pruning.masks import clone

    torch.manual_seed(0)
    dense = create_model("lenet300", input_size=12, hidden=(32, 16))
    split = Split(torch.rand(256, 1, 12, 12), torch.randint(0, 10, (256,)))
    settings = TrainSettings(lr=0.1, batch_size=64)
    steps = 12

    peer = clone(dense)
    PEERS["torch-l1"](peer, 0.9, (1, 12, 12))
    fit(peer, split, steps=steps, settings=settings, generator=torch.Generator().manual_seed(1))
    _finalize_torch(peer)

    ours = clone(dense)
    pruner = Pruner(ours, "magnitude", 0.9, steps)
    fit(
        ours,
        split,
        steps=steps,
        settings=settings,
        generator=torch.Generator().manual_seed(1),
        callbacks=[pruner.callback()],
    )
    a, b = peer.state_dict(), ours.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)

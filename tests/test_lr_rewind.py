"""Learning-rate rewinding (prunekit.lr_rewind): the schedule fit actually applies."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from prunekit.data import Split
from prunekit.lr_rewind import LrRewind, event_restarts, rewound_factor
from prunekit.registry import PrunekitError
from prunekit.training import TrainSettings, fit


class _Record:
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def after_step(self, model: nn.Module, lr: float) -> None:
        self.lrs.append(lr)  # the lr the optimizer step just used


def _run(callbacks: list) -> list[float]:
    torch.manual_seed(0)
    split = Split(torch.randn(32, 1, 1, 4), torch.randint(0, 2, (32,)))
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    rec = _Record()
    fit(
        model,
        split,
        steps=8,
        settings=TrainSettings(lr=0.4, batch_size=8, weight_decay=0.0),
        generator=torch.Generator().manual_seed(0),
        callbacks=[*callbacks, rec],
    )
    return rec.lrs


def test_rewound_factor_hand_values() -> None:
    # restart at 4 of 8: two cosine cycles of 4 steps, 1, cos^2(pi/8), 1/2, sin^2(pi/8)
    c = 0.5 * (1 + math.cos(math.pi / 4))
    one = [1.0, c, 0.5, 1 - c]
    assert [rewound_factor(t, [4], 8) for t in range(8)] == pytest.approx(one + one)
    assert rewound_factor(8, [4], 8) == 0.0
    # restarts at 0 or at/after the end change nothing
    assert [rewound_factor(t, [0, 8], 8) for t in range(8)] == pytest.approx(
        [0.5 * (1 + math.cos(math.pi * t / 8)) for t in range(8)]
    )


def test_fit_applies_the_rewound_lr_and_no_restart_is_fits_own_cosine() -> None:
    plain = _run([])
    assert plain == pytest.approx([0.4 * 0.5 * (1 + math.cos(math.pi * t / 8)) for t in range(8)])
    assert _run([LrRewind([], 8)]) == pytest.approx(plain)
    rewound = _run([LrRewind([4], 8)])
    assert rewound == pytest.approx([0.4 * rewound_factor(t, [4], 8) for t in range(8)])
    assert rewound[4] == pytest.approx(0.4)  # full lr again right after the restart


def test_event_restarts_and_errors() -> None:
    events = [(0, 0.3), (10, 0.6), (20, 0.9)]
    assert event_restarts(events, "last") == [20]
    assert event_restarts(events, "every") == [0, 10, 20]
    with pytest.raises(PrunekitError, match="'last' or 'every'"):
        event_restarts(events, "first")
    with pytest.raises(PrunekitError, match=">= 1 step"):
        LrRewind([1], 0)

"""Gradual magnitude pruning (Zhu & Gupta 2017): the cubic schedule's end points and the
registered ``gmp`` method's events on a real sparsify phase."""

from __future__ import annotations

import pytest
import torch
from conftest import small_run_config

from prunekit import create_model, run, sparsity
from prunekit.data import Split
from prunekit.pruning.criteria import Context
from prunekit.pruning.methods import get_method
from prunekit.pruning.phase import PruningPhase
from prunekit.pruning.schedules import cubic, cubic_sparsity
from prunekit.training import TrainSettings, fit


def test_cubic_hits_s_i_at_t0_and_s_f_at_the_end() -> None:
    # t0 = 100, n = 5, dt = 20, s_i = 0.1, s_f = 0.95
    assert cubic_sparsity(100, 100, 5, 20, 0.1, 0.95) == pytest.approx(0.1)
    assert cubic_sparsity(200, 100, 5, 20, 0.1, 0.95) == pytest.approx(0.95)
    # halfway: 0.95 + (0.1 - 0.95) * 0.5**3 = 0.84375
    assert cubic_sparsity(150, 100, 5, 20, 0.1, 0.95) == pytest.approx(0.84375)
    ev = cubic(0.95, 100, 300, initial=0.1, prune_fraction=0.5, frequency=20)
    assert ev[0] == (100, pytest.approx(0.1)) and ev[-1] == (200, 0.95)
    assert len(ev) == 6 and all(b[1] > a[1] for a, b in zip(ev, ev[1:], strict=False))


def test_gmp_is_registered_as_magnitude_plus_cubic() -> None:
    m = get_method("gmp")
    assert (m.criterion, m.schedule, m.objective, m.granularity) == (
        "magnitude",
        "cubic",
        None,
        "weight",
    )


def test_gmp_phase_prunes_gradually_to_the_exact_target() -> None:
    torch.manual_seed(0)
    model = create_model("lenet300", input_size=12, hidden=(32, 16))
    split = Split(torch.rand(256, 1, 12, 12), torch.randint(0, 10, (256,)))
    phase = PruningPhase(get_method("gmp"), 0.9, 40, ctx=Context())
    seen: list[float] = []

    class Watch:
        def on_step(self, step: int, m: torch.nn.Module) -> None:
            if phase.history and len(seen) < len(phase.history):
                seen.append(sparsity(m))

    fit(
        model,
        split,
        steps=40,
        settings=TrainSettings(lr=0.01, batch_size=64),
        generator=torch.Generator().manual_seed(0),
        callbacks=[phase, Watch()],
    )
    targets = [e["target"] for e in phase.history]
    assert [e["step"] for e in phase.history] == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    assert targets[0] == 0.0 and targets[-1] == 0.9
    assert all(b > a for a, b in zip(targets, targets[1:], strict=False))
    assert seen == sorted(seen)
    assert sparsity(model) == pytest.approx(0.9, abs=1e-5)


def test_gmp_run(tmp_path) -> None:
    cfg = small_run_config(method="gmp")
    r = run(cfg, out=tmp_path / "run")
    assert r.result["schedule"] == "cubic" and len(r.result["pruning_events"]) > 2
    assert r.result["achieved_sparsity"] == pytest.approx(0.9, abs=1e-3)

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prunekit.pruning.schedules import cubic, cubic_sparsity, iterative, oneshot


def test_cubic_formula_hand_values() -> None:
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3 with t0=10, n=4, dt=5, s_i=0.1, s_f=0.9
    assert cubic_sparsity(10, 10, 4, 5, 0.1, 0.9) == pytest.approx(0.1)
    assert cubic_sparsity(30, 10, 4, 5, 0.1, 0.9) == pytest.approx(0.9)
    assert cubic_sparsity(20, 10, 4, 5, 0.1, 0.9) == pytest.approx(0.9 - 0.8 * 0.125)
    assert cubic_sparsity(0, 10, 4, 5, 0.1, 0.9) == pytest.approx(0.1)
    assert cubic_sparsity(99, 10, 4, 5, 0.1, 0.9) == pytest.approx(0.9)


@given(st.floats(0.0, 0.99), st.integers(0, 50), st.integers(1, 500))
def test_schedules_monotone_and_end_at_target(target: float, start: int, length: int) -> None:
    end = start + length
    for events in (
        oneshot(target, start, end),
        iterative(target, start, end, cycles=4),
        cubic(target, start, end),
    ):
        steps = [s for s, _ in events]
        targets = [t for _, t in events]
        assert steps == sorted(steps) and start <= steps[0] and steps[-1] <= end
        assert all(a <= b + 1e-12 for a, b in zip(targets, targets[1:], strict=False))
        assert targets[-1] == target


def test_iterative_prunes_equal_fraction_of_remaining() -> None:
    ev = iterative(0.875, 0, 30, cycles=3)
    assert [s for s, _ in ev] == [0, 10, 20]
    assert [t for _, t in ev] == pytest.approx([0.5, 0.75, 0.875])

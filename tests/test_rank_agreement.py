"""benchmarks/rank_agreement.py: average ranks and Spearman's rho by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from rank_agreement import average_ranks, spearman  # noqa: E402


def test_average_ranks_share_ties():
    assert average_ranks({"a": 0.9, "b": 0.8, "c": 0.8, "d": 0.1}) == {
        "a": 1.0,
        "b": 2.5,
        "c": 2.5,
        "d": 4.0,
    }


def test_spearman_by_hand():
    a = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, {k: -v for k, v in a.items()}) == pytest.approx(-1.0)
    # one swap of neighbours, no ties: 1 - 6 * (1 + 1) / (4 * 15) = 0.8
    assert spearman(a, {"a": 4.0, "b": 2.0, "c": 3.0, "d": 1.0}) == pytest.approx(0.8)


def test_pair_claims_count_only_gaps_beyond_noise():
    from rank_agreement import pair_claims

    from prunekit.experiments.claims import Estimate

    se = 0.003  # 2 standard errors of a gap: 2 * sqrt(2) * 0.003 = 0.0085
    d = {"a": Estimate(0.90, se), "b": Estimate(0.85, se), "c": Estimate(0.899, se)}
    f = {"a": Estimate(0.80, se), "b": Estimate(0.86, se), "c": Estimate(0.90, se)}
    # default claims a > b and c > b (a vs c within noise); the full side reverses a > b
    # beyond its noise and keeps c > b
    assert pair_claims(d, f) == {"pairs": 3, "claimed": 2, "confirmed": 1, "contradicted": 1}

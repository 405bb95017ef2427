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
    out = pair_claims(d, f)
    assert {k: out[k] for k in ("pairs", "claimed", "confirmed", "contradicted")} == {
        "pairs": 3,
        "claimed": 2,
        "confirmed": 1,
        "contradicted": 1,
    }


def test_pair_claims_count_discordant_pairs_per_side_noise():
    from rank_agreement import pair_claims

    from prunekit.experiments.claims import Estimate

    se = 0.003
    d = {"a": Estimate(0.90, se), "b": Estimate(0.85, se), "c": Estimate(0.899, se)}
    f = {"a": Estimate(0.80, se), "b": Estimate(0.86, se), "c": Estimate(0.90, se)}
    # a/b: opposite orders, both beyond noise; a/c: opposite orders, only the full side's
    # gap (0.1) beyond noise, the default side's (0.001) within it; b/c: same order
    out = pair_claims(d, f)
    assert (out["discordant"], out["discordant_default"], out["discordant_full"]) == (2, 1, 2)
    # equal means on one side are no disagreement
    tie = {"a": Estimate(0.9, se), "b": Estimate(0.9, se)}
    assert pair_claims(tie, {"a": Estimate(0.8, se), "b": Estimate(0.9, se)})["discordant"] == 0


def test_side_only_reports_rank_ties_and_noise():
    from rank_agreement import side_only

    from prunekit.experiments.claims import Estimate

    se = 0.003
    own = {
        "magnitude": Estimate(0.87, se),
        "torch-l1": Estimate(0.87, se),
        "gmp": Estimate(0.868, se),
        "random": Estimate(0.60, se),
    }
    rows = {o["method"]: o for o in side_only(own, ["magnitude", "gmp"], 0.9)}
    assert sorted(rows) == ["random", "torch-l1"]
    assert rows["torch-l1"]["rank"] == 1.5 and rows["torch-l1"]["of"] == 4
    assert rows["torch-l1"]["same"] == ["magnitude"]
    assert rows["torch-l1"]["within_noise"] == ["gmp", "magnitude"]
    assert rows["random"]["rank"] == 4 and rows["random"]["within_noise"] == []


def test_previous_summary_quotes_the_old_file():
    from rank_agreement import previous_summary

    old = "\n".join(
        [
            "# Rank agreement",
            "Command: `prunekit compare --only a,b,c --out x`  ",
            "Command: `prunekit compare --full --only a,b --seeds S --out y`  ",
            "Date: 2026-01-01 10:00 UTC  ",
            "**Spearman rank correlation: mean over sparsities 0.5 (lowest 0.1).**",
            "Pairs of methods the default side orders beyond noise: 1 of 3.",
        ]
    )
    text = previous_summary(old, "abc1234")
    assert "git show abc1234:benchmarks/results/rank_agreement.md" in text
    assert "Date: 2026-01-01 10:00 UTC;" in text
    assert "methods ranked: a,b." in text
    assert "Its headline: Spearman rank correlation: mean over sparsities 0.5 (lowest 0.1)." in text
    assert text.endswith("Pairs of methods the default side orders beyond noise: 1 of 3.")


def test_finished_reads_several_directories_keeps_seeds_and_refuses_duplicates(monkeypatch):
    import rank_agreement

    def row(cell, seed, status="ok"):
        return {"cell_id": cell, "seed": seed, "status": status}

    stored = {
        "s0": [row("a0", 0), row("b0", 0, "failed")],
        "s1": [row("a1", 1), row("a2", 2)],
        "dup": [row("a0", 0)],
    }
    monkeypatch.setattr(rank_agreement, "read_rows", lambda out: stored[str(out)])
    cells = [r["cell_id"] for r in rank_agreement.finished([Path("s0"), Path("s1")], [0, 1])]
    assert cells == ["a0", "a1"]
    assert len(rank_agreement.finished(Path("s1"))) == 2
    with pytest.raises(SystemExit, match="a0 is in more than one directory"):
        rank_agreement.finished([Path("s0"), Path("dup")])


def test_other_seeds_line_carries_the_figures():
    from rank_agreement import other_seeds

    res = {
        "budget_full": "10 dense + 3 sparsify epochs, seed(s) 0, 1, 2",
        "rho_mean": 0.8123,
        "rho_min": 0.6,
        "rho_overall": 0.9,
        "claimed": 3,
        "pairs": 10,
        "confirmed": 3,
        "contradicted": 0,
        "discordant": 2,
        "discordant_default": 0,
        "discordant_full": 1,
        "per_sparsity": [
            {
                "sparsity": 0.9,
                "rho": 0.7333,
                "pairs": {"discordant": 2, "discordant_default": 0, "discordant_full": 1},
            }
        ],
    }
    line = other_seeds(res, [0, 1, 2])
    assert line.startswith("With the full side's seeds 0, 1, 2 (10 dense")
    assert "mean over sparsities 0.812 (lowest 0.600)" in line
    assert "sparsities) 0.900." in line
    assert "3 of 10; the full side agrees on 3 and contradicts 0" in line
    assert "opposite way: 2, of which beyond the default side's noise: 0" in line
    assert "Per sparsity: 0.9: rho 0.733, 2 swapped (0 / 1) (pairs" in line


def test_markdown_states_the_new_headline_before_quoted_ones():
    """benchmarks/issue15_targets.py reads the first 'mean over sparsities' of the file."""
    import re

    from rank_agreement import markdown

    res = {
        "budget_default": "3 + 1",
        "budget_full": "10 + 3",
        "rho_mean": 0.9,
        "rho_min": 0.85,
        "rho_overall": 0.95,
        "claimed": 0,
        "pairs": 0,
        "confirmed": 0,
        "contradicted": 0,
        "discordant": 0,
        "discordant_default": 0,
        "discordant_full": 0,
        "per_sparsity": [],
        "default_only": [],
        "overall_default": {},
        "overall_full": {},
    }
    old = "Its headline: Spearman rank correlation: mean over sparsities 0.500 (lowest 0.100)."
    also = "With the full side's seeds 0, 1, 2: mean over sparsities 0.700 (lowest 0.200)."
    text = markdown(res, ["cmd"], "note", previous=old, also=also)
    m = re.search(r"mean over sparsities ([0-9.]+) \(lowest ([0-9.]+)\)", text)
    assert m is not None and m.groups() == ("0.900", "0.850")
    assert old in text and also in text

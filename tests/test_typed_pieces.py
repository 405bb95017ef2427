"""Granularity objects and options dataclasses: what each piece declares, and that a
new granularity is one object (here defined in the test) with nothing else to edit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from prunekit import prune
from prunekit.docsite import option_table
from prunekit.pruning.criteria import CRITERIA, Criterion
from prunekit.pruning.granularity import GRANULARITIES, Granularity, get, implied_sparsity
from prunekit.pruning.granularity.nm import DEFAULT_M, DEFAULT_N
from prunekit.pruning.methods import get_method, with_method_args
from prunekit.pruning.objectives import OBJECTIVES
from prunekit.pruning.options import Options, Part, RunFacts, option
from prunekit.pruning.schedules import SCHEDULES
from prunekit.registry import PrunekitError


def test_each_granularity_declares_its_properties() -> None:
    assert set(GRANULARITIES.names()) >= {"weight", "kernel", "nm", "neuron"}
    assert [n for n in GRANULARITIES.names() if get(n).removes_units] == ["neuron"]
    assert get("head").regularized_as is None
    # heads span several matrices: the registry entry points to prune_heads, one line
    with pytest.raises(PrunekitError, match="use prunekit.prune_heads"):
        get("head")({"c": nn.Linear(4, 4)}, {"c": torch.ones(4, 4)}, 0.5, "layer")
    assert {n: get(n).regularized_as for n in ("weight", "kernel", "nm", "neuron")} == {
        "weight": "weight",
        "kernel": None,
        "nm": None,
        "neuron": "unit",
    }
    nm = get("nm")
    assert (nm.options().n, nm.options().m) == (DEFAULT_N, DEFAULT_M) == (2, 4)
    assert implied_sparsity("nm", {}) == 0.5
    assert implied_sparsity("nm", {"n": 1, "m": 8, "lam": 3}) == 0.875  # others' keys ignored
    assert implied_sparsity("weight", {}) is None and implied_sparsity("neuron", {}) is None
    with pytest.raises(PrunekitError, match="fixes sparsity at 1-N/M = 0.5"):
        nm.check_sparsity(0.9, nm.options())
    conv = {"c": nn.Conv2d(3, 8, 3)}
    with pytest.raises(PrunekitError, match="does not divide the input dimension 3"):
        nm.check_model(conv, nm.options())
    nm.check_model(conv, nm.options({"skip_indivisible": True}))


def test_granularity_options_are_checked_in_one_line() -> None:
    with pytest.raises(PrunekitError, match=r"granularity 'neuron' does not take option\(s\) n;"):
        get("neuron").options({"n": 2})
    with pytest.raises(PrunekitError, match="round_to must be a whole number >= 1, got 0"):
        get("neuron").options({"round_to": 0})
    with pytest.raises(PrunekitError) as e:
        with_method_args(get_method("magnitude").with_options(granularity="nm"), {"m": "x"})
    assert "\n" not in str(e.value) and "method option m" in str(e.value)


class _FirstHalfRows(Granularity):
    """A test granularity: prunes the first ``round(s * rows)`` output rows, ignoring
    the scores (so the result is known by hand)."""

    name = "test-first-rows"

    @dataclass(frozen=True)
    class Options(Options):
        keep_last: int = option(0, "rows at the end that always stay")

    def masks(
        self,
        modules: dict[str, nn.Module],
        scores: dict[str, torch.Tensor],
        sparsity: float,
        scope: str,
        options: Any,
    ) -> dict[str, torch.Tensor]:
        out = {}
        for n, m in modules.items():
            rows = m.weight.shape[0]
            k = min(round(sparsity * rows), rows - options.keep_last)
            keep = torch.ones_like(m.weight)
            keep[:k] = 0
            out[f"{n}.weight"] = keep
        return out


def test_a_new_granularity_is_one_object() -> None:
    GRANULARITIES.add("test-first-rows", _FirstHalfRows())
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
        prune(model, "magnitude", 0.5, granularity="test-first-rows", keep_last=4)
        zero_rows = (model[0].weight == 0).all(1).tolist()
        assert zero_rows == [True, True, False, False, False, False]  # min(3, 6 - 4)
        assert (model[2].weight == 0).all(1).tolist() == [False, False]  # min(1, 2 - 4) < 0
        # the method registry routes its options from the dataclass, typed
        m = get_method("magnitude").with_options(granularity="test-first-rows")
        assert with_method_args(m, {"keep_last": 1}).granularity_args == {"keep_last": 1}
        assert ("granularity test-first-rows", "keep_last", "0") in option_table(m)
    finally:
        GRANULARITIES._items.pop("test-first-rows")


def test_parts_carry_their_options_dataclass() -> None:
    for registry in (CRITERIA, OBJECTIVES, SCHEDULES):
        for name in registry.names():
            assert isinstance(registry.get(name), Part), name
    assert SCHEDULES.get("iterative").options.names() == ("cycles",)
    assert set(CRITERIA.get("sparsegpt").options.names()) >= {"blocksize", "percdamp"}
    crit = CRITERIA.get("wanda")
    assert isinstance(crit, Criterion) and crit.needs_data and crit.solver_granularities
    # schedule defaults live in the dataclass only: the call fills them in
    assert SCHEDULES.get("iterative")(0.875, 0, 30) == SCHEDULES.get("iterative")(
        0.875, 0, 30, cycles=3
    )
    with pytest.raises(PrunekitError, match=r"schedule 'cubic' does not take option\(s\) cycles"):
        SCHEDULES.get("cubic")(0.9, 0, 100, cycles=2)
    rows = dict((opt, d) for _, opt, d in option_table(get_method("gmp")))
    assert rows["prune_fraction"] == "0.75" and rows["frequency"] == "None"


def test_run_facts_reach_objectives_explicitly() -> None:
    l0 = OBJECTIVES.get("l0")
    obj = l0(RunFacts("neuron", 0.8, 40))
    assert (obj.target, obj.window, obj.unit_gates) == (pytest.approx(0.8), 40, True)
    fixed = l0(RunFacts("weight", 0.8, 40), target_sparsity=None, lam=0.1)
    assert fixed.target is None and not fixed.unit_gates  # the user's null wins over the run
    own = l0(RunFacts("weight", 0.8, 40), target_sparsity=0.5)
    assert own.target == pytest.approx(0.5)
    group = OBJECTIVES.get("l1")(RunFacts("neuron"), lam=0.1)
    assert group.group and "group lasso" in group.describe()
    with pytest.raises(
        PrunekitError, match=r"objective 'l1' does not take option\(s\) granularity"
    ):
        OBJECTIVES.get("l1")(granularity="neuron")


def test_objectives_name_the_granularities_they_shape() -> None:
    with pytest.raises(
        PrunekitError, match=r"l1: granularity must be 'neuron' or 'weight', got 'nm'"
    ):
        OBJECTIVES.get("l1")(RunFacts("nm"))
    with pytest.raises(
        PrunekitError, match=r"gates exist per 'neuron' or 'weight' unit, not 'kernel'"
    ):
        OBJECTIVES.get("l0")(RunFacts("kernel"))

"""Resolve once (issue 12): an objective is built once per pruning phase, the model is
traced once per phase whatever the number of events, ``Pruner`` checks its arguments
with the run's own ``resolve_method`` (or trusts a ``RunSpec``), and a comparison
resolves each cell once."""

from __future__ import annotations

import importlib

import pytest
import torch
from conftest import TINY_COMPARISON
from torch import nn

import prunekit.pipeline
import prunekit.pruning.step as step_module
from prunekit import Pruner, RunConfig, run
from prunekit.experiments import compare, plan
from prunekit.experiments.plan import config_from_dict, restrict
from prunekit.pruning.objectives import OBJECTIVES
from prunekit.pruning.objectives.l1 import L1Objective
from prunekit.pruning.options import RunFacts
from prunekit.registry import PrunekitError
from prunekit.spec import resolve, resolve_method

# The module (``prunekit.experiments.plan`` the attribute is the function).
plan_module = importlib.import_module("prunekit.experiments.plan")


def small(**kw: object) -> RunConfig:
    base = dict(
        model="lenet300",
        dataset="synthetic",
        epochs=1,
        finetune_epochs=1,
        latency_repeats=1,
        latency_batch_sizes=[1],
        noise_sigmas=[],
        noise_densities=[],
    )
    return RunConfig(**{**base, **kw})


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
    )


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    calls = [0]
    real = getattr(owner, name)

    def counted(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


# -- 1. the objective: checked at resolve without building, built once by the phase ----------
def test_a_run_builds_its_objective_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built = count_calls(monkeypatch, L1Objective, "__init__")
    spec = resolve(small(method="l1", sparsity=0.8))
    assert built == [0]  # resolving checks the options without building
    run(spec, progress=False)
    assert built == [1]


def test_objective_options_are_checked_without_building(monkeypatch: pytest.MonkeyPatch) -> None:
    built = count_calls(monkeypatch, L1Objective, "__init__")
    with pytest.raises(PrunekitError, match=r"^l1: lambda must be >= 0, got -1.0$"):
        resolve(small(method="l1", method_args={"lam": -1.0}))
    with pytest.raises(PrunekitError, match=r"l1: update must be 'proximal' or 'subgradient'"):
        OBJECTIVES.get("l1").check(RunFacts("weight"), update="newton")
    with pytest.raises(PrunekitError, match="needs --lambda"):
        OBJECTIVES.get("l0").check(RunFacts("weight", 0.5), target_sparsity=None)
    assert OBJECTIVES.get("l1").check(RunFacts("neuron"), lam=0.5).lam == 0.5
    assert built == [0]


def test_the_pruner_builds_its_objective_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built = count_calls(monkeypatch, L1Objective, "__init__")
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(model, "l1", sparsity=0.5, steps=10, optimizer=opt)
    pruner.finalize()
    assert built == [1]


# -- 4. the fx trace: once per phase, not once per event --------------------------------------
def test_the_model_is_traced_once_per_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    traced = count_calls(monkeypatch, step_module, "analyze")
    model = mlp()
    x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
    pruner = Pruner(
        model, "magnitude", sparsity=0.5, steps=12, granularity="neuron", schedule="cubic"
    )
    for _ in range(12):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        pruner.step(lr=0.1)
    pruner.finalize()
    assert len(pruner.history) > 2  # several pruning events ...
    assert traced == [1]  # ... one trace


def test_prune_traces_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from prunekit import prune

    traced = count_calls(monkeypatch, step_module, "analyze")
    prune(mlp(), "magnitude", 0.5, granularity="neuron")
    assert traced == [1]


# -- 2. Pruner: the run's checks, or a RunSpec trusted ----------------------------------------
def test_pruner_and_resolve_share_their_checks() -> None:
    for kwargs in (
        dict(method="dense", sparsity=0.5),
        dict(method="magnitude", sparsity=0.3, granularity="nm"),
        dict(method="l1", sparsity=0.5, options={"lam": -1.0}),
    ):
        options = kwargs.pop("options", {})
        with pytest.raises(PrunekitError) as direct:
            resolve_method(
                kwargs["method"],
                kwargs["sparsity"],
                granularity=kwargs.get("granularity"),
                options=options,
            )
        with pytest.raises(PrunekitError) as pruner:
            Pruner(mlp(), steps=10, **kwargs, **options)
        assert str(pruner.value) == str(direct.value)
        assert "\n" not in str(direct.value)


def test_pruner_takes_a_run_spec_as_resolved() -> None:
    spec = resolve(small(method="magnitude", sparsity=0.5, granularity="neuron"))
    model = mlp()
    pruner = Pruner(model, spec, 0.5, steps=4)
    assert (pruner.method, pruner.sparsity) == (spec.method, 0.5)
    with pytest.raises(PrunekitError, match=r"differs from the RunSpec's 0.5"):
        Pruner(mlp(), spec, 0.7, steps=4)
    with pytest.raises(PrunekitError, match="a RunSpec is already resolved"):
        Pruner(mlp(), spec, 0.5, steps=4, lam=0.1)


# -- 3. a comparison resolves each cell once ----------------------------------------------------
def test_a_comparison_resolves_each_cell_once(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    resolved = count_calls(monkeypatch, plan_module, "resolve")
    in_pipeline = count_calls(monkeypatch, prunekit.pipeline, "resolve")
    cfg = config_from_dict({**TINY_COMPARISON, "methods": ["magnitude"], "sparsities": [0.5]})
    cells = plan(cfg)
    assert resolved == [len(cells)] == [2]  # dense + magnitude, at load time
    narrowed = restrict(cfg, sparsities=[0.5, 0.7])
    again = plan(narrowed)
    assert resolved == [3]  # only the new cell (magnitude at 0.7)
    assert all(c.spec is not None for c in again)
    outcome = compare(narrowed, tmp_path, config_yaml="x", progress=False)
    assert (outcome.ran, outcome.failed) == (3, 0)
    assert resolved == [3] and in_pipeline == [0]  # the runner hands the spec over

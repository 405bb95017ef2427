"""Connection granularities: kernel (whole k x k kernels) and nm (N:M along the inputs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

from prunekit import RunConfig, create_model, prune, run, sparsity
from prunekit.cli import app
from prunekit.pruning.granularity import implied_sparsity, make_masks
from prunekit.pruning.granularity.kernel import kernel_scores
from prunekit.pruning.granularity.nm import nm_keep
from prunekit.pruning.masks import apply_mask, effective
from prunekit.pruning.methods import get_method
from prunekit.pruning.preflight import check_run
from prunekit.registry import PrunekitError


def groups_along_inputs(w: torch.Tensor, m: int) -> torch.Tensor:
    """(n_groups, m): Linear rows in chunks of m; conv permuted to (O, kh, kw, I) first."""
    return (w.permute(0, *range(2, w.dim()), 1) if w.dim() > 2 else w).reshape(-1, m)


# -- nm ---------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    nm=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (2, 8), (4, 8)]),
    out=st.integers(1, 6),
    groups=st.integers(1, 4),
    kernel=st.sampled_from([(), (1,), (3,), (2, 3)]),
    seed=st.integers(0, 2**16),
)
def test_nm_exactly_n_nonzeros_per_group(nm, out, groups, kernel, seed) -> None:
    n, m = nm
    shape = (out, groups * m, *kernel)
    gen = torch.Generator().manual_seed(seed)
    scores = torch.rand(shape, generator=gen)
    layer = nn.Module()  # a stand-in: granularities read only the weight's shape and mask
    layer.weight = nn.Parameter(torch.randn(shape))
    mask = make_masks("nm", {"l": layer}, {"l": scores}, 1 - n / m, "layer", n=n, m=m)["l.weight"]
    assert mask.shape == shape
    g_mask, g_score = groups_along_inputs(mask, m), groups_along_inputs(scores, m)
    assert bool((g_mask.sum(1) == n).all())  # exactly n kept in every group of m
    kept_min = torch.where(g_mask > 0, g_score, torch.inf).min(1).values
    dropped_max = torch.where(g_mask == 0, g_score, -torch.inf).max(1).values
    assert bool((kept_min >= dropped_max).all())  # the n highest scores are the ones kept


def test_nm_hand_computed_linear_and_conv() -> None:
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.5, 0.7, 0.6, 0.9]])
    assert nm_keep(scores, 2, 4).int().tolist() == [[1, 0, 1, 0, 0, 1, 0, 1]]
    assert nm_keep(torch.ones(1, 4), 2, 4).int().tolist() == [[1, 1, 0, 0]]  # ties: first wins
    # conv (O=1, I=4, kh=1, kw=2): groups run along I at each kernel position
    conv = torch.tensor([[[[1.0, 8.0]], [[2.0, 7.0]], [[3.0, 6.0]], [[4.0, 5.0]]]])
    keep = nm_keep(conv, 2, 4).int()
    assert keep[0, :, 0, 0].tolist() == [0, 0, 1, 1]  # position 0: inputs 2, 3 are largest
    assert keep[0, :, 0, 1].tolist() == [1, 1, 0, 0]  # position 1: inputs 0, 1


def test_nm_on_a_model_and_previous_masks_stay() -> None:
    model = create_model("lenet300")
    apply_mask(model.fc1, (torch.rand(300, 784) > 0.6).float())  # 60 % already pruned
    before = effective(model.fc1) == 0
    prune(model, "magnitude", 0.5, granularity="nm", n=2, m=4)
    w1 = effective(model.fc1)
    assert bool((w1[before] == 0).all())  # masks only lose entries
    assert int((groups_along_inputs(w1, 4) != 0).sum(1).max()) <= 2
    for layer in (model.fc2, model.fc3):  # untouched layers: exactly 2 of 4
        assert bool(((groups_along_inputs(effective(layer), 4) != 0).sum(1) == 2).all())
    fresh = create_model("lenet300")
    prune(fresh, "random", 0.75, granularity="nm", n=1, m=4)
    assert sparsity(fresh) == pytest.approx(0.75, abs=1e-12)


def test_nm_bad_input() -> None:
    model = create_model("lenet300")
    with pytest.raises(PrunekitError, match="1 <= N < M, got 4:4"):
        prune(model, "magnitude", 0.0, granularity="nm", n=4, m=4)
    with pytest.raises(PrunekitError, match="1 <= N < M, got 0:4"):
        prune(model, "magnitude", 0.5, granularity="nm", n=0, m=4)
    with pytest.raises(PrunekitError, match="whole number"):
        prune(model, "magnitude", 0.5, granularity="nm", n=2.5, m=4)
    with pytest.raises(PrunekitError, match="fixes sparsity at 1-N/M = 0.5; got 0.9"):
        prune(model, "magnitude", 0.9, granularity="nm", n=2, m=4)
    with pytest.raises(
        PrunekitError, match="M=3 does not divide the input dimension 784 of layer 'fc1'"
    ):
        prune(model, "magnitude", 1 - 1 / 3, granularity="nm", n=1, m=3)
    lenet5 = create_model("lenet5")
    with pytest.raises(PrunekitError, match="input dimension 1 of layer 'features.conv1'"):
        prune(lenet5, "magnitude", 0.5, granularity="nm")
    assert sparsity(lenet5) == 0.0  # nothing applied after the error
    prune(lenet5, "magnitude", 0.5, granularity="nm", skip_indivisible=True)
    assert not hasattr(lenet5.features.conv1, "weight_mask")  # left dense
    conv2 = groups_along_inputs(effective(lenet5.features.conv2), 4)
    assert bool(((conv2 != 0).sum(1) == 2).all())


# -- kernel -----------------------------------------------------------------------------


def test_kernel_scores_mean_and_dead_kernels() -> None:
    s = torch.tensor([[[1.0, 3.0], [2.0, 2.0]], [[-torch.inf, 4.0], [-torch.inf, -torch.inf]]])
    assert kernel_scores(s.view(2, 2, 2)).tolist() == [2.0, 2.0, 2.0, -torch.inf]


@pytest.mark.parametrize("sp", [0.0, 0.3, 0.5, 0.9])
def test_kernel_masks_zero_whole_kernels_exact_count(sp: float) -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(6, 5, 3)
    prune(nn.Sequential(conv), "magnitude", sp, granularity="kernel", scope="layer")
    nonzero = (effective(conv).flatten(2) != 0).sum(2)  # per (out, in) kernel
    assert set(nonzero.unique().tolist()) <= {0, 9}  # whole kernels only
    assert int((nonzero == 0).sum()) == round(sp * 30)
    # the lowest-mean kernels are the ones dropped
    means = conv.weight_orig.detach().abs().flatten(2).mean(2)
    if sp > 0:
        assert float(means[nonzero == 0].max()) <= float(means[nonzero > 0].min())


def test_kernel_global_count_and_linear_is_per_weight() -> None:
    model = create_model("lenet5")
    prune(model, "magnitude", 0.6, granularity="kernel", scope="global")
    total = dead = 0
    for layer in (
        model.features.conv1,
        model.features.conv2,
        model.classifier.fc1,
        model.classifier.fc2,
    ):
        w = effective(layer)
        per_kernel = (w.reshape(w.shape[0], w.shape[1], -1) != 0).sum(2)
        assert set(per_kernel.unique().tolist()) <= {0, w[0, 0].numel()}
        total += per_kernel.numel()
        dead += int((per_kernel == 0).sum())
    assert dead == round(0.6 * total)
    # a Linear-only model: kernel granularity is weight granularity
    a, b = create_model("lenet300"), create_model("lenet300")
    b.load_state_dict(a.state_dict())
    prune(a, "magnitude", 0.7, granularity="kernel")
    prune(b, "magnitude", 0.7, granularity="weight")
    for name in ("fc1", "fc2", "fc3"):
        assert torch.equal(getattr(a, name).weight_mask, getattr(b, name).weight_mask)


def test_kernel_keeps_previous_pruning_and_rejects_unit_scores() -> None:
    conv = nn.Conv2d(4, 4, 3)
    apply_mask(conv, (torch.arange(4 * 4 * 9).view(4, 4, 3, 3) % 2).float())
    before = conv.weight_mask.clone()
    prune(nn.Sequential(conv), "magnitude", 0.25, granularity="kernel", scope="layer")
    assert bool((conv.weight_mask[before == 0] == 0).all())
    with pytest.raises(PrunekitError, match="kernel granularity needs one score per weight"):
        make_masks("kernel", {"c": conv}, {"c": torch.rand(4)}, 0.5, "layer")


# -- pipeline and CLI -------------------------------------------------------------------


TINY = dict(
    dataset="synthetic",
    epochs=1,
    finetune_epochs=1,
    limit=64,
    test_limit=32,
    latency_repeats=1,
    latency_batch_sizes=[1],
    noise_sigmas=[],
    noise_densities=[],
)


def tiny(**kw) -> RunConfig:
    return RunConfig(**(TINY | kw))


def test_nm_run_checks_before_training() -> None:
    base = get_method("magnitude").with_options(granularity="nm")
    check_run(base, 0.5)
    with pytest.raises(PrunekitError, match="use --schedule oneshot"):
        check_run(base.with_options(schedule="cubic"), 0.5)
    with pytest.raises(PrunekitError, match="fixes sparsity at 1-N/M = 0.5"):
        run(tiny(granularity="nm", sparsity=0.9))
    with pytest.raises(PrunekitError, match="layer 'features.conv1'"):
        run(tiny(model="lenet5", granularity="nm", sparsity=0.5))
    assert implied_sparsity("nm", {"n": 1, "m": 4}) == 0.75
    assert implied_sparsity("weight", {}) is None


def test_kernel_pipeline_run() -> None:
    res = run(tiny(model="lenet5", granularity="kernel", scope="layer", sparsity=0.4)).result
    assert res["granularity"] == "kernel"
    # layer scope: 40 % of the kernels of every layer (20, 1000, 400000, 5000 kernels, all
    # divisible) -> exactly 40 % of each layer's weights
    assert {name: layer["sparsity"] for name, layer in res["layers"].items()} == {
        "features.conv1": 0.4,
        "features.conv2": 0.4,
        "classifier.fc1": 0.4,
        "classifier.fc2": 0.4,
    }


def test_cli_nm_fills_in_the_sparsity(tmp_path: Path) -> None:
    common = [
        "prune",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--finetune-epochs",
        "0",
        "--limit",
        "128",
        "--test-limit",
        "64",
        "--latency-repeats",
        "1",
        "--eval-sigmas",
        "",
        "--eval-densities",
        "",
        "-q",
    ]
    out = tmp_path / "run"
    r = CliRunner().invoke(app, [*common, "--granularity", "nm", "--nm", "1:4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "result.json").read_text())
    assert res["target_sparsity"] == 0.75
    assert res["achieved_sparsity"] == pytest.approx(0.75, abs=1e-12)
    bad = CliRunner().invoke(app, [*common, "--granularity", "nm", "--sparsity", "0.9"])
    assert isinstance(bad.exception, PrunekitError)
    assert "fixes sparsity at 1-N/M = 0.5" in str(bad.exception)

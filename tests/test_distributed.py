"""Data-parallel training under torchrun (gloo, CPU): masks and gates identical on every
rank, pruned weights zero, and the same result as one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import ddp_worker
import pytest
import torch
from safetensors.torch import load_file

from prunekit import distributed
from prunekit.cli import main
from prunekit.config import RunConfig
from prunekit.data import load_dataset
from prunekit.models import create_model
from prunekit.pipeline import run
from prunekit.registry import PrunekitError
from prunekit.training import TrainSettings, fit

HERE = Path(__file__).parent
WEIGHTS = 784 * 300 + 300 * 100 + 100 * 10  # LeNet-300-100's prunable weights: 266,200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "torchrun"
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [
        *launcher,
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        *args,
    ]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def single_process_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)


def test_torchrun_two_ranks_match_one_process(tmp_path: Path, single_process_env: None) -> None:
    two = _torchrun([str(HERE / "ddp_worker.py"), str(tmp_path), "64"], cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    threads = torch.get_num_threads()
    try:  # the same script in this process: one rank, the same global batch of 64
        ddp_worker.main(tmp_path, 64)
    finally:
        torch.set_num_threads(threads)
    r0, r1, solo = (
        json.loads((tmp_path / f).read_text())
        for f in ("rank0-w2.json", "rank1-w2.json", "rank0-w1.json")
    )
    assert (r0["rank"], r0["world"], r1["rank"], r1["world"], solo["world"]) == (0, 2, 1, 2, 1)
    for method, sparsity in (("gmp", 0.8), ("l0", 0.5)):
        a, b, s = r0["phases"][method], r1["phases"][method], solo["phases"][method]
        # Masks (and L0 gates) bit-identical on both ranks before every one of the 12 steps.
        assert len(a["probe"]) == 12
        assert a["probe"] == b["probe"]
        assert all(p["masks"] for p in a["probe"])  # masks exist from the first event on
        # Pruned weights are exactly zero, and exactly the target fraction is pruned.
        assert a["pruned_weights_zero"] and b["pruned_weights_zero"]
        assert a["pruned"] == b["pruned"] == s["pruned"] == round(sparsity * WEIGHTS)
        # The reported loss is the global batch's (reduced across ranks) on every rank.
        assert a["losses"] == b["losses"]
        assert a["losses"] == pytest.approx(s["losses"], rel=1e-5)
        w2 = load_file(str(tmp_path / f"w2-{method}.safetensors"))
        w1 = load_file(str(tmp_path / f"w1-{method}.safetensors"))
        assert w2.keys() == w1.keys()
        for k in w1:
            torch.testing.assert_close(w2[k], w1[k], atol=1e-5, rtol=0)
    gates = [len(p["gates"]) for p in r0["phases"]["l0"]["probe"]]
    # L0: 3 gated layers during the regularization half (6 steps), none after the event.
    assert gates == [3] * 6 + [0] * 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # rank 1 wrote only its report
        "rank0-w1.json",
        "rank0-w2.json",
        "rank1-w2.json",
        "w1-gmp.safetensors",
        "w1-l0.safetensors",
        "w2-gmp.safetensors",
        "w2-l0.safetensors",
    ]


@pytest.mark.slow  # ~35 s on 2 busy cores: two processes each train, one evaluates
def test_torchrun_cli_prune_writes_once_and_matches(
    tmp_path: Path, single_process_env: None
) -> None:
    args = [
        "--model",
        "lenet300",
        "--dataset",
        "synthetic",
        "--method",
        "gmp",
        "--sparsity",
        "0.7",
        "--epochs",
        "1",
        "--finetune-epochs",
        "1",
        "--batch-size",
        "64",
        "--limit",
        "301",
        "--test-limit",
        "40",
        "--latency-repeats",
        "1",
        "--eval-sigmas",
        "",
        "--eval-densities",
        "",
        "-q",
    ]
    two = _torchrun(
        ["-m", "prunekit", "prune", *args, "--out", str(tmp_path / "two")], cwd=tmp_path
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("saved to") == 1  # rank 0 alone prints
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "model.json",
        "model.safetensors",
        "result.json",
    ]
    result = json.loads((tmp_path / "two" / "result.json").read_text())
    assert result["versions"]["processes"] == 2
    assert result["achieved_sparsity"] == pytest.approx(0.7, abs=1e-6)
    cfg = RunConfig(
        model="lenet300",
        dataset="synthetic",
        method="gmp",
        sparsity=0.7,
        epochs=1,
        finetune_epochs=1,
        batch_size=64,
        limit=301,
        test_limit=40,
        latency_repeats=1,
        noise_sigmas=[],
        noise_densities=[],
    )
    run(cfg, out=tmp_path / "one")  # one process, same global batch
    assert (
        json.loads((tmp_path / "one" / "result.json").read_text())["config_hash"]
        == result["config_hash"]
    )
    w1 = load_file(str(tmp_path / "one" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "model.safetensors"))
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=1e-5, rtol=0)
    assert json.loads((tmp_path / "one" / "result.json").read_text())["versions"]["processes"] == 1


def test_batch_not_divisible_by_world_size_fails_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What torchrun --nproc_per_node 2 sets; the check runs before joining the group.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    data = load_dataset("synthetic", n_train=40, n_test=10)
    model = create_model("lenet300")
    with pytest.raises(PrunekitError, match="batch size 63 is not divisible by the world size 2"):
        fit(
            model,
            data.train,
            steps=1,
            settings=TrainSettings(batch_size=63),
            generator=torch.Generator().manual_seed(0),
        )
    assert not torch.distributed.is_initialized()
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(
            [
                "prune",
                "--dataset",
                "synthetic",
                "--batch-size",
                "63",
                "--epochs",
                "1",
                "--limit",
                "40",
                "-q",
                "--out",
                str(out),
            ]
        )
    assert e.value.code == 2
    assert "not divisible by the world size 2" in capsys.readouterr().err
    assert not out.exists()


def test_world_without_rendezvous_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    for key in ("LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert distributed.rank() == 1 and not distributed.is_main()
    with pytest.raises(
        PrunekitError, match="MASTER_ADDR, MASTER_PORT not set; launch with torchrun"
    ):
        distributed.init()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(PrunekitError, match="WORLD_SIZE='two' is not a whole number"):
        distributed.world_size()


def test_single_process_helpers_are_pass_through(single_process_env: None) -> None:
    from prunekit.pruning.masks import apply_mask

    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.init() == 1 and not torch.distributed.is_initialized()
    t = torch.tensor([1.0, 3.0])
    assert distributed.all_reduce_mean(t) is t
    model = create_model("lenet300")
    layer = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    mask = torch.ones_like(layer.weight)
    mask[0, :5] = 0
    apply_mask(layer, mask)
    assert distributed.broadcast_masks(model) == 1
    assert int((layer.weight_mask == 0).sum()) == 5
    distributed.check_in_sync(model)  # nothing to compare against: no error
    digests = distributed.state_digests(model)
    assert any(k.endswith("weight_mask") for k in digests)
    layer.weight_mask[0, 5] = 0
    assert distributed.state_digests(model) != digests  # one entry changed -> another hash

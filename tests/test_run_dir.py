"""Issue 14: a run directory is committed as a whole, identified with its data, and
checked on load (checksums, finite float weights, sizes before allocation)."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_run_config
from safetensors.torch import load_file, save_file

from prunekit import load, run
from prunekit._idx import read_idx, write_idx
from prunekit.data import IDX_FILES
from prunekit.models import create_model
from prunekit.registry import PrunekitError
from prunekit.storage.atomic import atomic_write_bytes, commit, recover, stage
from prunekit.storage.saving import save_run

ARCH = {"name": "lenet300", "kwargs": {}, "input_shape": [1, 28, 28]}

# The child overwrites one run directory forever, alternating two versions whose
# weights are all 1.0 or all 2.0 and whose result.json says which.
CHILD = """
import sys, torch
from prunekit.models import create_model
from prunekit.storage.saving import save_run
arch = {"name": "lenet300", "kwargs": {}, "input_shape": [1, 28, 28]}
models = {}
for v in (1.0, 2.0):
    m = create_model("lenet300")
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(v)
    models[v] = m
save_run(sys.argv[1], {"version": 1.0}, models[1.0], arch)
print("ready", flush=True)
i = 0
while True:
    i += 1
    v = (1.0, 2.0)[i % 2]
    save_run(sys.argv[1], {"version": v}, models[v], arch)
"""


def _consistent(out: Path) -> float:
    """The version of the run in ``out``: model.json, weights and result agree."""
    model = load(out)  # verifies the checksums of result.json against the files
    version = json.loads((out / "result.json").read_text())["version"]
    assert torch.all(model.fc1.weight == version) and torch.all(model.fc3.bias == version)
    return version


@pytest.mark.parametrize("seed", range(4))
def test_kill9_during_overwrite_leaves_old_or_new(tmp_path: Path, seed: int) -> None:
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(random.Random(seed).uniform(0.0, 0.4))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert _consistent(out) in (1.0, 2.0)
    # load() cleared what the dead writer left beside it: only the run remains.
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert sorted(p.name for p in out.iterdir()) == [
        "model.json",
        "model.safetensors",
        "result.json",
    ]


def test_killed_between_fallback_renames_restores_old_run(tmp_path: Path) -> None:
    """Without renameat2 the old run is moved aside first; a kill right then leaves no
    run directory, and recover() (called by load) puts the old one back."""
    out = tmp_path / "run"
    m = create_model("lenet300")
    save_run(out, {"version": 7.0}, m, ARCH)
    dead = subprocess.Popen(["true"])
    dead.wait()
    os.rename(out, tmp_path / f".run.old-{dead.pid}-abc")
    staged = tmp_path / f".run.new-{dead.pid}-def"
    staged.mkdir()
    recover(out)
    assert json.loads((out / "result.json").read_text())["version"] == 7.0
    assert not staged.exists()


def test_commit_swaps_whole_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    save_run(out, {"v": 1}, create_model("lenet300"), ARCH)
    staged = stage(out)
    (staged / "result.json").write_text('{"v": 2}')
    commit(staged, out)
    assert sorted(p.name for p in out.iterdir()) == ["result.json"]  # nothing of the old run
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_saved_files_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        save_run(out, {"v": 1}, create_model("lenet300"), ARCH)
        atomic_write_bytes(tmp_path / "model.onnx", b"x")  # export, entropy --out
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == 0o644
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for p in out.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p.name
    old = os.umask(0o077)  # a private umask is respected, as by a normal tool
    try:
        save_run(tmp_path / "private", {"v": 1}, create_model("lenet300"), ARCH)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "private" / "result.json").stat().st_mode) == 0o600


# -- checks on load ---------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    save_run(out, {"v": 1}, create_model("lenet300"), ARCH)
    return out


def _rewrite_weights(out: Path, change) -> None:
    """Change the weights and drop the checksums, so that the sanity check is what
    refuses them (the checksum would refuse any change first)."""
    state = load_file(str(out / "model.safetensors"))
    change(state)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "prunekit.model/v1"})
    res = json.loads((out / "result.json").read_text())
    res.pop("checksums")
    (out / "result.json").write_text(json.dumps(res))


def test_flipped_bytes_fail_the_checksum(saved: Path) -> None:
    path = saved / "model.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0xFF  # inside fc3's data: the file still parses
    path.write_bytes(bytes(blob))
    with pytest.raises(PrunekitError, match="does not match the checksum"):
        load(saved)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["fc1.weight"].fill_(float("nan")), "NaN or infinite"),
        (
            lambda s: s.update({"fc2.bias": s["fc2.bias"].long()}),
            "dtype torch.int64; the model expects torch.float32",
        ),
        (lambda s: s["normalize.std"].zero_(), "'normalize.std' is not positive"),
    ],
    ids=["nan", "int64", "zero-std"],
)
def test_bad_weights_refused(saved: Path, change, message: str) -> None:
    _rewrite_weights(saved, change)
    with pytest.raises(PrunekitError, match=message):
        load(saved)


@pytest.mark.parametrize(
    ("hidden", "message"),
    [
        ([2_000_000, 100], "ceiling"),
        ([1e12, 100], "hidden"),
        ([-5, 100], "hidden"),
        (["x", 100], "hidden"),
    ],
)
def test_model_json_sizes_checked_before_allocation(saved: Path, hidden, message: str) -> None:
    spec = json.loads((saved / "model.json").read_text())
    spec["kwargs"]["hidden"] = hidden
    (saved / "model.json").write_text(json.dumps(spec))
    res = json.loads((saved / "result.json").read_text())
    res.pop("checksums")
    (saved / "result.json").write_text(json.dumps(res))
    t0 = time.perf_counter()
    with pytest.raises(PrunekitError, match=message):
        load(saved)
    assert time.perf_counter() - t0 < 5  # nothing of 6 GB was allocated


@pytest.mark.parametrize(
    "shapes",
    [{"fc1.weight": [10**12, 784]}, {"fc1.weight": [-1, 784]}, {"fc1.weight": "big"}],
)
def test_model_json_shapes_checked(saved: Path, shapes: dict) -> None:
    spec = json.loads((saved / "model.json").read_text())
    spec["shapes"].update(shapes)
    (saved / "model.json").write_text(json.dumps(spec))
    res = json.loads((saved / "result.json").read_text())
    res.pop("checksums")
    (saved / "result.json").write_text(json.dumps(res))
    with pytest.raises(PrunekitError):
        load(saved)


@pytest.mark.parametrize(
    "dims", [[65536] * 4, [2**32 - 1] * 3, [2**31, 2**31, 4], [0, 31332, 31366, 31400, 298891]]
)
def test_idx_header_overflow_one_line(tmp_path: Path, dims: list[int]) -> None:
    path = tmp_path / "x.idx"
    path.write_bytes(bytes([0, 0, 8, len(dims)]) + np.asarray(dims, dtype=">u4").tobytes())
    with pytest.raises(PrunekitError, match="too large for an IDX file"):
        read_idx(path)


# -- the data is part of a run's identity ---------------------------------------------------


def _idx_dir(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.mkdir()
    for name, n in zip(IDX_FILES, (300, 300, 60, 60), strict=True):
        shape = (n, 28, 28) if "images" in name else (n,)
        high = 256 if "images" in name else 10
        write_idx(path / name, rng.integers(0, high, size=shape).astype(np.uint8))
    return path


def test_same_flags_other_data_is_another_run(tmp_path: Path) -> None:
    a, b = _idx_dir(tmp_path / "a", 0), _idx_dir(tmp_path / "b", 1)
    out = tmp_path / "run"
    cfg = dict(dataset="mnist", epochs=0, finetune_epochs=0, limit=None)
    first = run(small_run_config(data_dir=str(a), **cfg), out=out).result
    assert len(first["data_fingerprint"]) == 16
    # Same data, same flags: the finished run is accepted as the same run.
    run(small_run_config(data_dir=str(a), **cfg), out=out)
    with pytest.raises(PrunekitError, match="other data"):
        run(small_run_config(data_dir=str(b), **cfg), out=out)
    again = run(small_run_config(data_dir=str(b), **cfg), out=out, overwrite=True).result
    assert again["data_fingerprint"] != first["data_fingerprint"]


def test_mixed_run_refused_by_load_and_eval(tmp_path: Path, capsys) -> None:
    """The symptom of a torn overwrite: new weights under the old run's files."""
    from prunekit.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    save_run(a, {"v": 1}, create_model("lenet300"), ARCH)
    torch.manual_seed(1)
    save_run(b, {"v": 2}, create_model("lenet300"), ARCH)
    (a / "model.safetensors").write_bytes((b / "model.safetensors").read_bytes())
    with pytest.raises(PrunekitError, match="does not match the checksum"):
        load(a)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["eval", str(a)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: ") and "checksum" in err

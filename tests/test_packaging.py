"""Installed like a library: no exact torch pin, optional extras, version, license, typing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def name_of(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()


def test_torch_is_a_range_and_optional_libraries_are_extras():
    deps = project()["dependencies"]
    torch_req = next(d for d in deps if name_of(d) == "torch")
    assert "==" not in torch_req and ">=" in torch_req
    core = {name_of(d) for d in deps}
    for optional in ("torch-pruning", "ray", "onnx", "onnxruntime", "transformers", "scikit-learn"):
        assert optional not in core, optional
    extras = project()["optional-dependencies"]
    assert {"peers", "ray", "onnx", "transformers", "digits", "all", "dev"} <= set(extras)


def test_license_typed_marker_and_version():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert (ROOT / "src" / "prunekit" / "py.typed").exists()
    out = subprocess.run(
        [sys.executable, "-m", "prunekit", "--version"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=True,
    )
    from prunekit import __version__

    assert out.stdout.strip() == f"prunekit {__version__}"


def test_missing_optional_dependency_is_one_line_naming_the_extra(monkeypatch):
    from prunekit import PrunekitError
    from prunekit._optional import require

    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # import fails
    with pytest.raises(PrunekitError, match=r"pip install 'prunekit\[peers\]'") as e:
        require("torch_pruning", "the Torch-Pruning peer")
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_pip_install_keeps_the_users_cpu_torch(tmp_path):
    """A fresh venv that already holds the CPU torch: ``pip install .`` keeps it and the
    installed metadata pins no exact torch. Needs the CPU wheel from pip's configured
    sources (this machine: /opt/wheels); minutes."""
    import torch

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"torch=={torch.__version__}"], check=True)
    subprocess.run([*pip, str(ROOT)], check=True)
    probe = (
        "import importlib.metadata as m, torch; "
        "print(torch.__version__); print('\\n'.join(m.requires('prunekit')))"
    )
    out = subprocess.run([py, "-c", probe], capture_output=True, text=True, check=True)
    version, *requires = out.stdout.strip().splitlines()
    assert version == torch.__version__
    torch_reqs = [r for r in requires if name_of(r) == "torch"]
    assert torch_reqs and all("==" not in r for r in torch_reqs), torch_reqs
    cli = subprocess.run(
        [str(venv / "bin" / "prunekit"), "--version"], capture_output=True, text=True
    )
    assert cli.returncode == 0 and cli.stdout.startswith("prunekit ")


def test_setup_stops_at_once_naming_the_dataset_command(tmp_path):
    """Without the dataset and without apt-get, setup.sh exits before touching anything,
    printing the one command to run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "id"):  # all the script needs before it stops; no apt-get
        path = subprocess.run(
            ["bash", "-c", f"command -v {tool}"], capture_output=True, text=True, check=True
        )
        (bin_dir / tool).symlink_to(path.stdout.strip())
    env = {"PATH": str(bin_dir), "PRUNEKIT_SYSTEM_DATA": str(tmp_path / "no-such-dir")}
    out = subprocess.run(
        ["/bin/bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True, text=True, env=env
    )
    assert out.returncode == 1
    assert "sudo apt-get install dataset-fashion-mnist" in out.stderr
    # one line, and nothing after it ran (no python on this PATH: it would fail otherwise)
    assert len(out.stderr.strip().splitlines()) == 1

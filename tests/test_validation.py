"""Issue 14: every run option typed and bounded at the boundary, one `error:` line.

Each case was a traceback (exit 1), a silently replaced value, or an error after the
whole run before the checks lived in RunConfig's field metadata (prunekit/config.py).
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from conftest import cli

from prunekit import RunConfig
from prunekit.registry import PrunekitError


def one_error_line(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


# (config-file mapping, words the one line must hold: the key, the value, what is allowed)
CONFIG_CASES = [
    ({"sparsity": "abc"}, ["sparsity", "'abc'", "number in [0, 1)"]),
    ({"epochs": "two"}, ["epochs", "'two'", "whole number"]),
    ({"epochs": 1.7}, ["epochs", "1.7", "whole number"]),
    ({"seed": "abc"}, ["seed", "'abc'", "whole number"]),
    ({"model": ["lenet300"]}, ["model", "['lenet300']", "a string"]),
    ({"method_args": [1, 2]}, ["method_args", "[1, 2]", "mapping"]),
    ({"shrink": "no"}, ["shrink", "'no'", "true or false"]),
    ({"momentum": 5}, ["momentum", "5", "[0, 1)"]),
    ({"latency_batch_sizes": 5}, ["latency_batch_sizes", "5", "a list"]),
    ({"lr": 0}, ["lr", "0", "> 0"]),
    ({"finetune_lr": 0}, ["finetune_lr", "0", "> 0"]),
    ({"batch_size": 0}, ["batch_size", "0", "[1,"]),
    ({"download": "yes"}, ["download", "'yes'", "true or false"]),
    ({"val_fraction": 1.0}, ["val_fraction", "1", "[0, 1)"]),
    ({"noise_sigmas": ["x"]}, ["noise_sigmas[0]", "'x'", "number"]),
]


@pytest.mark.parametrize(("values", "words"), CONFIG_CASES)
def test_run_config_types_and_bounds(values: dict, words: list[str]) -> None:
    with pytest.raises(PrunekitError) as e:
        RunConfig.from_dict(values)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize(("values", "words"), CONFIG_CASES[:9])
def test_config_file_one_error_line(tmp_path: Path, values: dict, words: list[str], capsys) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(values))
    code, _, err = cli(
        "prune", "--dataset", "synthetic", "--config", str(path), "-q", capsys=capsys
    )
    line = one_error_line(code, err)
    for w in words:
        assert w in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--sparsity", "abc"], ["--sparsity", "abc"]),
        (["--lr", "0"], ["lr must be > 0"]),
        (["--finetune-lr", "0"], ["finetune_lr must be > 0"]),
        (["--batch-size", "0"], ["batch_size must be in [1,"]),
        (["--method", "l1", "-o", "lam=abc"], ["method option lam", "'abc'", "number"]),
        (["--method", "l1-filter", "-o", "round_to=abc"], ["round_to", "'abc'", "whole number"]),
        (["--method", "l1-filter", "-o", "round_to=2.5"], ["round_to", "2.5", "whole number"]),
        (["--schedule", "iterative", "-o", "cycles=x"], ["cycles", "'x'"]),
        (["--nope"], ["No such option: --nope"]),
    ],
)
def test_flags_one_error_line(tmp_path: Path, args: list[str], words: list[str], capsys) -> None:
    code, _, err = cli(
        "prune", "--dataset", "synthetic", *args, "--out", str(tmp_path / "r"), "-q", capsys=capsys
    )
    line = one_error_line(code, err)
    for w in words:
        assert w in line
    assert not (tmp_path / "r").exists()


def test_yaml_float_option_is_a_number() -> None:
    from prunekit.cli import parse_options

    # YAML 1.1 reads 1e-3 as a string; the user means the number.
    assert parse_options(["lam=1e-3", "update=proximal"]) == {"lam": 1e-3, "update": "proximal"}


def test_whole_float_becomes_int_and_hash_is_stable() -> None:
    assert RunConfig(epochs=2.0).epochs == 2
    assert RunConfig(epochs=2.0).hash() == RunConfig(epochs=2).hash()


def test_every_field_has_its_check_and_help() -> None:
    for f in fields(RunConfig):
        assert f.metadata.get("check") is not None, f.name
        assert f.metadata.get("help"), f.name


@pytest.mark.parametrize(
    "where",
    [
        lambda tmp: Path("/proc/prunekit-run"),
        lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "run",
    ],
    ids=["proc", "under-a-file"],
)
def test_unwritable_out_fails_before_training(tmp_path: Path, where, capsys) -> None:
    out = where(tmp_path)
    # --epochs 50 on real-size data would take minutes: the error must come first.
    code, _, err = cli(
        "prune", "--dataset", "synthetic", "--epochs", "50", "--out", str(out), "-q", capsys=capsys
    )
    line = one_error_line(code, err)
    assert str(out) in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory modes")
def test_read_only_out_fails_before_training(tmp_path: Path, capsys) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    code, _, err = cli(
        "prune", "--dataset", "synthetic", "--out", str(ro / "r"), "-q", capsys=capsys
    )
    assert "cannot write" in one_error_line(code, err)


def test_out_with_foreign_files_refused(tmp_path: Path, capsys) -> None:
    # A run directory is replaced as a whole: a folder holding other files is not one.
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = cli(
        "prune",
        "--dataset",
        "synthetic",
        "--out",
        str(tmp_path),
        "--overwrite",
        "-q",
        capsys=capsys,
    )
    assert "notes.txt" in one_error_line(code, err)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def _help(command: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "400")
    code, out, err = cli(command, "--help", capsys=capsys)
    assert code == 0, err
    return " ".join(out.split())


@pytest.mark.parametrize("command", ["train", "prune", "eval", "entropy", "export", "compare"])
def test_every_command_help_shows_its_defaults(command: str, capsys, monkeypatch) -> None:
    """Each option with a default value shows it (rich markup used to eat the
    ``[default: ...]`` text as a tag)."""
    from typer.main import get_command

    from prunekit.cli import app

    text = _help(command, capsys, monkeypatch)
    params = get_command(app).commands[command].params
    for p in params:
        shown = p.default not in (None, False) and not callable(p.default) and p.show_default
        if shown is not False and p.default not in (None, False) and p.opts[0].startswith("--"):
            value = p.default if not isinstance(p.default, float) else f"{p.default:g}"
            assert f"[default: {value}]" in text or f"[default: {p.default}]" in text, p.opts


def test_prune_help_defaults_match_run_config(capsys, monkeypatch) -> None:
    text = _help("prune", capsys, monkeypatch)
    defaults = RunConfig()
    for key in ("model", "dataset", "method", "sparsity", "epochs", "finetune_epochs", "seed"):
        flag = "--" + key.replace("_", "-")
        start = text.index(flag + " <")
        assert f"[default: {getattr(defaults, key)}]" in text[start : start + 200], key

"""One run schema: every RunConfig field is a CLI flag of `prune` (its default shown in
--help), a key of a comparison config, and part of the command that reproduces a
comparison cell; that command parsed back gives the same RunConfig and hash. The
library's `prunekit.prune` defaults are the schema's."""

from __future__ import annotations

import inspect
import shlex
from dataclasses import MISSING, fields
from typing import Any

import pytest

import prunekit
from prunekit.cli import app, main
from prunekit.config import RunConfig
from prunekit.experiments.plan import config_from_dict, plan
from prunekit.registry import PrunekitError
from prunekit.runoptions import BY_NAME, to_argv

#: A value other than the default for every field, and the fields it needs beside it
#: (a method option must be one the method takes). A new RunConfig field without an
#: entry here fails `test_every_field_has_a_non_default_value`.
NON_DEFAULT: dict[str, tuple[Any, dict[str, Any]]] = {
    "model": ("lenet5", {}),
    "dataset": ("synthetic", {}),
    "method": ("gmp", {}),
    "sparsity": (0.7, {}),
    "granularity": ("neuron", {}),
    "scope": ("layer", {}),
    "schedule": ("iterative", {}),
    "epochs": (3, {}),
    "finetune_epochs": (4, {}),
    "lr": (0.03, {}),
    "finetune_lr": (1e-05, {}),
    "batch_size": (32, {}),
    "momentum": (0.5, {}),
    "weight_decay": (0.0001, {}),
    "seed": (7, {}),
    "data_dir": ("/data/my dir", {}),
    "download": (True, {}),
    "val_fraction": (0.2, {}),
    "limit": (500, {}),
    "test_limit": (200, {}),
    "method_args": ({"prune_fraction": 0.25, "frequency": 3}, {"method": "gmp"}),
    "latency_repeats": (5, {}),
    "latency_batch_sizes": ([1, 8, 256], {}),
    "noise_sigmas": ([0.05, 1 / 3], {}),
    "noise_densities": ([], {}),
    "noise_eval_seed": (99, {}),
    "shrink": (False, {}),
    "recalibrate_bn": (False, {}),
    "int8": (True, {}),
}
NAMES = [f.name for f in fields(RunConfig)]


def _default(name: str) -> Any:
    f = next(f for f in fields(RunConfig) if f.name == name)
    return f.default if f.default is not MISSING else f.default_factory()


class _Captured(Exception):
    pass


def _parse_prune(argv: list[str], monkeypatch) -> RunConfig:
    """The RunConfig `prunekit prune ARGV` would run (the pipeline is not started)."""
    import prunekit.pipeline

    def capture(cfg, **kwargs):
        raise _Captured(cfg)

    monkeypatch.setattr(prunekit.pipeline, "run", capture)
    with pytest.raises(_Captured) as got:
        app(args=["prune", *argv], standalone_mode=False)
    return got.value.args[0]


def test_every_field_has_a_non_default_value() -> None:
    assert sorted(NON_DEFAULT) == sorted(NAMES)
    for name, (value, _) in NON_DEFAULT.items():
        assert value != _default(name), name


@pytest.mark.parametrize("name", NAMES)
def test_field_is_a_prune_flag_with_its_default_in_help(name: str, capsys, monkeypatch) -> None:
    from typer.main import get_command

    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    params = get_command(app).commands["prune"].params
    flag = BY_NAME[name].flag
    (param,) = [p for p in params if flag in p.opts]
    default = _default(name)
    if default is None or default == {}:
        assert "[default: " in param.help, name  # a word such as "model recipe"
    else:
        if isinstance(default, bool):
            shown = "on" if default else "off"
        elif isinstance(default, list):
            shown = ",".join(str(v) for v in default)
        else:
            shown = str(default)
        assert param.help.endswith(f"[default: {shown}]"), (name, param.help)
    assert param.help.split("[default:")[0].strip() in text  # rendered, not only declared
    start = text.index(flag)
    assert "[default: " in text[start : start + 400], name


@pytest.mark.parametrize("name", NAMES)
def test_field_flag_parses_back_to_the_same_config(name: str, monkeypatch) -> None:
    value, context = NON_DEFAULT[name]
    cfg = RunConfig(**context, **{name: value})
    argv = to_argv(cfg)
    assert BY_NAME[name].flag in argv or BY_NAME[name].negative in argv or "-o" in argv
    got = _parse_prune(argv, monkeypatch)
    assert got.to_dict() == cfg.to_dict()
    assert got.hash() == cfg.hash()


def test_every_field_at_once_parses_back(monkeypatch) -> None:
    values = {name: value for name, (value, _) in NON_DEFAULT.items()}
    cfg = RunConfig(**values)
    argv = to_argv(cfg)
    got = _parse_prune(shlex.split(shlex.join(argv)), monkeypatch)  # through a shell
    assert got.to_dict() == cfg.to_dict() and got.hash() == cfg.hash()


def _comparison(name: str, value: Any, context: dict[str, Any]) -> dict[str, Any]:
    """A comparison config that sets ``name`` (and its context) where the schema says."""
    data: dict[str, Any] = {"sparsities": [0.5], "dense_baseline": False}
    entry: dict[str, Any] = {"name": "magnitude"}
    for key, v in {**context, name: value}.items():
        where = BY_NAME[key].compare
        if where.startswith("methods[]."):
            entry[where.removeprefix("methods[].")] = v
        elif "." in where:
            section, _, k = where.partition(".")
            data.setdefault(section, {})[k] = v
        else:  # a grid key: one value, or a list of them
            data[where] = v if where == "dataset" else [v]
    data["methods"] = [entry]
    return data


@pytest.mark.parametrize("name", NAMES)
def test_field_is_a_comparison_key_and_in_the_reproduce_command(name: str, monkeypatch) -> None:
    value, context = NON_DEFAULT[name]
    (cell,) = plan(config_from_dict(_comparison(name, value, context)))
    assert getattr(cell.run, name) == value
    command = cell.command()
    option = BY_NAME[name]
    words = shlex.split(command)
    assert option.flag in words or option.negative in words or option.short in words, command
    got = _parse_prune(words[2:], monkeypatch)
    assert got.to_dict() == cell.run.to_dict(), command
    assert got.hash() == cell.run.hash()


def test_unknown_section_key_lists_the_schema_keys() -> None:
    with pytest.raises(PrunekitError, match="unknown key.*budget: nope; known: .*recalibrate_bn"):
        config_from_dict({"methods": ["magnitude"], "budget": {"nope": 1}})


def test_library_prune_defaults_are_the_schema_defaults() -> None:
    params = inspect.signature(prunekit.prune).parameters
    for name in ("method", "sparsity", "scope", "granularity", "seed", "recalibrate_bn"):
        assert params[name].default == _default(name), name


def test_train_takes_the_dense_run_options_with_the_same_flags() -> None:
    from typer.main import get_command

    commands = get_command(app).commands
    prune_opts = {o for p in commands["prune"].params for o in p.opts}
    train_opts = {o for p in commands["train"].params for o in p.opts}
    for name in ("model", "dataset", "epochs", "lr", "batch_size", "seed", "limit"):
        assert BY_NAME[name].flag in train_opts & prune_opts
    assert "--sparsity" not in train_opts and "--method" not in train_opts

"""The flags of `prune` that are not RunConfig fields come from one declaration each
(prunekit.cli.extraflags): every method-option shortcut and latency-target flag is a
`prune` flag with its help and default shown, a shortcut sets the same method option as
its `-o KEY=VALUE` form (and the same run hash), and the target flags build the
latency Target with Target's own defaults."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from prunekit.cli import app, main
from prunekit.cli.extraflags import SHORTCUTS, TARGET_FLAGS, ExtraFlag
from prunekit.config import RunConfig

#: A value for every flag, and the method options it stands for (``-o`` form). A new
#: shortcut without an entry fails `test_every_shortcut_has_a_value`.
SHORTCUT_VALUES: dict[str, tuple[str, dict[str, Any]]] = {
    "lam": ("0.0003", {"lam": 0.0003}),
    "cycles": ("3", {"cycles": 3}),
    "noise_sigma": ("0.25", {"sigma": 0.25}),
    "noise_density": ("0.1", {"density": 0.1}),
    "calibration_batches": ("4", {"calibration_batches": 4}),
    "entropy_estimator": ("gaussian", {"estimator": "gaussian"}),
    "nm": ("1:4", {"n": 1, "m": 4}),
}
#: A value other than the default for every latency-target flag.
TARGET_VALUES: dict[str, tuple[str, Any]] = {
    "target_speedup": ("2.5", 2.5),
    "target_latency_ms": ("0.4", 0.4),
    "runtime": ("onnxruntime", "onnxruntime"),
    "latency_batch": ("8", 8),
    "depth": ("with", "with"),
}
ALL: list[ExtraFlag] = [*SHORTCUTS, *TARGET_FLAGS]


class _Captured(Exception):
    pass


def _capture(monkeypatch) -> None:
    """`prune` stops where it would start the pipeline or the latency target."""
    import prunekit.latency.target
    import prunekit.pipeline

    def pipeline(cfg, **kwargs):
        raise _Captured(cfg, None)

    def target(cfg, t, **kwargs):
        raise _Captured(cfg, t)

    monkeypatch.setattr(prunekit.pipeline, "run", pipeline)
    monkeypatch.setattr(prunekit.latency.target, "run_target", target)


def _prune(argv: list[str], monkeypatch) -> tuple[RunConfig, Any]:
    _capture(monkeypatch)
    with pytest.raises(_Captured) as got:
        app(args=["prune", *argv], standalone_mode=False)
    return got.value.args


def test_every_shortcut_has_a_value() -> None:
    assert sorted(SHORTCUT_VALUES) == sorted(s.name for s in SHORTCUTS)
    assert sorted(TARGET_VALUES) == sorted(f.name for f in TARGET_FLAGS)


@pytest.mark.parametrize("flag", ALL, ids=lambda f: f.name)
def test_flag_is_a_prune_flag_with_its_help_and_default(flag: ExtraFlag, capsys, monkeypatch):
    from typer.main import get_command

    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    (param,) = [p for p in get_command(app).commands["prune"].params if flag.option in p.opts]
    assert param.help == f"{flag.help}  [default: {flag.default_text()}]"
    start = text.index(flag.option + " ")
    assert f"{flag.help} [default: {flag.default_text()}]" in text[start : start + 400]


@pytest.mark.parametrize("flag", SHORTCUTS, ids=lambda f: f.name)
def test_shortcut_is_its_method_option(flag: ExtraFlag, monkeypatch) -> None:
    text, options = SHORTCUT_VALUES[flag.name]
    base = ["--model", "lenet300", "--sparsity", "0.5"]
    via_flag, _ = _prune([*base, flag.option, text], monkeypatch)
    assert via_flag.method_args == options
    o_form = [w for k, v in options.items() for w in ("-o", f"{k}={v}")]
    via_o, _ = _prune([*base, *o_form], monkeypatch)
    assert via_o.to_dict() == via_flag.to_dict() and via_o.hash() == via_flag.hash()


def test_option_wins_over_a_shortcut_and_nm_fixes_the_sparsity(monkeypatch) -> None:
    cfg, _ = _prune(["--lambda", "0.1", "-o", "lam=0.2"], monkeypatch)
    assert cfg.method_args == {"lam": 0.2}
    cfg, _ = _prune(["--granularity", "nm", "--nm", "1:4"], monkeypatch)
    assert cfg.method_args == {"n": 1, "m": 4} and cfg.sparsity == pytest.approx(0.75)


def test_bad_nm_is_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["prune", "--nm", "2-4"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --nm takes N:M with whole numbers, e.g. 2:4; got '2-4'"


def test_target_flags_build_the_target_with_its_defaults(monkeypatch) -> None:
    from prunekit.latency.target import Target

    declared = {f.dest: f.default for f in TARGET_FLAGS if f.default is not None}
    defaults = {f.name: f.default for f in fields(Target)}
    assert all(defaults[k] == v for k, v in declared.items())  # one default: Target's
    cfg, target = _prune(["--model", "lenet5", "--target-speedup", "2"], monkeypatch)
    assert target == Target(speedup=2.0)
    assert cfg.method == "l1-filter" and cfg.sparsity == 0.0
    argv = ["--model", "lenet5"]
    for name, (text, _) in TARGET_VALUES.items():
        if name != "target_latency_ms":  # exactly one of the two goals
            argv += [next(f.option for f in TARGET_FLAGS if f.name == name), text]
    _, target = _prune(argv, monkeypatch)
    for f in TARGET_FLAGS:
        want = TARGET_VALUES[f.name][1] if f.name != "target_latency_ms" else None
        assert getattr(target, f.dest) == want, f.name
    _, target = _prune(["--model", "lenet5", "--target-latency-ms", "0.4"], monkeypatch)
    assert target.latency_ms == 0.4 and target.speedup is None


def test_no_target_runs_the_pipeline(monkeypatch) -> None:
    cfg, target = _prune(["--runtime", "onnxruntime", "--depth", "with"], monkeypatch)
    assert target is None and cfg.method == "magnitude"

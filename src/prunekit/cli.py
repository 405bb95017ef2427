"""The command line: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .registry import PrunekitError
from .runoptions import BY_NAME, RUN_OPTIONS, RunOption, parse_options

__all__ = ["app", "main", "parse_options", "run_options"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Help texts are plain text: with rich markup on, "[default: 0.9]" is eaten as a tag.
    rich_markup_mode=None,
    help="Prune PyTorch models and compare pruning methods honestly.",
)
out_console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from ._version import __version__

        out_console.print(f"prunekit {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version, exit."
        ),
    ] = False,
) -> None:
    """Prune PyTorch models and compare pruning methods honestly."""


def _load_config_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise PrunekitError(f"cannot read config {path}: {e}") from None
    if not isinstance(data, dict):
        raise PrunekitError(f"config {path} must be a mapping of options")
    return data


def result_table(result: dict[str, Any], title: str) -> Table:
    t = Table(title=title, show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        ("perplexity (dense, test)", "perplexity_dense", "{:.4f}"),
        ("perplexity (test)", "perplexity", "{:.4f}"),
        ("perplexity (validation)", "val_perplexity", "{:.4f}"),
        ("perplexity / dense", "perplexity_ratio", "{:.4f}"),
        ("tokens per second (dense)", "tokens_per_s_dense", "{:,.0f}"),
        ("tokens per second", "tokens_per_s", "{:,.0f}"),
        ("accuracy (dense)", "accuracy_dense", "{:.4f}"),
        ("accuracy", "accuracy", "{:.4f}"),
        ("target sparsity", "target_sparsity", "{:.4f}"),
        ("achieved sparsity", "achieved_sparsity", "{:.4f}"),
        ("params total", "params_total", "{:,}"),
        ("params total (before shrinking)", "params_total_original", "{:,}"),
        ("params nonzero", "params_nonzero", "{:,}"),
        ("MACs dense", "macs_dense", "{:,}"),
        ("MACs dense (before shrinking)", "macs_dense_original", "{:,}"),
        ("MACs effective", "macs_effective", "{:,}"),
        ("bytes (safetensors)", "size_bytes", "{:,}"),
        ("bytes (gzip)", "size_bytes_gzip", "{:,}"),
        ("accuracy under noise (mean)", "accuracy_corrupted_mean", "{:.4f}"),
    ]
    for label, key, fmt in rows:
        if result.get(key) is not None:
            t.add_row(label, fmt.format(result[key]))
    for bs, ms in (result.get("latency_ms") or {}).items():
        t.add_row(f"latency batch {bs} (ms, median)", f"{ms:.3f}")
        if bs in (result.get("speedup") or {}):
            dense_ms = result["latency_ms_dense"][bs]
            t.add_row(
                f"speed-up batch {bs} (vs dense {dense_ms:.3f} ms, interleaved; "
                "median of per-repeat ratios)",
                f"{result['speedup'][bs]:.2f}x",
            )
    for kind in ("accuracy_gaussian", "accuracy_saltpepper"):
        for level, acc in (result.get(kind) or {}).items():
            t.add_row(f"{kind.removeprefix('accuracy_')} {level}", f"{acc:.4f}")
    return t


def _run_pipeline(values: dict[str, Any], out: Path | None, overwrite: bool, quiet: bool) -> None:
    from .config import RunConfig
    from .pipeline import run

    cfg = RunConfig.from_dict(values)
    result = run(cfg, out=out, overwrite=overwrite, progress=not quiet).result
    from .distributed import is_main

    if not is_main():  # under torchrun only rank 0 evaluates, saves and prints
        return
    out_console.print(result_table(result, f"{cfg.model} / {cfg.dataset} / {result['method']}"))
    if out is not None:
        out_console.print(f"saved to {out}")


def _run_lm(values: dict[str, Any], out: Path | None, overwrite: bool, quiet: bool) -> None:
    from .lm import LMConfig, run_lm

    cfg = LMConfig.from_dict(values)
    result = run_lm(cfg, out=out, overwrite=overwrite).result
    out_console.print(result_table(result, f"{cfg.model} / {cfg.dataset} / {result['method']}"))
    if out is not None:
        out_console.print(f"saved to {out} (transformers format under {out / 'hf'})")


_CLI_TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "list": str,  # "0.1,0.2": parsed by RunOption.parse
    "dict": list[str],  # -o KEY=VALUE, repeatable
}


def _run_parameter(o: RunOption) -> inspect.Parameter:
    """A typer option for one RunConfig field. Its default is None (= not given), so a
    --config file's value is not overwritten by a flag nobody typed; --help shows the
    schema's default instead. Values are checked by RunConfig (one-line errors)."""
    decls = [f"{o.flag}/{o.negative}"] if o.kind == "bool" else [o.flag, o.short]
    info = typer.Option(
        *[d for d in decls if d],
        # Written into the help: click puts a text default in parentheses.
        help=f"{o.help_text()}  [default: {o.default_text()}]",
        show_default=False,
        metavar=o.metavar(),
    )
    annotation = Annotated[_CLI_TYPES[o.kind] | None, info]
    return inspect.Parameter(
        o.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


def run_options(
    *, exclude: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command one option per RunConfig field (but ``exclude``), generated from
    the schema. The command's own parameters are the options that are not run options
    (paths, --quiet ...); it receives the run options given on the command line as
    ``run``: ``{field: value}``, typed, lists and ``-o`` parsed, absent ones left out."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(func, eval_str=True).parameters.values()
            if p.name != "run"
        ]
        generated = [_run_parameter(o) for o in RUN_OPTIONS if o.name not in exclude]
        clash = {p.name for p in own} & {p.name for p in generated}
        if clash:
            raise TypeError(f"{func.__name__}: parameters shadow run options {sorted(clash)}")

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            given = {p.name: BY_NAME[p.name].parse(kwargs.pop(p.name)) for p in generated}
            return func(run={k: v for k, v in given.items() if v is not None}, **kwargs)

        params = generated + own
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return wrap


Out = Annotated[Path | None, typer.Option(help="Run directory to write.")]
Overwrite = Annotated[bool, typer.Option(help="Replace a different run already in --out.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
DataDir = Annotated[Path | None, typer.Option(help="Directory with the dataset's IDX files.")]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="YAML file of options; flags given on the command line win."),
]
#: Run options of the pruning phase: `train` (a dense run) has no use for them.
_PRUNING_OPTIONS = (
    "method",
    "sparsity",
    "granularity",
    "scope",
    "schedule",
    "finetune_epochs",
    "finetune_lr",
    "method_args",
    "shrink",
    "recalibrate_bn",
)


@app.command()
@run_options(exclude=_PRUNING_OPTIONS)
def train(
    run: dict[str, Any],
    out: Out = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train a dense model and evaluate it (a run with no pruning)."""
    _run_pipeline(
        {**run, "method": "dense", "sparsity": 0.0, "finetune_epochs": 0}, out, overwrite, quiet
    )


@app.command()
@run_options()
def prune(
    run: dict[str, Any],
    lam: Annotated[
        float | None, typer.Option("--lambda", help="Penalty strength of the method's objective.")
    ] = None,
    cycles: Annotated[
        int | None, typer.Option(help="Prune/fine-tune cycles (iterative schedule).")
    ] = None,
    noise_sigma: Annotated[
        float | None,
        typer.Option(help="Gaussian noise std (inputs in [0, 1]) for the gaussian method."),
    ] = None,
    noise_density: Annotated[
        float | None,
        typer.Option(help="Salt-and-pepper density in [0, 1] for the saltpepper method."),
    ] = None,
    calibration_batches: Annotated[
        int | None, typer.Option(help="Batches of data used by data-driven criteria (entropy).")
    ] = None,
    entropy_estimator: Annotated[
        str | None, typer.Option(help="histogram | gaussian (entropy criterion).")
    ] = None,
    nm: Annotated[
        str | None,
        typer.Option(
            help="N:M pattern for --granularity nm, e.g. 2:4; it fixes the sparsity at 1-N/M (omit --sparsity)."
        ),
    ] = None,
    target_speedup: Annotated[
        float | None,
        typer.Option(
            help="Prune a structured method to this MEASURED speed-up (latency tables, "
            "see prunekit.latency); --sparsity is then unused."
        ),
    ] = None,
    target_latency_ms: Annotated[
        float | None,
        typer.Option(help="Like --target-speedup, as a latency in ms per batch."),
    ] = None,
    runtime: Annotated[
        str,
        typer.Option(help="Runtime the latency target holds in: eager | compile | onnxruntime."),
    ] = "eager",
    latency_batch: Annotated[
        int, typer.Option(help="Batch size the latency target is measured at.")
    ] = 64,
    depth: Annotated[
        str,
        typer.Option(help="Residual blocks for a latency target: none | only | with (widths)."),
    ] = "none",
    config: ConfigFile = None,
    out: Out = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train dense -> prune to --sparsity with --method -> fine-tune -> evaluate -> save."""
    values = _load_config_file(config)
    given = dict(run)
    option_args = given.pop("method_args", {})
    values.update(given)
    from .config import check_values

    values = check_values(values)  # a wrongly typed config value: one line, here
    method_args = dict(values.get("method_args") or {})
    named = {
        "lam": lam,
        "cycles": cycles,
        "sigma": noise_sigma,
        "density": noise_density,
        "calibration_batches": calibration_batches,
        "estimator": entropy_estimator,
    }
    method_args.update({k: v for k, v in named.items() if v is not None})
    if nm is not None:
        n_str, sep, m_str = nm.partition(":")
        if not sep or not n_str.isdigit() or not m_str.isdigit():
            raise PrunekitError(f"--nm takes N:M with whole numbers, e.g. 2:4; got {nm!r}")
        method_args.update(n=int(n_str), m=int(m_str))
    method_args.update(option_args)  # -o KEY=VALUE wins over the named shortcuts
    values["method_args"] = method_args
    from .lm import is_lm_config

    if is_lm_config(values):  # gpt-tiny, hf:PATH or a text corpus: the LM run (prunekit.lm)
        _run_lm(values, out, overwrite, quiet)
        return
    if "sparsity" not in values:  # an N:M pattern fixes the sparsity at 1 - N/M
        from .pruning.granularity import implied_sparsity
        from .pruning.methods import get_method

        gran = (
            values.get("granularity") or get_method(values.get("method", "magnitude")).granularity
        )
        implied = implied_sparsity(gran, method_args)
        if implied is not None:
            values["sparsity"] = implied
    if target_speedup is not None or target_latency_ms is not None:
        _run_target(
            values,
            out,
            overwrite,
            quiet,
            target_speedup,
            target_latency_ms,
            runtime,
            latency_batch,
            depth,
        )
        return
    _run_pipeline(values, out, overwrite, quiet)


def _run_target(values, out, overwrite, quiet, speedup, latency_ms, runtime, batch, depth):
    from .config import RunConfig
    from .latency.target import Target, run_target

    values.setdefault("method", "l1-filter")
    values["sparsity"] = 0.0  # the latency target decides how much goes
    target = Target(
        speedup=speedup, latency_ms=latency_ms, runtime=runtime, batch_size=batch, depth=depth
    )
    target.check()  # one-line errors before the data is read
    cfg = RunConfig.from_dict(values)
    result = run_target(cfg, target, out=out, overwrite=overwrite, progress=not quiet).result
    out_console.print(result_table(result, f"{cfg.model} / {cfg.dataset} / {result['method']}"))
    s = result["latency_target"]
    out_console.print(
        f"latency target ({s['runtime']}, batch {s['batch_size']}): goal {s['goal_speedup']:.2f}x, "
        f"predicted {s['predicted_speedup']:.2f}x, measured {s['measured_speedup']:.2f}x"
    )
    if out is not None:
        out_console.print(f"saved to {out}")


@app.command("eval")
def evaluate_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by prunekit.")],
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Reload a saved run (safetensors + JSON only) and evaluate it again."""
    from .pipeline import evaluate_saved

    if (run_dir / "hf" / "config.json").is_file():  # a language model (prunekit.lm)
        from .lm.reload import evaluate_saved_lm

        result = evaluate_saved_lm(run_dir)
    else:
        result = evaluate_saved(run_dir, data_dir=data_dir)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        out_console.print(result_table(result, f"{run_dir}"))


@app.command("entropy")
def entropy_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by prunekit.")],
    out: Annotated[
        Path, typer.Option(help="JSON file to write ({layer: [H_j ...]} under 'entropy').")
    ],
    entropy_estimator: Annotated[str, typer.Option(help="histogram | gaussian.")] = "histogram",
    bins: Annotated[int, typer.Option(help="Histogram bins.")] = 32,
    calibration_batches: Annotated[
        int | None, typer.Option(help="Batches of 256 calibration images (default: all).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Export the per-unit activation entropies (nats) of a saved run's model."""
    from .evaluation.entropy_export import run_unit_entropies
    from .storage.atomic import atomic_write_json

    report = run_unit_entropies(
        run_dir,
        estimator=entropy_estimator,
        bins=bins,
        batches=calibration_batches,
        data_dir=data_dir,
    )
    atomic_write_json(out, report)
    units = sum(len(v) for v in report["entropy"].values())
    out_console.print(
        f"{units} unit entropies ({entropy_estimator}) of {len(report['entropy'])} "
        f"layers written to {out}"
    )


@app.command("export")
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by prunekit.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write.")],
    fold_bn: Annotated[
        bool, typer.Option("--fold-bn", help="Fold BatchNorm into the conv before it.")
    ] = False,
    round_to: Annotated[
        int,
        typer.Option(
            "--round-to",
            help="Keep a multiple of this many units per layer group (zero units are added).",
        ),
    ] = 1,
    deploy: Annotated[
        bool,
        typer.Option(
            "--deploy",
            help="Also apply prunekit.deploy's exact rewrites: fold BatchNorm and the input "
            "normalization, move ReLU after max-pool.",
        ),
    ] = False,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Write an int8 ONNX model (onnxruntime static quantization, calibrated on "
            "512 validation images; BN and normalization folded first).",
        ),
    ] = False,
    int8_linear: Annotated[
        str, typer.Option(help="With --int8: Linear layers 'static' or 'dynamic'.")
    ] = "static",
) -> None:
    """Export a saved run to ONNX (dead units removed), checked in onnxruntime (atol 1e-4)."""
    if int8:
        from .latency.quantize import export_int8_run

        q = export_int8_run(run_dir, onnx, linear=int8_linear)
        out_console.print(
            f"wrote {q['path']} (int8, {q['bytes_int8_onnx']:,} bytes; float ONNX "
            f"{q['bytes_float_onnx']:,}); test accuracy int8 {q['accuracy_int8']:.4f} vs torch "
            f"{q['accuracy_torch']:.4f}; same class as torch on "
            f"{100 * q['agreement_int8_vs_torch']:.2f} % of test images; recorded in result.json"
        )
        return
    if deploy:
        from .inference.deploy import export_deployed

        info = export_deployed(run_dir, onnx, round_to=round_to)
    else:
        from .inference.export import export_run

        info = export_run(run_dir, onnx, fold_bn=fold_bn, round_to=round_to)
    out_console.print(
        f"wrote {info['path']} ({info['bytes']:,} bytes, opset {info['opset']}); "
        f"max |onnxruntime - torch| = {info['max_abs_diff']:.2g}; "
        f"folded {len(info['folded_batchnorm'])} BatchNorm"
        + (
            f", {len(info['normalize_folded'])} Normalize; "
            f"{len(info['relu_maxpool_swapped'])} ReLU moved after max-pool"
            if deploy
            else ""
        )
    )


@app.command("list")
def list_cmd() -> None:
    """Known models, datasets, methods, criteria, granularities and schedules."""
    from .data import DATASETS
    from .models import MODELS
    from .pruning.criteria import CRITERIA
    from .pruning.granularity import GRANULARITIES
    from .pruning.methods import METHODS
    from .pruning.schedules import SCHEDULES

    for title, reg in (
        ("models", MODELS),
        ("datasets", DATASETS),
        ("criteria", CRITERIA),
        ("granularities", GRANULARITIES),
        ("schedules", SCHEDULES),
    ):
        out_console.print(f"[bold]{title}[/bold]: {', '.join(reg.names())}")
    from .lm.models import LM_MODELS
    from .lm.prune import LM_METHODS
    from .lm.structured import STRUCT_METHODS
    from .lm.text import CORPORA

    out_console.print(
        f"[bold]language models[/bold]: {', '.join(LM_MODELS)}, hf:PATH; "
        f"[bold]text corpora[/bold]: {', '.join(CORPORA)}, text:PATH; "
        f"[bold]LM methods[/bold]: {', '.join(LM_METHODS)}; "
        f"heads + MLP units: {', '.join(STRUCT_METHODS)}"
    )
    t = Table(title="methods")
    for col in ("name", "criterion", "granularity", "objective", "schedule", "description"):
        t.add_column(col)
    for name in METHODS.names():
        m = METHODS.get(name)
        t.add_row(name, m.criterion, m.granularity, m.objective or "-", m.schedule, m.description)
    out_console.print(t)


# The comparison harness's commands live with it (prunekit/experiments/commands.py).
from .experiments.commands import compare_cmd, report_cmd  # noqa: E402

app.command("compare")(compare_cmd)
app.command("report")(report_cmd)


def _given(e: Exception, argv: list[str] | None) -> str:
    """``, got 'abc'``: the value a bad option was given (the framework's message
    names the option and the type, not what the user typed)."""
    opts = getattr(getattr(e, "param", None), "opts", None) or []
    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                return f", got {args[i + 1]!r}"
            if arg.startswith(opt + "="):
                return f", got {arg[len(opt) + 1 :]!r}"
    return ""


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr and exit code 2, no traceback.

    Usage errors (bad flags, a value of the wrong type) are one `error:` line too.
    """
    # typer vendors its own click (typer._click) since 0.22; fall back to click itself.
    try:
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions as click_errors

    try:
        # standalone_mode=False: usage errors come back as exceptions, so they print as
        # the project's one `error:` line instead of the framework's boxed message.
        code = app(args=argv, standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)  # as standalone mode does
    except click_errors.NoArgsIsHelpError as e:
        out_console.print(e.ctx.get_help() if e.ctx else "", highlight=False, markup=False)
        sys.exit(2)
    except click_errors.UsageError as e:
        name = e.ctx.command.name if e.ctx and e.ctx.command else None
        where = f"{name}: " if name and e.ctx.parent is not None else ""
        message = " ".join(e.format_message().split()) + _given(e, argv)
        err_console.print(
            f"[red]error:[/red] {escape(where + message)}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
    except click_errors.ClickException as e:
        err_console.print(
            f"[red]error:[/red] {escape(e.format_message())}", highlight=False, soft_wrap=True
        )
        sys.exit(e.exit_code or 1)
    except typer.Abort:
        err_console.print("interrupted")
        sys.exit(130)
    except PrunekitError as e:
        # escape: a message may hold brackets (pip install 'prunekit[ray]') that rich would eat
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)

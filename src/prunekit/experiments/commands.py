"""``prunekit compare`` and ``prunekit report``: parse, call the harness, print.

Registered on the main typer app in ``prunekit/cli/entry.py``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ..registry import PrunekitError

_out = Console()
_err = Console(stderr=True)


def _csv(text: str | None, cast, flag: str) -> list | None:
    if text is None:
        return None
    try:
        return [cast(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise PrunekitError(f"{flag} takes a comma-separated list, got {text!r}") from None


def summary_table(out: Path) -> Table:
    from .store import read_rows
    from .summary import summary_matrix

    header, body = summary_matrix(read_rows(out))
    t = Table(title="test accuracy per method and target sparsity (mean ± std over seeds)")
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i < 3 else "right")
    for row in body:
        t.add_row(*row)
    return t


def compare_cmd(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Comparison YAML [default: the packaged default.yaml]."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output directory (results.sqlite, report) [default: runs/compare, runs/compare-full with --full]."
        ),
    ] = None,
    extend: Annotated[
        bool,
        typer.Option(
            "--extend",
            help="Add this config's cells to a directory holding another config's results.",
        ),
    ] = False,
    full: Annotated[
        bool,
        typer.Option("--full", help="Merge the config's `full:` section (more seeds and epochs)."),
    ] = False,
    only: Annotated[
        str | None,
        typer.Option(help="Run only these method labels, comma-separated (a new config)."),
    ] = None,
    sparsities: Annotated[
        str | None, typer.Option(help="Replace the target sparsities, comma-separated.")
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="Replace the seeds, comma-separated.")] = None,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Also quantize every cell (and the dense model) to int8 ONNX: bytes, "
            "accuracy, agreement and latency, and the report's pruning vs int8 vs both at "
            "equal model bytes (the config's evaluation.int8; needs onnxruntime).",
        ),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed", help="Run failed cells again (default: keep their failure)."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the planned grid and exit.")
    ] = False,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Do not write report.md / report.html at the end.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    backend: Annotated[
        str,
        typer.Option(
            help="local (this process) | ray (one Ray task per cell; needs the optional ray extra)."
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray head HOST:PORT, ray://HOST:PORT or auto (default: start a local Ray instance)."
        ),
    ] = None,
    cpus_per_run: Annotated[
        float | None,
        typer.Option(help="CPUs (torch threads) per cell with --backend ray (default: 1)."),
    ] = None,
    gpus_per_run: Annotated[
        float | None, typer.Option(help="GPUs reserved per cell with --backend ray (default: 0).")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="lm: the packaged language-model comparison (configs/lm.yaml); a --config "
            "with `task: lm` is one too."
        ),
    ] = None,
) -> None:
    """Run every method on the same grid and budget; results in DIR/results.sqlite (resumable)."""
    from ..lm.compare import is_lm_compare_file

    if task not in (None, "lm", "vision"):
        raise PrunekitError(f"--task takes lm or vision, got {task!r}")
    if task == "lm" or is_lm_compare_file(config):  # prunekit.lm owns the LM grid
        if int8:
            raise PrunekitError("--int8 quantizes vision models; the LM comparison has no int8")
        from ..lm.compare import compare_lm, load_lm_config

        t_lm = time.perf_counter()
        lm_cfg = load_lm_config(config)
        if seeds is not None:
            lm_cfg.seeds = _csv(seeds, int, "--seeds")
        outcome = compare_lm(
            lm_cfg, out or Path("runs/compare-lm"), log=lambda m: _err.print(m, highlight=False)
        )
        _out.print(outcome["report"].read_text(), highlight=False, markup=False)
        _out.print(
            f"{outcome['planned']} cells planned, {outcome['ran']} run now; report "
            f"{outcome['report']}; wall time {time.perf_counter() - t_lm:.1f} s",
            highlight=False,
        )
        return
    from .plan import load_config, plan, restrict
    from .report import write_report
    from .runner import compare

    t0 = time.perf_counter()
    cfg = load_config(config, full=full)
    cfg = restrict(
        cfg,
        only=_csv(only, str, "--only"),
        sparsities=_csv(sparsities, float, "--sparsities"),
        seeds=_csv(seeds, int, "--seeds"),
        int8=int8,
    )
    if dry_run:  # (a run plans, and resolves each cell, in `compare`)
        for c in (cells := plan(cfg)):
            _out.print(
                f"{c.id}  {c.kind:6} {c.label:16} s={c.run.sparsity:<5g} seed={c.run.seed}",
                highlight=False,
            )
        _out.print(f"{len(cells)} cells planned")
        return
    out = out or Path("runs/compare-full" if full else "runs/compare")
    from .ray_backend import backend_from_flags  # imports Ray only for --backend ray

    # Connects before anything is written: a bad --address leaves no output directory.
    runner_backend = backend_from_flags(backend, address, cpus_per_run, gpus_per_run)
    if runner_backend is not None and not quiet:
        _err.print(runner_backend.describe(), highlight=False)
    try:
        outcome = compare(
            cfg,
            out,
            config_yaml=yaml.safe_dump(asdict(cfg), sort_keys=True),
            config_path=str(config) if config else None,
            extend=extend,
            retry_failed=retry_failed,
            progress=not quiet,
            console=_err,
            backend=runner_backend,
        )
    finally:
        if runner_backend is not None:
            runner_backend.close()
    _out.print(summary_table(out))
    _out.print(
        f"{outcome.planned} cells planned: {outcome.skipped} already done, {outcome.ran} run "
        f"now ({outcome.failed} failed); dense models: {outcome.dense_trained} trained, "
        f"{outcome.dense_loaded} reloaded from {out / 'dense'}; results in {outcome.store_path}",
        highlight=False,
    )
    if not no_report:
        md, html = write_report(out)
        _out.print(f"report: {html.resolve()} (and {md})", highlight=False)
    _out.print(f"wall time: {time.perf_counter() - t0:.1f} s", highlight=False)


def report_cmd(
    out: Annotated[Path, typer.Argument(help="A directory written by `prunekit compare`.")],
) -> None:
    """Write DIR/report.md and a self-contained DIR/report.html (plots embedded)."""
    from .report import write_report

    md, html = write_report(out)
    _out.print(summary_table(out))
    _out.print(f"report: {html.resolve()} (and {md})", highlight=False)

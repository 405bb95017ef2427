"""The LM comparison: the dense LM trained once per seed, every LM method at every
setting from it, one row per cell in the comparison store (``DIR/results.sqlite``, the
same table as the image comparison; the whole result.json in ``result_json``), and a
report (``DIR/lm_report.md`` with the ratio table and ``lm_perplexity.png``).

``prunekit compare --task lm`` runs the packaged ``configs/lm.yaml``;
``prunekit compare --config FILE`` runs any YAML with ``task: lm``. Rerunning resumes:
finished cells are skipped (the dense LM is retrained, deterministic per seed).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..registry import PrunekitError
from .config import LMConfig
from .run import run_lm
from .struct_run import StructSpec
from .train import dense_for

PACKAGED = Path(__file__).resolve().parent.parent / "configs" / "lm.yaml"
# Wanda paper (Sun et al. 2023, arXiv:2306.11695), LLaMA-2-7B WikiText perplexity as a
# ratio to dense 5.12, as quoted in issue 17: the reference the report sets beside ours.
ANCHOR_DENSE = 5.12
ANCHOR = {
    ("magnitude", "0.5"): 2.91,
    ("sparsegpt", "0.5"): 1.27,
    ("wanda", "0.5"): 1.25,
    ("magnitude", "2:4"): 10.7,
    ("sparsegpt", "2:4"): 1.99,
    ("wanda", "2:4"): 2.15,
}


@dataclass
class LMCompareConfig:
    """``methods``: LM method names, optionally ``+owl`` (``sparsegpt+owl``);
    ``settings``: sparsities (``0.5``) or N:M patterns (``"2:4"``); ``base``: LMConfig
    fields shared by every cell (model, dataset, budget). ``struct_methods``
    (``magnitude-struct``, ``wanda-struct``, ``flap``) run at ``struct_settings``: the
    fraction of attention heads and MLP units removed in every block."""

    name: str = "lm"
    task: str = "lm"
    base: dict[str, Any] = field(default_factory=dict)
    methods: list[str] = field(default_factory=lambda: ["magnitude", "wanda", "sparsegpt"])
    settings: list[str] = field(default_factory=lambda: ["0.5", "0.7", "0.8", "0.9", "2:4", "4:8"])
    seeds: list[int] = field(default_factory=lambda: [0])
    struct_methods: list[str] = field(default_factory=list)
    struct_settings: list[str] = field(default_factory=lambda: ["0.25", "0.5"])

    def cells(self) -> list[tuple[str, str, LMConfig]]:
        """(label, setting, config) of every cell, validated before anything runs."""
        out = []
        for seed in self.seeds:
            for label in self.methods:
                method, _, flag = label.partition("+")
                if flag not in ("", "owl"):
                    raise PrunekitError(f"LM method label {label!r}: only '+owl' may follow")
                for setting in map(str, self.settings):
                    args: dict[str, Any] = {"owl": True} if flag else {}
                    kw: dict[str, Any] = {}
                    if ":" in setting:
                        n, _, m = setting.partition(":")
                        args.update(n=int(n), m=int(m))
                        kw["granularity"] = "nm"
                        if flag:
                            continue  # OWL allocates unstructured sparsity only
                    else:
                        kw["sparsity"] = float(setting)
                    cfg = LMConfig.from_dict(
                        {**self.base, **kw, "method": method, "method_args": args, "seed": seed}
                    )
                    cfg.spec()
                    out.append((label, setting, cfg))
            for label in self.struct_methods:
                for setting in map(str, self.struct_settings):
                    cfg = LMConfig.from_dict(
                        {**self.base, "sparsity": float(setting), "method": label, "seed": seed}
                    )
                    cfg.spec()
                    out.append((label, setting, cfg))
        return out


def load_lm_config(path: Path | None) -> LMCompareConfig:
    path = path or PACKAGED
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise PrunekitError(f"cannot read config {path}: {e}") from None
    known = set(LMCompareConfig.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise PrunekitError(
            f"LM comparison config {path}: unknown key(s) {', '.join(unknown)}; known: "
            + ", ".join(sorted(known))
        )
    return LMCompareConfig(**data)


def is_lm_compare_file(path: Path | None) -> bool:
    """Whether a comparison YAML asks for the LM task (``task: lm``)."""
    if path is None or not path.is_file():
        return False
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and data.get("task") == "lm"


class _RunView:
    """What the comparison store reads from a cell's run config."""

    def __init__(self, cfg: LMConfig) -> None:
        spec = cfg.spec()
        self.cfg = cfg
        self.model, self.dataset, self.method, self.seed = (
            cfg.model,
            cfg.dataset,
            cfg.method,
            cfg.seed,
        )
        self.sparsity = spec.sparsity
        self.granularity = "head" if isinstance(spec, StructSpec) else "nm" if spec.nm else "weight"
        self.scope = "owl" if spec.owl else getattr(spec, "scope", "layer")
        self.schedule = "oneshot"

    def to_dict(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def hash(self) -> str:
        return self.cfg.hash()


@dataclass
class _Cell:
    label: str
    setting: str
    run: _RunView
    kind: str = "method"

    @property
    def id(self) -> str:
        blob = json.dumps({"task": "lm", "label": self.label, "run": self.run.hash()})
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


def compare_lm(cfg: LMCompareConfig, out: Path, *, log: Any = print) -> dict[str, Any]:
    """Run the grid into ``out``; returns counts and the report's path."""
    from ..experiments.store import Store

    cells = [_Cell(label, setting, _RunView(c)) for label, setting, c in cfg.cells()]
    text = yaml.safe_dump(cfg.__dict__, sort_keys=True)
    store = Store(out, hashlib.sha256(text.encode()).hexdigest()[:16], text)
    ran = 0
    try:
        done = store.finished()
        for seed in cfg.seeds:
            todo = [c for c in cells if c.run.seed == seed and c.id not in done]
            if not todo:
                continue
            t0 = time.perf_counter()
            dense = dense_for(todo[0].run.cfg)
            log(
                f"seed {seed}: dense LM test perplexity {dense[4]['perplexity']:.4f} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
            for cell in todo:
                t1 = time.perf_counter()
                command = (
                    f"prunekit prune --model {cell.run.model} --dataset {cell.run.dataset} "
                    f"--method {cell.run.method} "
                    + (
                        f"--nm {cell.setting}"
                        if cell.run.granularity == "nm"
                        else f"--sparsity {cell.setting}"
                    )
                    + (" -o owl=true" if cell.run.scope == "owl" else "")
                    + f" --seed {seed}"
                )
                try:
                    result = run_lm(cell.run.cfg, dense=dense).result
                    store.record(
                        cell, command=command, result=result, wall_seconds=time.perf_counter() - t1
                    )
                    log(
                        f"  {cell.label:16s} {cell.setting:4s} perplexity {result['perplexity']:.4f} "
                        f"({result['perplexity_ratio']:.3f}x dense)"
                    )
                except PrunekitError as e:
                    store.record(
                        cell, command=command, error=str(e), wall_seconds=time.perf_counter() - t1
                    )
                    log(f"  {cell.label:16s} {cell.setting:4s} failed: {e}")
                ran += 1
    finally:
        store.close()
    report = write_lm_report(out)
    return {"planned": len(cells), "ran": ran, "report": report}


def _rows(out: Path) -> list[dict[str, Any]]:
    from ..experiments.store import read_rows

    return [r for r in read_rows(out) if r.get("task") == "lm" and r["status"] == "ok"]


def write_lm_report(out: Path) -> Path:
    """``lm_report.md``: mean perplexity ratio per method and setting, dense perplexity per
    seed, and ``lm_perplexity.png`` (perplexity vs sparsity, one line per method)."""
    every = _rows(out)
    rows = [r for r in every if r.get("granularity") != "head"]
    settings = sorted(
        dict.fromkeys(r["nm"] or f"{r['target_sparsity']:g}" for r in rows),
        key=lambda s: (":" in s, s),  # sparsities ascending, then N:M patterns
    )
    labels = list(dict.fromkeys(r["method"] for r in rows))
    table: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        key = (r["method"], r["nm"] or f"{r['target_sparsity']:g}")
        table.setdefault(key, []).append(r["perplexity_ratio"])
    dense = {r["seed"]: r["perplexity_dense"] for r in rows}
    lines = [
        "# LM comparison",
        "",
        "Dense test perplexity per seed: "
        + ", ".join(f"seed {s}: {p:.4f}" for s, p in sorted(dense.items())),
        "",
        "Test perplexity / dense (mean over seeds):",
        "",
        "| method | " + " | ".join(settings) + " |",
        "|---|" + "---|" * len(settings),
    ]
    for label in labels:
        vals = [table.get((label, s)) for s in settings]
        lines.append(
            f"| {label} | " + " | ".join(f"{sum(v) / len(v):.3f}" if v else "" for v in vals) + " |"
        )
    for method in ("magnitude", "wanda", "sparsegpt"):
        lines.append(
            f"| anchor: {method} (LLaMA-2-7B) | "
            + " | ".join(str(ANCHOR.get((method, s), "")) for s in settings)
            + " |"
        )
    lines += structured_table([r for r in every if r.get("granularity") == "head"])
    md = out / "lm_report.md"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for label in labels:
            pts = sorted(
                (r["target_sparsity"], r["perplexity"])
                for r in rows
                if r["method"] == label and not r["nm"]
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=label)
        if dense:
            ax.axhline(sum(dense.values()) / len(dense), color="gray", ls="--", label="dense")
        ax.set_xlabel("sparsity of the blocks' linear layers")
        ax.set_ylabel("test perplexity")
        ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "lm_perplexity.png", dpi=100)
        plt.close(fig)
        lines += ["", "![perplexity vs sparsity](lm_perplexity.png)"]
    except ImportError:  # matplotlib is a dependency; a broken install only loses the plot
        pass
    md.write_text("\n".join(lines) + "\n")
    return md


def structured_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines for the structured (head / MLP-unit) rows: per method and fraction,
    the mean perplexity ratio, parameters removed and the interleaved speed-up (median of
    the per-seed medians, with the lowest and highest per-seed IQR bound)."""
    if not rows:
        return []
    cells: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["method"], r["target_sparsity"]), []).append(r)
    lines = [
        "",
        "Structured (whole heads and MLP units removed, the same fraction of each per block;",
        "the shrunk model measured; tokens/s timed interleaved with the dense model):",
        "",
        "| method | fraction removed | perplexity / dense | parameters removed | "
        "speed-up (IQR) | tokens/s |",
        "|---|---|---|---|---|---|",
    ]
    for (method, frac), rs in sorted(cells.items()):
        ratio = sum(r["perplexity_ratio"] for r in rs) / len(rs)
        removed = sum(r["params_removed_fraction"] for r in rs) / len(rs)
        speed = sorted(r["speedup"] for r in rs)[len(rs) // 2]
        low = min(r["speedup_iqr"][0] for r in rs)
        high = max(r["speedup_iqr"][1] for r in rs)
        tps = sorted(r["tokens_per_s"] for r in rs)[len(rs) // 2]
        lines.append(
            f"| {method} | {frac:g} | {ratio:.3f} | {removed:.1%} | "
            f"{speed:.2f}x ({low:.2f}-{high:.2f}) | {tps:,.0f} |"
        )
    return lines

"""Does the default comparison rank the methods as the full comparison does?

Reads two finished comparison directories (``prunekit compare`` output), or runs them
first with ``--run``, and prints, per target sparsity, both rankings of the methods
they share (mean test accuracy over seeds, rank 1 = most accurate) and Spearman's rank
correlation between them:

    rho = Pearson correlation of the two rank vectors (ties get their average rank),

which is ``1 - 6 sum d_i^2 / (n (n^2 - 1))`` when there are no ties. Also printed: the
correlation of the overall rankings (each method ranked by its mean rank over the
sparsities), per side, the methods whose accuracy is within noise of the best (see
``prunekit.experiments.claims``), the pairs the two sides order the opposite way (and
whether either side orders them beyond its noise), and the methods run on the default
side only. One-shot rows (no fine-tuning) and the dense row are
left out: the question is the ranking of the fine-tuned methods.

Usage:
  python benchmarks/rank_agreement.py DEFAULT_DIR FULL_DIR [FULL_DIR ...]
      [--sparsities 0.9,0.95,0.98] [--write benchmarks/results/rank_agreement.md]
      [--note TEXT] [--previous REF]
      # REF: quote the headline of the results file as it stood at that git revision
  python benchmarks/rank_agreement.py DEFAULT_DIR FULL_DIR --run [--only M1,M2,...]
      [--full-only M1,...] [--full-seeds 0,1]   # run both comparisons first (resumable)
  --full-seeds also selects the seeds read from FULL_DIR (default 0,1).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from prunekit.experiments import claims
from prunekit.experiments.store import read_rows
from prunekit.experiments.summary import ok


def average_ranks(values: dict[str, float]) -> dict[str, float]:
    """Rank 1 = highest value; tied values share the average of their ranks."""
    order = sorted(values, key=lambda m: -values[m])
    ranks: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: dict[str, float], b: dict[str, float]) -> float:
    """Spearman's rho of two scorings of the same keys (Pearson of average ranks)."""
    keys = sorted(a)
    ra, rb = average_ranks(a), average_ranks(b)
    x, y = [ra[k] for k in keys], [rb[k] for k in keys]
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxy = sum((p - mx) * (q - my) for p, q in zip(x, y, strict=True))
    sxx = sum((p - mx) ** 2 for p in x)
    syy = sum((q - my) ** 2 for q in y)
    return sxy / (sxx * syy) ** 0.5 if sxx and syy else float("nan")


def finished(outs: Path | list[Path], seeds: list[int] | None = None) -> list[dict]:
    """The finished rows of one or more comparison directories (one per seed, say: a
    directory is locked by the comparison writing it), of these seeds only (None: all).
    A cell found in two of them is an error: it would count twice."""
    rows = [r for out in ([outs] if isinstance(outs, Path) else outs) for r in ok(read_rows(out))]
    rows = [r for r in rows if seeds is None or r["seed"] in seeds]
    seen: set[str] = set()
    for r in rows:
        if r["cell_id"] in seen:
            raise SystemExit(f"error: cell {r['cell_id']} is in more than one directory")
        seen.add(r["cell_id"])
    return rows


def table(
    out: Path | list[Path], seeds: list[int] | None = None
) -> tuple[dict[tuple[str, float], list[float]], list[dict]]:
    """(method, sparsity) -> accuracies over seeds, of the fine-tuned method rows."""
    rows = [
        r
        for r in finished(out, seeds)
        if r["kind"] != "dense" and claims.setting(r) == "fine-tuned"
    ]
    for r in rows:  # rows stored before result.json recorded it: count the test split
        if r.get("test_examples") is None:
            r["test_examples"] = test_examples(r)
    acc: dict[tuple[str, float], list[float]] = defaultdict(list)
    for r in rows:
        acc[(r["method"], r["sparsity"])].append(float(r["accuracy"]))
    return acc, rows


@functools.cache
def _test_size(dataset: str, seed: int, data_dir, limit, test_limit, val_fraction) -> int:
    from prunekit import RunConfig
    from prunekit.pipeline import dataset_for

    cfg = RunConfig(
        dataset=dataset,
        seed=seed,
        data_dir=data_dir,
        limit=limit,
        test_limit=test_limit,
        val_fraction=val_fraction,
    )
    return len(dataset_for(cfg).test)


def test_examples(row: dict) -> int:
    h = row["hyperparams"]
    return _test_size(
        row["dataset"], row["seed"], None, h.get("limit"), h.get("test_limit"), h["val_fraction"]
    )


def budget(out: Path | list[Path], seeds: list[int] | None = None) -> str:
    rows = finished(out, seeds)
    hyper = rows[0]["hyperparams"] if rows else {}
    seeds = sorted({r["seed"] for r in rows})
    span = max(r["finished_at"] for r in rows) - min(
        r["finished_at"] - (r["wall_seconds"] or 0) for r in rows
    )
    return (
        f"{hyper.get('epochs')} dense + {hyper.get('finetune_epochs')} sparsify epochs, "
        f"seed(s) {', '.join(map(str, seeds))}, {len(rows)} cells in {span / 60:.0f} min "
        f"(first cell's start to last row)"
    )


PAIR_KEYS = (
    "pairs",
    "claimed",
    "confirmed",
    "contradicted",
    "discordant",
    "discordant_default",
    "discordant_full",
)


def pair_claims(d: dict[str, claims.Estimate], f: dict[str, claims.Estimate]) -> dict:
    """What the default side may claim about each pair of methods (a gap beyond noise),
    and whether the full side's means agree (same order) or contradict it beyond noise.

    Also the pairs whose means the two sides order the opposite way (``discordant``: what
    lowers rho) and how many of those each side orders beyond its own noise: where both
    counts are 0, every disagreement of the rankings is a swap within noise."""
    names = sorted(d)
    out = dict.fromkeys(PAIR_KEYS, 0)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out["pairs"] += 1
            real_d = claims.gap_is_real(d[a].mean, d[a].se, d[b].mean, d[b].se)
            real_f = claims.gap_is_real(f[a].mean, f[a].se, f[b].mean, f[b].se)
            if (d[a].mean - d[b].mean) * (f[a].mean - f[b].mean) < 0:
                out["discordant"] += 1
                out["discordant_default"] += real_d
                out["discordant_full"] += real_f
            if not real_d:
                continue
            out["claimed"] += 1
            same = (d[a].mean - d[b].mean) * (f[a].mean - f[b].mean) > 0
            out["confirmed"] += same
            out["contradicted"] += not same and real_f
    return out


def side_only(own: dict[str, claims.Estimate], shared: list[str], sparsity: float) -> list[dict]:
    """The methods one side ran at this sparsity that the other did not: each one's
    accuracy, its rank among all of this side's methods, the methods with exactly its
    accuracy and those within noise of it (what a stated reason to leave it out rests on)."""
    ranks = average_ranks({m: e.mean for m, e in own.items()})
    return [
        {
            "method": m,
            "sparsity": sparsity,
            "accuracy": own[m].mean,
            "rank": ranks[m],
            "of": len(own),
            "same": sorted(o for o in own if o != m and own[o].mean == own[m].mean),
            "within_noise": sorted(
                o
                for o in own
                if o != m and not claims.gap_is_real(own[m].mean, own[m].se, own[o].mean, own[o].se)
            ),
        }
        for m in sorted(set(own) - set(shared))
    ]


def compare_sides(
    default_dir: Path,
    full_dir: Path | list[Path],
    sparsities: list[float],
    full_seeds: list[int] | None = None,
) -> dict:
    acc_d, rows_d = table(default_dir)
    acc_f, rows_f = table(full_dir, full_seeds)
    est_d, est_f = claims.estimates(rows_d), claims.estimates(rows_f)
    per_sparsity = []
    default_only: list[dict] = []
    mean_rank: dict[str, dict[str, list[float]]] = {"default": {}, "full": {}}
    for s in sparsities:
        shared = sorted({m for (m, ss) in acc_d if ss == s} & {m for (m, ss) in acc_f if ss == s})
        if len(shared) < 2:
            continue
        d = {m: statistics.fmean(acc_d[(m, s)]) for m in shared}
        f = {m: statistics.fmean(acc_f[(m, s)]) for m in shared}
        rd, rf = average_ranks(d), average_ranks(f)
        for side, r in (("default", rd), ("full", rf)):
            for m, v in r.items():
                mean_rank[side].setdefault(m, []).append(v)
        pairs = pair_claims({m: est_d[(m, s)] for m in shared}, {m: est_f[(m, s)] for m in shared})
        default_only += side_only({m: e for (m, ss), e in est_d.items() if ss == s}, shared, s)
        per_sparsity.append(
            {
                "sparsity": s,
                "pairs": pairs,
                "methods": shared,
                "default": d,
                "full": f,
                "rank_default": rd,
                "rank_full": rf,
                "rho": spearman(d, f),
                "top_default": claims.top_group({m: est_d[(m, s)] for m in shared}),
                "top_full": claims.top_group({m: est_f[(m, s)] for m in shared}),
            }
        )
    common = sorted(set(mean_rank["default"]) & set(mean_rank["full"]))
    overall_d = {m: -statistics.fmean(mean_rank["default"][m]) for m in common}
    overall_f = {m: -statistics.fmean(mean_rank["full"][m]) for m in common}
    rhos = [p["rho"] for p in per_sparsity]
    return {
        "per_sparsity": per_sparsity,
        "default_only": default_only,
        "overall_default": average_ranks(overall_d),
        "overall_full": average_ranks(overall_f),
        "rho_overall": spearman(overall_d, overall_f) if len(common) > 1 else float("nan"),
        "rho_mean": statistics.fmean(rhos) if rhos else float("nan"),
        **{k: sum(p["pairs"][k] for p in per_sparsity) for k in PAIR_KEYS},
        "rho_min": min(rhos) if rhos else float("nan"),
        "budget_default": budget(default_dir),
        "budget_full": budget(full_dir, full_seeds),
    }


def discordance(q: dict) -> str:
    """One line: the pairs the two sides order the opposite way, and how many of them
    either side orders beyond its noise."""
    return (
        f"Pairs whose means the two sides order the opposite way: {q['discordant']}, of "
        f"which beyond the default side's noise: {q['discordant_default']}, beyond the "
        f"full side's noise: {q['discordant_full']}."
    )


RESULTS = "benchmarks/results/rank_agreement.md"


def previous_summary(text: str, ref: str, path: str = RESULTS) -> str:
    """A paragraph quoting an earlier version of the results file (read from git, never
    typed): its date, the full side's methods, its headline and its pairs line."""
    lines = text.splitlines()

    def first(prefix: str) -> str:
        return next((x.strip() for x in lines if x.startswith(prefix)), "(not recorded)")

    full_cmd = next((x for x in lines if x.startswith("Command:") and "--full" in x), "")
    only = re.search(r"--only (\S+)", full_cmd)
    return (
        f"Previous measurement (`git show {ref}:{path}`), which this file replaces: "
        f"{first('Date:').removesuffix('  ')}; methods ranked: "
        f"{only.group(1) if only else '(not recorded)'}.  \n"
        f"Its headline: {first('**Spearman').strip('*')}  \n"
        f"{first('Pairs of methods the default side orders')}"
    )


def read_previous(ref: str, path: str = RESULTS) -> str:
    root = Path(__file__).resolve().parents[1]
    # the commit that wrote the version in force at ref, so the quote names its origin
    commit = subprocess.run(
        ["git", "log", "-1", "--format=%h", ref, "--", path],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not commit:
        raise SystemExit(f"error: {path} does not exist at {ref}")
    text = subprocess.run(
        ["git", "show", f"{commit}:{path}"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    return previous_summary(text, commit, path)


def headline(res: dict) -> str:
    return (
        f"Spearman rank correlation: mean over sparsities {res['rho_mean']:.3f} "
        f"(lowest {res['rho_min']:.3f}); of the overall rankings (mean rank over the "
        f"sparsities) {res['rho_overall']:.3f}."
    )


def claims_line(res: dict) -> str:
    return (
        f"Pairs of methods the default side orders beyond noise (what its report may "
        f"claim): {res['claimed']} of {res['pairs']}; the full side agrees on "
        f"{res['confirmed']} and contradicts {res['contradicted']} beyond its own noise."
    )


def other_seeds(res: dict, seeds: list[int]) -> str:
    """The headline again with another set of the full side's seeds, and per sparsity its
    rho and the pairs swapped (beyond the default / the full side's noise)."""
    per = "; ".join(
        f"{p['sparsity']:g}: rho {p['rho']:.3f}, {p['pairs']['discordant']} swapped "
        f"({p['pairs']['discordant_default']} / {p['pairs']['discordant_full']})"
        for p in res["per_sparsity"]
    )
    return (
        f"With the full side's seeds {', '.join(map(str, seeds))} ({res['budget_full']}): "
        f"{headline(res)} {claims_line(res)} {discordance(res)} Per sparsity: {per} "
        f"(pairs the two sides order the opposite way; in brackets those beyond the default "
        f"side's / the full side's noise)."
    )


TITLE = "Rank agreement: default comparison vs --full"


def markdown(
    res: dict,
    commands: list[str],
    note: str,
    previous: str = "",
    also: str = "",
    title: str = TITLE,
) -> str:
    load = os.getloadavg()
    lines = [
        f"# {title}",
        "",
        *[f"Command: `{c}`  " for c in commands],
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Default side: {res['budget_default']}; full side: {res['budget_full']}  ",
        f"Machine: {os.cpu_count()} CPU cores, shared; load average when this file was written "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min).",
        "",
        *([note, ""] if note else []),
        # the headline comes first: benchmarks/issue15_targets.py reads the first one
        f"**{headline(res)}**",
        "",
        f"{claims_line(res)}  ",
        discordance(res),
        "",
        *([also, ""] if also else []),
        *([previous, ""] if previous else []),
    ]
    for p in res["per_sparsity"]:
        lines += [
            f"## Sparsity {p['sparsity']:g}: rho = {p['rho']:.3f}",
            "",
            "| method | default acc. | default rank | full acc. | full rank |",
            "|---|---|---|---|---|",
        ]
        for m in sorted(p["methods"], key=lambda m: p["rank_full"][m]):
            lines.append(
                f"| {m} | {p['default'][m]:.4f} | {p['rank_default'][m]:g} | "
                f"{p['full'][m]:.4f} | {p['rank_full'][m]:g} |"
            )
        q = p["pairs"]
        lines += [
            "",
            f"Within noise of the best ({claims.Z:g} standard errors): default "
            f"{', '.join(p['top_default'])}; full {', '.join(p['top_full'])}.  ",
            f"Pairs of methods: {q['pairs']}; ordered beyond noise by the default side: "
            f"{q['claimed']}, of which the full side's means order the same way: "
            f"{q['confirmed']}, and the opposite way beyond its noise: {q['contradicted']}.  ",
            discordance(q),
            "",
        ]
    if res["default_only"]:
        lines += [
            "## Run on the default side only",
            "",
            "Rank among all the default side's fine-tuned methods at that sparsity; the "
            "methods with exactly the same accuracy, and those within noise of it.",
            "",
            "| method | sparsity | default acc. | default rank | same accuracy as | "
            "within noise of |",
            "|---|---|---|---|---|---|",
        ]
        for o in res["default_only"]:
            lines.append(
                f"| {o['method']} | {o['sparsity']:g} | {o['accuracy']:.4f} | "
                f"{o['rank']:g} of {o['of']} | {', '.join(o['same']) or '-'} | "
                f"{', '.join(o['within_noise']) or 'none'} |"
            )
        lines.append("")
    lines += ["## Overall ranking (mean rank over the sparsities)", ""]
    lines += ["| method | default rank | full rank |", "|---|---|---|"]
    for m in sorted(res["overall_full"], key=lambda m: res["overall_full"][m]):
        lines.append(f"| {m} | {res['overall_default'][m]:g} | {res['overall_full'][m]:g} |")
    return "\n".join(lines) + "\n"


def run_side(out: Path, only: str, sparsities: str, *, full: bool, seeds: str | None) -> str:
    cmd = [sys.executable, "-m", "prunekit", "compare", "--only", only]
    cmd += ["--sparsities", sparsities, "--out", str(out), "--quiet", "--no-report"]
    if full:
        cmd.append("--full")
    if seeds:
        cmd += ["--seeds", seeds]
    subprocess.run(cmd, check=True)
    return " ".join(["prunekit", *cmd[3:]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("default_dir", type=Path)
    ap.add_argument("full_dir", type=Path, nargs="+", help="one or more (e.g. one per seed)")
    ap.add_argument("--sparsities", default="0.9,0.95,0.98")
    ap.add_argument("--run", action="store_true", help="run both comparisons first")
    ap.add_argument("--only", default="magnitude,gmp,l0,l1,gaussian,saltpepper,dpf,wanda,sparsegpt")
    ap.add_argument("--full-only", default=None, help="methods of the full side (default: --only)")
    ap.add_argument(
        "--full-seeds",
        default="0,1",
        help="the full side's seeds: run with --run, and the only ones read",
    )
    ap.add_argument(
        "--also-full-seeds",
        default=None,
        help="also give the headline with these seeds of the full side (e.g. 0,1,2)",
    )
    ap.add_argument("--write", type=Path, default=None, help="also write this Markdown file")
    ap.add_argument("--command", action="append", default=[], help="commands to record")
    ap.add_argument("--note", default="")
    ap.add_argument("--title", default=TITLE, help="the Markdown file's heading")
    ap.add_argument(
        "--previous",
        default=None,
        metavar="REF",
        help="quote the headline of the --write file (default: rank_agreement.md) as it "
        "stood at this git revision (the version replaced)",
    )
    args = ap.parse_args()
    sparsities = [float(s) for s in args.sparsities.split(",")]
    commands = list(args.command)
    if args.run and len(args.full_dir) > 1:
        ap.error("--run writes one FULL_DIR")
    if args.run:
        commands.append(
            run_side(args.default_dir, args.only, args.sparsities, full=False, seeds=None)
        )
        commands.append(
            run_side(
                args.full_dir[0],
                args.full_only or args.only,
                args.sparsities,
                full=True,
                seeds=args.full_seeds,
            )
        )
    full_seeds = [int(x) for x in args.full_seeds.split(",")]
    res = compare_sides(args.default_dir, args.full_dir, sparsities, full_seeds)
    previous = ""
    if args.previous:
        root = Path(__file__).resolve().parents[1]
        path = args.write.resolve().relative_to(root).as_posix() if args.write else RESULTS
        previous = read_previous(args.previous, path)
    also = ""
    if args.also_full_seeds:
        seeds = [int(x) for x in args.also_full_seeds.split(",")]
        also = other_seeds(compare_sides(args.default_dir, args.full_dir, sparsities, seeds), seeds)
    text = markdown(res, commands, args.note, previous, also, args.title)
    print(text)
    if args.write:
        args.write.write_text(text)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()

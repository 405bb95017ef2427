"""LM pruning benchmark: gpt-tiny on python-stdlib, magnitude / Wanda / SparseGPT at
0.5 / 0.7 / 0.8 / 0.9 and 2:4 / 4:8, perplexity as a ratio to dense, per seed, next to
the Wanda paper's LLaMA-2-7B ratios; OWL and a short masked recovery fine-tune for the
targets; and the peak memory of pruning at two depths.

    nice -n 5 python benchmarks/lm_pruning.py --seeds 0 1 --out benchmarks/results/lm_pruning.md

or in parts (one process per seed and one for memory, then merged):

    python benchmarks/lm_pruning.py --part quality --seeds 0 --out /tmp/lm_seed0.json
    python benchmarks/lm_pruning.py --part quality --seeds 1 --out /tmp/lm_seed1.json
    python benchmarks/lm_pruning.py --part memory --out /tmp/lm_memory.json
    python benchmarks/lm_pruning.py --merge /tmp/lm_seed0.json /tmp/lm_seed1.json \
        /tmp/lm_memory.json --out benchmarks/results/lm_pruning.md

``--memory-only`` runs just the memory part. Each memory cell runs in a fresh process
(so peaks do not mix): it builds a randomly initialised gpt-tiny-shaped model of the
given depth (width 256, MLP 1024, so the model's own memory is visible), records the
resident memory (VmRSS), then prunes it while a thread samples VmRSS every 2 ms; the
figure is peak minus the resident memory before pruning, i.e. what pruning needs beyond
the dense model and its calibration tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from prunekit.lm import LMConfig, dense_for, run_lm
from prunekit.lm.compare import ANCHOR, ANCHOR_DENSE

METHODS = ("magnitude", "wanda", "sparsegpt")
SETTINGS = ("0.5", "0.7", "0.8", "0.9", "2:4", "4:8")


def setting_args(setting: str) -> dict:
    if ":" in setting:
        n, m = setting.split(":")
        return {"granularity": "nm", "method_args": {"n": int(n), "m": int(m)}}
    return {"sparsity": float(setting)}


def quality(
    seeds: list[int], recovery_steps: int, cells_kind: str = "grid", partial: Path | None = None
) -> tuple[dict, dict]:
    """``cells_kind="grid"``: every method x setting, OWL rows, recovery rows;
    ``"recovery"``: only uniform SparseGPT + recovery at 0.8 / 0.9 (a second process, run
    after the grid showed that OWL's allocation hurts at this depth)."""
    rows: dict[tuple[str, str], list[float]] = {}
    dense_info: dict[int, dict] = {}
    torch.set_num_threads(1)
    for seed in seeds:
        base = LMConfig(seed=seed)
        t0 = time.perf_counter()
        dense = dense_for(base)
        dense_info[seed] = {
            "perplexity": dense[4]["perplexity"],
            "val_perplexity": dense[4]["val_perplexity"],
            "train_seconds": dense[3],
            "params": dense[4]["params_total"],
            "wall_seconds": time.perf_counter() - t0,
        }
        print(
            f"seed {seed}: dense test ppl {dense[4]['perplexity']:.4f} ({dense[3]:.0f} s training)",
            flush=True,
        )
        if cells_kind == "grid":
            cells = [(m, s, {}) for m in METHODS for s in SETTINGS]
            cells += [(m, s, {"owl": True}) for m in ("wanda", "sparsegpt") for s in ("0.8", "0.9")]
            cells += [("sparsegpt", s, {"owl": True, "recovery": True}) for s in ("0.8", "0.9")]
            cells += [("sparsegpt", "2:4", {"recovery": True})]
        else:
            cells = [("sparsegpt", s, {"recovery": True}) for s in ("0.8", "0.9")]
        for method, setting, extra in cells:
            args = setting_args(setting)
            margs = dict(args.pop("method_args", {}))
            if extra.get("owl"):
                margs["owl"] = True
            cfg = LMConfig(
                **{
                    **base.to_dict(),
                    **args,
                    "method": method,
                    "method_args": margs,
                    "recovery_steps": recovery_steps if extra.get("recovery") else 0,
                }
            )
            r = run_lm(cfg, dense=dense).result
            label = (
                method
                + (f" + OWL λ={r['owl_lambda']:g}" if extra.get("owl") else "")
                + (f" + recovery {recovery_steps} steps" if extra.get("recovery") else "")
            )
            rows.setdefault((label, setting), []).append(r["perplexity_ratio"])
            print(
                f"  {label:36s} {setting:4s} ppl {r['perplexity']:.4f} ratio "
                f"{r['perplexity_ratio']:.4f} sparsity {r['achieved_sparsity']:.4f} "
                f"prune {r['train_seconds']['prune']:.1f} s",
                flush=True,
            )
            if partial is not None:  # every finished cell survives a later crash
                partial.write_text(
                    json.dumps(
                        {
                            "rows": {f"{k[0]}|{k[1]}": v for k, v in rows.items()},
                            "dense": dense_info,
                        }
                    )
                )
    return rows, dense_info


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def memory_cell(method: str, depth: int) -> dict:
    """One (method, depth) cell, in this process (called in a fresh subprocess)."""
    import gc

    from prunekit.lm.models import gpt_tiny
    from prunekit.lm.prune import LMPruneSpec, prune_lm

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = gpt_tiny(256, n_layer=depth, n_embd=256, n_head=4, n_inner=1024).eval()
    calib = torch.randint(0, 256, (64, 128), generator=torch.Generator().manual_seed(0))
    gc.collect()
    before = _rss_mb()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.002)

    t = threading.Thread(target=sample)
    t.start()
    t0 = time.perf_counter()
    prune_lm(model, LMPruneSpec(method, 0.5), calib, batch_size=8)
    seconds = time.perf_counter() - t0
    done.set()
    t.join()
    params = sum(p.numel() for p in model.parameters())
    return {
        "method": method,
        "depth": depth,
        "params": params,
        "model_mb": params * 4 / 2**20,
        "rss_before_mb": before,
        "extra_peak_mb": peak[0] - before,
        "seconds": seconds,
    }


def memory(depths: list[int]) -> list[dict]:
    out = []
    for method in ("wanda", "sparsegpt"):
        for depth in depths:
            p = subprocess.run(
                [sys.executable, __file__, "--memory-cell", method, str(depth)],
                capture_output=True,
                text=True,
                check=True,
            )
            cell = json.loads(p.stdout.strip().splitlines()[-1])
            print(
                f"memory {method} depth {depth}: model {cell['model_mb']:.1f} MB, "
                f"extra peak {cell['extra_peak_mb']:.1f} MB",
                flush=True,
            )
            out.append(cell)
    return out


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def _mean(rows: dict, label: str, setting: str) -> float | None:
    v = rows.get((label, setting))
    return statistics.mean(v) if v else None


def ordering(rows: dict) -> list[str]:
    """The measured order of the three methods per setting beside the anchor's, and why
    they can differ (the measured figures are inserted, not typed)."""
    out = ["Ordering (best first, mean ratio over seeds):", ""]
    out += ["| setting | measured | anchor |", "|---|---|---|"]
    for s in SETTINGS:
        got = sorted(
            (m for m in METHODS if _mean(rows, m, s) is not None), key=lambda m: _mean(rows, m, s)
        )
        anchor = sorted((m for m in METHODS if (m, s) in ANCHOR), key=lambda m: ANCHOR[(m, s)])
        out.append(
            f"| {s} | "
            + " < ".join(f"{m} {_mean(rows, m, s):.3f}" for m in got)
            + " | "
            + (" < ".join(f"{m} {ANCHOR[(m, s)]}" for m in anchor) or "-")
            + " |"
        )
    out += [
        "",
        'Pairwise, per setting ("within the seed spread" when the per-seed ranges overlap):',
        "",
    ]
    for s in SETTINGS:
        parts = []
        for a, b in (("wanda", "magnitude"), ("sparsegpt", "wanda")):
            va, vb = rows.get((a, s)), rows.get((b, s))
            if not va or not vb:
                continue
            if max(va) < min(vb):
                parts.append(f"{a} ahead of {b}")
            elif max(vb) < min(va):
                parts.append(f"{b} ahead of {a}")
            else:
                parts.append(f"{a} and {b} within the seed spread")
        out.append(f"- {s}: " + "; ".join(parts))
    out += [
        "",
        "Where this differs from the anchor, and the likely reasons (hypotheses, not tested "
        "here): Wanda's large margin over magnitude on LLaMA-2 comes from the few input "
        "features of large LMs whose activations are orders of magnitude above the rest "
        "(emergent outlier features, Dettmers et al. 2022, seen from billions of "
        "parameters on): weighting |W_ij| by ||X_j|| keeps the weights that read them, "
        "magnitude pruning removes some of them and the model breaks (2.91x at 0.5). A "
        "0.84 M-parameter byte-level GPT-2 trained for minutes is not expected to have "
        "such features, so "
        "||X_j|| re-weights columns only mildly and Wanda stays close to magnitude where "
        "little is removed; its activation weighting pays off only when most weights go. "
        "SparseGPT changes the weights it keeps to reconstruct each layer's output on the "
        "calibration inputs; with 128-512 inputs per layer and 8,192 calibration tokens "
        "its Hessian is well determined, which may be why it is ahead of Wanda here while "
        "the two tie at 0.5 on LLaMA-2.",
    ]
    owl = {
        k: statistics.mean(v) for k, v in rows.items() if "OWL" in k[0] and "recovery" not in k[0]
    }
    if owl:
        worst = max(owl.items(), key=lambda kv: kv[1])
        out += [
            "",
            "OWL makes every row it touches worse here ("
            + ", ".join(f"{k[0]} at {k[1]}: {v:.3f}" for k, v in sorted(owl.items()))
            + f"; worst {worst[0][0]} at {worst[0][1]}). Likely reason (not tested here): with "
            "4 blocks the min-max normalisation of the outlier ratios always sends one block "
            "to s + λ (0.98 at s = 0.9, λ = 0.08), which a 4-block model does not survive; "
            "OWL was designed and its λ tuned on LLMs of 32-80 layers with outlier features.",
        ]
    return out


TARGETS = (("0.9", 1.3), ("0.8", 1.1), ("2:4", 1.01))


def targets(rows: dict) -> list[str]:
    """Issue 17's targets: the best measured variant (any row) per setting."""
    out = ["Targets (best of every row, mean over seeds):", ""]
    for s, limit in TARGETS:
        cands = [(statistics.mean(v), label) for (label, ss), v in rows.items() if ss == s]
        if not cands:
            continue
        best, label = min(cands)
        verdict = "met" if best <= limit else "NOT met"
        out.append(f"- {s}: target <= {limit}x dense; best {label} {best:.3f}x: {verdict}")
    return out


def report(rows: dict, dense_info: dict, mem: list[dict], args: argparse.Namespace) -> str:
    cmd = "nice -n 5 python benchmarks/lm_pruning.py " + " ".join(sys.argv[1:])
    if args.merge:  # the parts ran as separate processes (the script's docstring)
        cmd = "; ".join(
            [
                f"nice -n 5 python benchmarks/lm_pruning.py --part quality --seeds {s} "
                f"--out /tmp/lm_seed{s}.json"
                for s in dense_info
            ]
            + [
                f"nice -n 5 python benchmarks/lm_pruning.py --part quality --cells recovery "
                f"--seeds {s} --out /tmp/lm_rec{s}.json"
                for s in dense_info
                if any(k[0] == f"sparsegpt + recovery {args.recovery_steps} steps" for k in rows)
            ]
            + (
                [
                    "nice -n 5 python benchmarks/lm_pruning.py --part memory --out /tmp/lm_memory.json"
                ]
                if mem
                else []
            )
            + [f"python benchmarks/lm_pruning.py --merge /tmp/lm_*.json --out {args.out}"]
        )
    lines = [
        "# LM pruning: gpt-tiny on python-stdlib (issue 17)",
        "",
        f"Command: `{cmd}` (1 thread). gpt-tiny: GPT-2, 4 blocks, width 128, byte "
        "vocabulary, context 128, trained "
        f"{LMConfig().train_steps} AdamW steps of {LMConfig().batch_size} windows; "
        "calibration: 64 windows of 128 tokens from the training split; perplexity on "
        f"{LMConfig().eval_windows} windows of the test split. Ratios are pruned / dense "
        "test perplexity of the same seed's dense model; mean (min-max) over seeds "
        f"{', '.join(map(str, dense_info))}.",
        "",
        "Training seconds are wall-clock on the shared 2-core machine while other jobs "
        "ran (load average 12-24); training is deterministic per seed, every part "
        "retrains the same dense model.",
        "",
        "| seed | dense test ppl | dense val ppl | params | training s |",
        "|---|---|---|---|---|",
    ]
    for seed, d in dense_info.items():
        lines.append(
            f"| {seed} | {d['perplexity']:.4f} | {d['val_perplexity']:.4f} | {d['params']:,} "
            f"| {d['train_seconds']:.0f} |"
        )
    labels = list(dict.fromkeys(label for label, _ in rows))
    lines += ["", "| method | " + " | ".join(SETTINGS) + " |", "|---|" + "---|" * len(SETTINGS)]
    for label in labels:
        cells = [fmt(rows[(label, s)]) if (label, s) in rows else "" for s in SETTINGS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"Anchor (Wanda paper, LLaMA-2-7B, WikiText, dense {ANCHOR_DENSE}):", ""]
    lines += ["| method | 0.5 | 2:4 |", "|---|---|---|"]
    for m in METHODS:
        lines.append(f"| {m} | {ANCHOR[(m, '0.5')]} | {ANCHOR[(m, '2:4')]} |")
    if rows:
        lines += ["", *ordering(rows), "", *targets(rows)]
    if mem:
        lines += [
            "",
            "Peak memory of pruning beyond the dense model (VmRSS sampled every 2 ms, fresh "
            "process per cell; width 256, MLP 1024, 64 x 128 calibration tokens, sparsity 0.5):",
            "",
            "| method | blocks | params | model MB (fp32) | extra peak MB | seconds |",
            "|---|---|---|---|---|---|",
        ]
        for c in mem:
            lines.append(
                f"| {c['method']} | {c['depth']} | {c['params']:,} | {c['model_mb']:.1f} "
                f"| {c['extra_peak_mb']:.1f} | {c['seconds']:.1f} |"
            )
        lines.append("")
        for method in ("wanda", "sparsegpt"):
            cs = sorted((c for c in mem if c["method"] == method), key=lambda c: c["depth"])
            if len(cs) >= 2:
                a, b = cs[0], cs[-1]
                lines.append(
                    f"- {method}: from {a['depth']} to {b['depth']} blocks the model grows by "
                    f"{b['model_mb'] - a['model_mb']:.1f} MB, the memory pruning needs beyond it grows "
                    f"by {b['extra_peak_mb'] - a['extra_peak_mb']:.1f} MB "
                    f"({a['extra_peak_mb']:.1f} -> {b['extra_peak_mb']:.1f} MB)."
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--recovery-steps", type=int, default=60)
    ap.add_argument("--depths", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--part", choices=["all", "quality", "memory"], default="all")
    ap.add_argument("--cells", choices=["grid", "recovery"], default="grid")
    ap.add_argument("--merge", type=Path, nargs="+", help="JSON parts to merge into --out")
    ap.add_argument("--memory-cell", nargs=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.memory_cell:
        print(json.dumps(memory_cell(args.memory_cell[0], int(args.memory_cell[1]))))
        return
    rows: dict = {}
    dense_info: dict = {}
    mem: list = []
    if args.merge:  # parts run as separate processes (one per seed, one for memory)
        for part in args.merge:
            data = json.loads(part.read_text())
            for k, v in data.get("rows", {}).items():
                label, setting = k.split("|")
                if "+ OWL" in label and "λ" not in label:  # parts run before λ was in labels
                    label = label.replace("+ OWL", "+ OWL λ=0.08")  # the default they used
                rows.setdefault((label, setting), []).extend(v)
            dense_info.update({int(k): v for k, v in data.get("dense", {}).items()})
            mem += data.get("memory", [])
    else:
        if args.part in ("all", "quality"):
            rows, dense_info = quality(args.seeds, args.recovery_steps, args.cells, args.out)
        if args.part in ("all", "memory"):
            mem = memory(args.depths)
    payload = {
        "rows": {f"{k[0]}|{k[1]}": v for k, v in rows.items()},
        "dense": dense_info,
        "memory": mem,
    }
    if args.out and not args.merge and args.part != "all":
        args.out.write_text(json.dumps(payload, indent=2))  # a part: JSON only
        return
    text = report(rows, dense_info, mem, args)
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()

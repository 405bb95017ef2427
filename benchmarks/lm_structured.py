"""Structured LM pruning benchmark: gpt-tiny (python-stdlib) with whole attention heads
and MLP units removed by magnitude-struct / wanda-struct / flap at several fractions,
one-shot and with a short recovery fine-tune of the shrunk model; perplexity as a ratio
to dense and the measured tokens/s speed-up of the shrunk model over the dense one
(timed interleaved in the same loop, one thread, median and IQR over the rounds).

    nice -n 5 env OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/lm_structured.py \\
        --seeds 0 1 --levels 0.25 0.5 0.75 --recovery-steps 50 \\
        --out benchmarks/results/lm_structured.md

The dense gpt-tiny of each seed is trained exactly as ``prunekit compare --task lm``
trains it (``LMConfig`` defaults, 400 AdamW steps) and kept in ``--cache`` (default
``/tmp/prunekit-bench/lm-dense``; safetensors of the state dict), so a rerun skips the
training. A speed-up is called real only when, for every seed, the lower quartile of
the per-round dense/pruned ratios is above 1.05; otherwise "within noise".
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from prunekit.lm import LMConfig, run_lm
from prunekit.lm.measure import measure
from prunekit.lm.train import prepare, train_dense_steps

METHODS = ("magnitude-struct", "wanda-struct", "flap")


def dense_model(cfg: LMConfig, cache: Path) -> tuple:
    """The ``dense`` tuple ``run_lm`` takes: trained once per seed, then reloaded."""
    from safetensors.torch import load_file, save_file

    model, tok, data = prepare(cfg)
    path = cache / f"gpt-tiny-seed{cfg.seed}-steps{cfg.train_steps}.safetensors"
    seconds = 0.0
    if path.is_file():
        model.load_state_dict(load_file(path), strict=False)  # the tied head is the embedding
        model.tie_weights()
    else:
        seconds = train_dense_steps(model, data, cfg)
        cache.mkdir(parents=True, exist_ok=True)
        state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    model.eval()
    return model, tok, data, seconds, measure(model, data, cfg)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    cells = []
    dense_info = {}
    for seed in args.seeds:
        base = LMConfig(seed=seed, throughput_repeats=args.repeats)
        t0 = time.perf_counter()
        dense = dense_model(base, Path(args.cache))
        dense_info[seed] = {
            "perplexity": dense[4]["perplexity"],
            "params": dense[4]["params_total"],
            "train_seconds": dense[3],
            "wall_seconds": time.perf_counter() - t0,
        }
        print(f"seed {seed}: dense test ppl {dense[4]['perplexity']:.4f}", flush=True)
        for level in args.levels:
            for method in METHODS:
                for steps in (0, args.recovery_steps):
                    cfg = LMConfig(
                        seed=seed,
                        method=method,
                        sparsity=level,
                        recovery_steps=steps,
                        throughput_repeats=args.repeats,
                    )
                    t1 = time.perf_counter()
                    r = run_lm(cfg, dense=dense).result
                    cell = {
                        "seed": seed,
                        "method": method,
                        "level": level,
                        "recovery_steps": steps,
                        "perplexity": r["perplexity"],
                        "perplexity_ratio": r["perplexity_ratio"],
                        "params_total": r["params_total"],
                        "params_removed_fraction": r["params_removed_fraction"],
                        "size_bytes": r["size_bytes"],
                        "size_bytes_dense": r["size_bytes_dense"],
                        "tokens_per_s": r["tokens_per_s"],
                        "tokens_per_s_dense": r["tokens_per_s_dense"],
                        "speedup": r["speedup"],
                        "speedup_iqr": r["speedup_iqr"],
                        "heads_per_layer": r["structured"]["heads_per_layer"],
                        "mlp_per_layer": r["structured"]["mlp_per_layer"],
                        "recovery_seconds": r["train_seconds"]["recovery"],
                        "wall_seconds": time.perf_counter() - t1,
                    }
                    cells.append(cell)
                    print(
                        f"  {method:16s} {level:<5g} rec {steps:3d}: ppl x{r['perplexity_ratio']:.3f} "
                        f"speed-up {r['speedup']:.2f} (IQR {r['speedup_iqr'][0]:.2f}-"
                        f"{r['speedup_iqr'][1]:.2f}) ({cell['wall_seconds']:.0f} s)",
                        flush=True,
                    )
    return {"dense": dense_info, "cells": cells, "args": vars(args)}


def render(data: dict, command: str, wall: float) -> str:
    cells = data["cells"]
    seeds = sorted({c["seed"] for c in cells})
    dense = data["dense"]
    lines = [
        "# Structured LM pruning: heads and MLP units (gpt-tiny, python-stdlib)",
        "",
        f"Command: `{command}` (wall time {wall:.0f} s, on the shared 2-core machine).",
        "",
        "Dense gpt-tiny (4 blocks, 4 heads of 32, MLP 512, byte vocabulary; 400 AdamW steps): "
        + ", ".join(
            f"seed {s}: test perplexity {d['perplexity']:.4f}, {d['params']:,} parameters"
            for s, d in sorted(dense.items(), key=lambda kv: int(kv[0]))
        )
        + ".",
        "",
        "Each level removes that fraction of the attention heads (of 4) and of the MLP units "
        "(of 512) in every block; the shrunk model is what is measured. Perplexity ratio = "
        "pruned / dense test perplexity (200 windows of 128 tokens). Speed-up = dense / "
        "pruned time of a forward over 8 x 128 tokens, one thread, "
        f"{data['args']['repeats']} interleaved rounds (order alternating); median of the "
        "per-round ratios, IQR in brackets, per seed. `rec N`: N steps of AdamW (16 windows, "
        "lr 3e-4) on the shrunk model after pruning (the dense model had none beyond its 400).",
        "",
        "| method | level | heads / MLP per block | params removed | ppl ratio one-shot "
        + "".join(f"(seed {s}) " for s in seeds)
        + "| ppl ratio rec "
        + "".join(f"(seed {s}) " for s in seeds)
        + "| speed-up "
        + "".join(f"(seed {s}) " for s in seeds)
        + "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rec_steps = data["args"]["recovery_steps"]
    keys = sorted({(c["method"], c["level"]) for c in cells}, key=lambda k: (k[1], k[0]))
    for method, level in keys:
        one = {
            c["seed"]: c
            for c in cells
            if (c["method"], c["level"], c["recovery_steps"]) == (method, level, 0)
        }
        rec = {
            c["seed"]: c
            for c in cells
            if (c["method"], c["level"], c["recovery_steps"]) == (method, level, rec_steps)
        }
        timed = [c for c in cells if (c["method"], c["level"]) == (method, level)]
        c0 = one[seeds[0]]
        speeds = " / ".join(
            f"{c['speedup']:.2f} ({c['speedup_iqr'][0]:.2f}-{c['speedup_iqr'][1]:.2f})"
            for c in sorted(timed, key=lambda c: (c["seed"], c["recovery_steps"]))
        )
        real = all(c["speedup_iqr"][0] > 1.05 for c in timed)
        verdict = (
            f"faster (all {len(timed)} timings' lower quartile > 1.05)" if real else "within noise"
        )
        lines.append(
            f"| {method} | {level:g} | {c0['heads_per_layer'][0]} / {c0['mlp_per_layer'][0]} | "
            f"{c0['params_removed_fraction']:.1%} | "
            + " / ".join(f"{one[s]['perplexity_ratio']:.3f}" for s in seeds)
            + " | "
            + " / ".join(f"{rec[s]['perplexity_ratio']:.3f}" for s in seeds if s in rec)
            + f" | {speeds} | {verdict} |"
        )
    lines += [
        "",
        "Speed-up column: one timing per (seed, one-shot / recovered) cell, in that order; the "
        "one-shot and recovered models of a cell have the same shape, so they are two "
        "independent measurements of the same speed-up.",
        "",
        "Per level, mean over seeds and methods: "
        + "; ".join(
            f"{lvl:g}: params -{statistics.mean(c['params_removed_fraction'] for c in cells if c['level'] == lvl):.1%}, "
            f"median speed-up {statistics.median(c['speedup'] for c in cells if c['level'] == lvl):.2f}x"
            for lvl in sorted({c["level"] for c in cells})
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--levels", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--recovery-steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--cache", default="/tmp/prunekit-bench/lm-dense")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/lm_structured.md"))
    p.add_argument("--command", default=None, help="the command line to record")
    args = p.parse_args()
    t0 = time.perf_counter()
    data = run(args)
    wall = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    command = args.command or "python benchmarks/lm_structured.py " + " ".join(
        f"--seeds {' '.join(map(str, args.seeds))} --levels {' '.join(map(str, args.levels))} "
        f"--recovery-steps {args.recovery_steps} --repeats {args.repeats}".split(" ")
    )
    args.out.write_text(render(data, command, wall))
    print(f"wrote {args.out} ({wall:.0f} s)")


if __name__ == "__main__":
    main()

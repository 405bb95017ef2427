"""Structured speed-up: dense vs neuron-pruned and physically shrunk, same process.

For lenet5 (1x28x28) and resnet20 (3x32x32) at 25 / 50 / 75 % of the channels of
every group removed (``l1-filter``, neuron granularity), the forward latency at batch
1 and 64 with 1 and 2 threads, as interleaved medians
(``prunekit.evaluation.compare_latency``) of:

- ``dense``: the original model, eager PyTorch;
- ``tp``: Torch-Pruning's plain removal (``MagnitudePruner``, L1, the same ratio per
  group, head ignored), eager;
- ``ours``: ``prunekit.surgery.shrink`` + ``fold_batchnorm``; ``ours-r8`` adds
  ``round_to=8``; ``dense-fold`` is the dense model with BN folded (what folding alone
  gives);
- ``dense-ort`` / ``ours-ort``: the same two exported to ONNX and run in onnxruntime.

``speed-up = dense ms / pruned ms`` (ORT: ``dense-ort ms / ours-ort ms``);
``MAC reduction = dense MACs / pruned MACs`` (``prunekit.evaluation.macs``: conv and
Linear multiply-accumulates); ``efficiency = speed-up / MAC reduction``. Weights are
random (latency does not depend on their values).

    python benchmarks/structured_speedup.py [--repeats 20] [--out FILE]
"""

from __future__ import annotations

import os

# On a shared machine the default OpenMP wait policy (spinning) makes a 2-thread forward
# stall whenever another process holds a core: measured 72 ms instead of 0.55 ms for
# LeNet-5 at batch 1. Passive waiting keeps 2-thread figures meaningful; it must be set
# before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import datetime
import platform
import sys
import warnings
from importlib.metadata import version

import torch
import torch_pruning as tp
from torch import nn

import prunekit
from prunekit.evaluation import compare_latency, macs
from prunekit.export import onnx_bytes
from prunekit.pruning.masks import clone
from prunekit.surgery import fold_batchnorm, shrink

MODELS = {"lenet5": (1, 28, 28), "resnet20": (3, 32, 32)}
FRACTIONS = (0.25, 0.5, 0.75)


class OrtModule(nn.Module):
    """An onnxruntime session behind ``nn.Module.forward`` (for compare_latency)."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...], threads: int) -> None:
        import onnxruntime as ort

        super().__init__()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        # ORT's threads spin after a run by default and would steal the cores from
        # whatever is timed next; the ORT pair is also timed apart from the torch models.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            onnx_bytes(model, shape), opts, providers=["CPUExecutionProvider"]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"input": x.numpy()})[0])


def torch_pruning(model: nn.Module, ratio: float, shape: tuple[int, ...]) -> nn.Module:
    m = clone(model)
    head = [mod for mod in m.modules() if isinstance(mod, nn.Linear)][-1]
    pruner = tp.pruner.MagnitudePruner(
        m,
        torch.rand(1, *shape),
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        ignored_layers=[head],
    )
    pruner.step()
    return m.eval()


def random_bn(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return model


def candidates(name: str, fraction: float) -> tuple[dict[str, nn.Module], dict[str, int]]:
    shape = MODELS[name]
    torch.manual_seed(0)
    dense = random_bn(prunekit.create_model(name)).eval()
    masked = prunekit.prune(clone(dense), "l1-filter", fraction, granularity="neuron")
    x = torch.rand(2, *shape)
    ours, _ = fold_batchnorm(shrink(masked, x)[0])
    ours_r8, _ = fold_batchnorm(shrink(masked, x, round_to=8)[0])
    dense_fold, folded = fold_batchnorm(dense)
    models = {
        "dense": dense,
        "tp": torch_pruning(dense, fraction, shape),
        "ours": ours,
        "ours-r8": ours_r8,
    }
    if folded:
        models["dense-fold"] = dense_fold
    return models, {k: macs(m, shape)[0] for k, m in models.items()}


COLUMNS = (
    "model",
    "removed",
    "batch",
    "threads",
    "MAC red.",
    "dense ms",
    "dense-fold ms",
    "tp ms",
    "ours ms",
    "ours-r8 ms",
    "dense-ort ms",
    "ours-ort ms",
    "tp eff.",
    "**ours eff.**",
    "ours eff. vs dense-fold",
    "ours-r8 eff.",
    "ort eff.",
)


def row(name: str, fraction: float, batch: int, threads: int, ms: dict, red: dict) -> str:
    fold = ms.get("dense-fold")
    eff = {k: ms["dense"] / ms[k] / red[k] for k in ("tp", "ours", "ours-r8")}
    cells = [
        name,
        f"{fraction:.0%}",
        batch,
        threads,
        f"{red['ours']:.2f}x",
        *(
            f"{ms[k]:.3f}" if k in ms else "-"
            for k in ("dense", "dense-fold", "tp", "ours", "ours-r8", "dense-ort", "ours-ort")
        ),
        f"{eff['tp']:.2f}",
        f"**{eff['ours']:.2f}**",
        f"{fold / ms['ours'] / red['ours']:.2f}" if fold else "-",
        f"{eff['ours-r8']:.2f}",
        f"{ms['dense-ort'] / ms['ours-ort'] / red['ours']:.2f}",
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def run(repeats: int) -> list[str]:
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name, shape in MODELS.items():
        for fraction in FRACTIONS:
            models, mac = candidates(name, fraction)
            red = {k: mac["dense"] / mac[k] for k in mac}
            print(f"{name} {fraction:.0%}: MACs {mac}", flush=True)
            for threads in (1, 2):
                dense_deploy = models.get("dense-fold", models["dense"])
                ort = {
                    "dense-ort": OrtModule(dense_deploy, shape, threads),
                    "ours-ort": OrtModule(models["ours"], shape, threads),
                }
                for batch in (1, 64):
                    ms = {}
                    for group in (models, ort):
                        ms |= compare_latency(
                            group,
                            shape,
                            batch,
                            repeats=repeats,
                            warmup=3,
                            threads=threads,
                            min_time_s=0.02 if batch == 1 else 0.0,
                        )
                    rows.append(row(name, fraction, batch, threads, ms, red))
                    print(rows[-1], flush=True)
    return rows


def op_breakdown(fraction: float = 0.5, batch: int = 64, iters: int = 20) -> list[str]:
    """Self CPU time per aten op, dense vs ours (1 thread): what does not shrink with MACs."""
    from torch.profiler import ProfilerActivity, profile

    rows = ["| model | op | dense ms | ours ms | dense / ours |", "|---|---|---|---|---|"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    for name, shape in MODELS.items():
        models, _ = candidates(name, fraction)
        x = torch.rand(batch, *shape)
        per: dict[str, dict[str, float]] = {}
        for key in ("dense", "ours"):
            with torch.no_grad():
                for _ in range(3):
                    models[key](x)
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(iters):
                        models[key](x)
            for e in prof.key_averages():
                per.setdefault(e.key, {})[key] = e.self_cpu_time_total / iters / 1000
        top = sorted(per, key=lambda k: -per[k].get("dense", 0.0))[:5]
        for op in top:
            d, o = per[op].get("dense", 0.0), per[op].get("ours", 0.0)
            rows.append(
                f"| {name} | {op} | {d:.3f} | {o:.3f} | {d / o if o else float('inf'):.2f}x |"
            )
            print(rows[-1], flush=True)
    torch.set_num_threads(before)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default=None, help="write the Markdown report here")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    rows = run(args.repeats)
    breakdown = op_breakdown()
    if args.out:
        header = [
            "# Structured speed-up: dense vs neuron-pruned, shrunk models",
            "",
            f"Command: `python {' '.join(sys.argv)}`  ",
            f"Date: {datetime.date.today().isoformat()}; torch {torch.__version__}, "
            f"Torch-Pruning {version('torch-pruning')}, Python {platform.python_version()}, "
            f"{os.cpu_count()} CPUs (shared: other jobs were running; medians of "
            f"{args.repeats} interleaved repeats; OMP_WAIT_POLICY="
            f"{os.environ['OMP_WAIT_POLICY']})",
            "",
            "MAC red. = dense MACs / ours MACs; efficiency = (dense ms / pruned ms) / "
            "(dense MACs / pruned MACs), each pruned model against its own MACs. "
            "dense = original model, eager; tp = Torch-Pruning plain removal; "
            "ours = shrink + BN folding; ours-r8 = widths rounded up to multiples of 8; "
            "'ours eff. vs dense-fold' credits BN folding to the dense model too; "
            "ort = onnxruntime, dense (BN folded) vs ours. Latency in ms per batch.",
            "",
        ]
        why = [
            "",
            "## Where the time goes: self CPU time per op, 50 % removed, batch 64, 1 thread",
            "",
        ]
        with open(args.out, "w") as f:
            f.write("\n".join(header + rows + why + breakdown) + "\n")


if __name__ == "__main__":
    main()

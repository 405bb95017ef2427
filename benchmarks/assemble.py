"""Write BENCHMARKS.md from the result files the benchmark scripts wrote.

Every section is a file under ``benchmarks/results/`` as its script printed it (each
names the command that produced it); this script only concatenates them in a fixed
order and demotes their headings one level. Nothing is typed in here.

    python benchmarks/assemble.py
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path("benchmarks/results")
SECTIONS = (  # (file, the issue it answers)
    ("masked_step.md", 2),
    ("sparse_optimization.md", 3),
    ("sparse_optimization_tuning.md", 3),
    ("l0_step.md", 3),
    ("robustness.md", 4),
    ("entropy.md", 5),
    ("structured_speedup.md", 6),
    ("csr_linear.md", 6),
    ("default_comparison.md", 7),
    ("ray_vs_local.md", 8),
    ("pruner_step.md", 13),
    ("l0_gate_optimizer.md", 13),
    ("pictures.md", 18),
    ("reconstruction.md", 15),
    ("rank_agreement.md", 15),
    ("rank_agreement_3p2.md", 15),
    ("beat_peer_lenet300.md", 15),
    ("beat_peer_lenet300_kd.md", 15),
    ("beat_peer_lenet300_ft10.md", 15),
    ("beat_peer_lenet300_ft10_seed0.md", 15),
    ("beat_peer_lenet5.md", 15),
    ("beat_peer_lenet5_full.md", 15),
    ("beat_peer_lenet5_ft10.md", 15),
    ("beat_peer_lenet5_ft10_explore_seed0.md", 15),
    ("beat_peer_lenet5_ft10_heldout.md", 15),
    ("beat_peer_explore_seed0.md", 15),
    ("beat_peer_explore_span_seed0.md", 15),
    ("beat_peer_explore_ft10_seed0.md", 15),
    ("beat_peer_lenet300_ft10_all.md", 15),
    ("beat_peer_lenet300_dpf_explore_seed0.md", 15),
    ("beat_peer_lenet300_dpf.md", 15),
    ("beat_peer_lenet300_dpf_explore2_seed0.md", 15),
    ("issue15_targets.md", 15),
    ("timing_bias.md", 15),
    ("latency_target.md", 16),
    ("latency_followup.md", 16),
    ("latency_resnet_touched.md", 16),
    ("latency_alloc_ablation.md", 16),
    ("latency_resnet_tplike.md", 16),
    ("latency_predictor.md", 16),
    ("latency_predictor_quiet.md", 16),
    ("compare_int8.md", 16),
    ("lm_pruning.md", 17),
    ("lm_compare.md", 17),
    ("lm_structured.md", 17),
)
HEADER = """# Benchmarks

Every figure here was printed by a script under `benchmarks/` (each section names its
command), run on the project's development machine (2 CPU cores, shared; PyTorch 2.13.0
CPU build), and assembled by `python benchmarks/assemble.py`. Candidates are compared in
the same process, interleaved, and medians are reported, because timing on this machine
is noisy (batch-1 latency at 2 threads jumps between two levels from one process to the
next; other jobs run beside it). Ratios are the meaningful numbers.
"""


def demote(text: str) -> str:
    return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())


def main() -> None:
    parts = [HEADER]
    for name, issue in SECTIONS:
        path = RESULTS / name
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run its benchmark first")
        body = demote(path.read_text().strip())
        first, _, rest = body.partition("\n")
        parts.append(f"{first} (issue {issue}; `{name}`)\n{rest}")
    Path("BENCHMARKS.md").write_text("\n\n---\n\n".join(parts) + "\n")
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()

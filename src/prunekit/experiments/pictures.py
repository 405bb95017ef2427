"""The report's pictures of what pruning did (``prunekit.visualize``), from the stored rows.

Each picture compares the methods at one sparsity (the heatmap's: ``heatmap_sparsity``
of the config, else the middle one), first seed; a picture whose data no row carries
is left out (older rows, or a comparison without such methods).
"""

from __future__ import annotations

from .. import visualize as vis
from .summary import Row, ok, sparsities_in

PICTURES = (
    ("input_connections", "What pruning did: surviving first-layer connections per input pixel"),
    ("units_kept", "What pruning did: units kept per layer (neuron methods)"),
    ("sparsity_steps", "What pruning did: sparsity over the training steps"),
    ("l0_gates", "What pruning did: L0 gate keep-probabilities at the pruning event"),
    ("unit_entropy", "What pruning did: unit activation entropies (entropy methods)"),
    ("noise_levels", "Accuracy per noise level"),
)


def chosen_rows(rows: list[Row], target: float | None) -> tuple[float | None, dict[str, Row]]:
    """(sparsity, {method: row}): one ok row per method at the sparsity closest to
    ``target`` (first seed), plus the dense row."""
    sps = sparsities_in(rows)
    if not sps:
        return None, {}
    s = min(sps, key=lambda x: abs(x - (target if target is not None else sps[len(sps) // 2])))
    chosen: dict[str, Row] = {}
    for r in sorted(ok(rows), key=lambda r: r["seed"]):
        if r["kind"] == "dense" or r["sparsity"] == s:
            chosen.setdefault(r["method"], r)
    return s, chosen


def make_pictures(rows: list[Row], target: float | None) -> dict[str, bytes]:
    """PNG bytes of every picture that has data, keyed by the names in ``PICTURES``."""
    s, chosen = chosen_rows(rows, target)
    if not chosen:
        return {}
    pruned = {m: r for m, r in chosen.items() if r["kind"] != "dense"}
    made = {}
    conns = {m: r.get("input_connections") for m, r in chosen.items()}
    if any(c and c.get("kind") == "input" for c in conns.values()):
        made["input_connections"] = vis.input_connections_figure(
            {m: c for m, c in conns.items() if c and c.get("kind") == "input"}
        )
    neuron = {m: r for m, r in pruned.items() if r.get("architecture_original")}
    if neuron:
        made["units_kept"] = vis.units_kept_figure(neuron)
    if any(vis.sparsity_steps(r) for r in pruned.values()):
        made["sparsity_steps"] = vis.sparsity_steps_figure(pruned)
    gates = {
        m: r for m, r in pruned.items() if (r.get("objective_report") or {}).get("keep_prob_hist")
    }
    if gates:
        made["l0_gates"] = vis.l0_gates_figure(gates)
    entropies = {m: r for m, r in pruned.items() if vis.unit_entropies(r)}
    if entropies:
        made["unit_entropy"] = vis.entropy_histogram_figure(entropies)
    noisy = {m: r for m, r in chosen.items() if vis.noise_curves(r)}
    if noisy:
        made["noise_levels"] = vis.noise_curves_figure(noisy)
    for fig in made.values():
        fig.suptitle(f"{fig.get_suptitle() or ''} (target sparsity {s:g})".strip(), fontsize=10)
    return {k: vis.figure_png(fig) for k, fig in made.items()}

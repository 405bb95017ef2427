"""The comparison's data types: a method entry of the config, the validated config
(:class:`CompareConfig`, with its hash) and one cell of the grid (:class:`Cell`, with its
id and the command that reproduces it). Built by :mod:`prunekit.experiments.plan`."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import RunConfig
from ..runoptions import to_argv
from ..spec import RunSpec

#: Peers: other libraries' pruners, run with the same dense model and budget, and the
#: granularity each one prunes at (see ``peers.py``).
PEER_GRANULARITY = {"torch-l1": "weight", "tp-magnitude": "neuron"}
PEER_NAMES = tuple(PEER_GRANULARITY)

#: Shown in a reproduce command even at their default, so that it reads on its own.
_ALWAYS_SHOWN = ("model", "dataset", "method", "sparsity", "epochs", "finetune_epochs", "seed")
#: Label suffix of the rows that ``no_finetune`` adds (the same method, pruned once from
#: the dense model and evaluated without any retraining).
NO_FINETUNE = " (no fine-tune)"


@dataclass(frozen=True)
class MethodEntry:
    """One method row of the comparison: a registered method (or a peer) + options.

    ``label`` names the row (defaults to the method name); two entries of the same
    method with different ``args`` need different labels.
    """

    name: str
    label: str
    args: dict[str, Any] = field(default_factory=dict)
    granularities: tuple[str | None, ...] = (None,)
    scope: str | None = None
    schedule: str | None = None
    sparsities: tuple[float, ...] | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    # Discovered by `methods: all`: a method whose defaults do not validate becomes
    # failed rows (with the message) instead of stopping the whole comparison.
    auto: bool = False

    @property
    def peer(self) -> bool:
        return self.name in PEER_NAMES


@dataclass(frozen=True)
class CompareConfig:
    name: str
    models: tuple[str, ...]
    dataset: str
    methods: tuple[MethodEntry, ...]
    sparsities: tuple[float, ...]
    seeds: tuple[int, ...]
    dense_baseline: bool = True
    budget: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    heatmap_sparsity: float | None = None
    save_models: bool = False

    def hash(self) -> str:
        """sha256 (16 hex digits) of the normalised config, ``data_dir`` excluded."""
        d = asdict(self)
        d["data"] = {k: v for k, v in d["data"].items() if k not in ("data_dir", "download")}
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cell:
    """One run of the grid. ``kind`` is 'dense', 'method' or 'peer'."""

    kind: str
    label: str
    run: RunConfig
    #: The cell resolved once by ``plan`` (None for peers and for cells that do not
    #: resolve, whose error is then recorded when they run); not part of its identity.
    spec: RunSpec | None = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> str:
        blob = json.dumps(
            {"kind": self.kind, "label": self.label, "run": self.run.non_default()},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @property
    def group(self) -> tuple[str, str, int]:
        """Cells of one group share the dense model: (model, dataset, seed)."""
        return (self.run.model, self.run.dataset, self.run.seed)

    def command(self, config_path: str | None = None) -> str:
        """The shell command that reproduces this cell on its own (a peer is not a
        registered method: its cell reruns through ``compare`` restricted to it)."""
        r = self.run
        if self.kind == "peer":
            cfg = f" --config {shlex.quote(config_path)}" if config_path else ""
            out = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.label).strip("-")
            return (
                f"prunekit compare{cfg} --only {shlex.quote(self.label)} "
                f"--sparsities {r.sparsity:g} --seeds {r.seed} --out runs/{out}"
            )
        # Every run option that differs from its default, spelled by the schema: the
        # command rebuilds this very RunConfig (same non-default fields, same hash).
        parts = ["prunekit", "prune", *to_argv(r, always=_ALWAYS_SHOWN)]
        return " ".join(shlex.quote(p) for p in parts)

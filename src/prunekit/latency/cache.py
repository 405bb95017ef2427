"""The latency tables' on-disk cache and when a measured entry is trusted.

Entries are cached on disk (one JSON file per machine, torch version, runtime, batch
size and thread count; written atomically) so a table is measured once per machine.
Because a cached entry is reused by every later prediction, one entry timed during a
burst of other work biases all of them, repeatably; each entry is therefore measured
in at least two passes over the table and kept as the median of agreeing samples
(:func:`settled`), and each calibration configuration is the median of three rounds.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..evaluation.allocator import allocator_in_effect
from ..storage.atomic import atomic_write_json


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table_key(runtime: str, batch_size: int, threads: int, clock: str = "thread") -> dict[str, Any]:
    """What a measured entry depends on: machine, torch, runtime, batch size, threads
    (and the clock it was timed with)."""
    return {
        "clock": clock,
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "system": platform.system(),
        "torch": torch.__version__,
        "runtime": runtime,
        "batch_size": batch_size,
        "threads": threads,
        # entries timed before the allocator was made steady (evaluation.allocator)
        # include page-fault time at random: they are not reused; off glibc the setting
        # cannot be made, and the key says so
        "allocator": allocator_in_effect(),
    }


def default_cache_dir() -> Path:
    env = os.environ.get("PRUNEKIT_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "prunekit"
    return base / "latency"


class TableCache:
    """``{signature: value}`` for one :func:`table_key`, in one JSON file, with every
    measurement of each entry (``samples``; the value is their median, see
    :func:`settled`). A file written before samples were kept loads each entry as one
    sample, so it is re-checked by the next :meth:`LatencyModel.measure_table`."""

    def __init__(self, key: dict[str, Any], cache_dir: str | Path | None = None) -> None:
        self.key = key
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(cache_dir or default_cache_dir()) / f"{key['runtime']}-{digest}.json"
        self.entries: dict[str, float] = {}
        self.samples: dict[str, list[float]] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                if data.get("key") == key:
                    self.entries = {str(k): float(v) for k, v in data["entries"].items()}
                    kept = data.get("samples", {})
                    self.samples = {
                        k: [float(x) for x in kept.get(k, [v])] for k, v in self.entries.items()
                    }
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self.entries, self.samples = {}, {}  # corrupted: re-measured, not trusted

    def add(self, sig: str, value: float) -> None:
        """One more measurement of ``sig``; its entry becomes the median of all."""
        self.samples.setdefault(sig, []).append(float(value))
        self.entries[sig] = statistics.median(self.samples[sig])

    def save(self) -> None:
        atomic_write_json(
            self.path, {"key": self.key, "entries": self.entries, "samples": self.samples}
        )


#: Each table entry is measured in at least ``MIN_PASSES`` passes over the whole table
#: (so its samples are seconds to minutes apart, not one burst of load) and in at most
#: ``MAX_PASSES``; it is settled once ``MIN_PASSES`` of its samples agree within
#: ``AGREE`` (relative range around their median).
MIN_PASSES = 2
MAX_PASSES = 4
AGREE = 0.10


def settled(samples: Sequence[float], min_passes: int = MIN_PASSES, agree: float = AGREE) -> bool:
    """Whether an entry's measurements are enough: ``min_passes`` of them -- the median
    and its nearest neighbours -- span at most ``agree`` of the median.

    Why: at batch 1 an entry is mostly fixed per-call cost, flat across widths, so one
    sample taken during a burst of other work outweighs the whole width effect, and
    once cached it biased every later prediction that used it. LeNet-5's conv2 16->8
    entry was cached at 2.28 reference units and re-measured at 1.55 and 1.65; the
    configurations that used it (conv1 16, conv2 8) were predicted 13.7-33.2 % too slow
    in every run (benchmarks/results/latency_predictor.md, latency_followup.md)."""
    if len(samples) < min_passes:
        return False
    med = statistics.median(samples)
    if med <= 0:
        return True
    near = sorted(samples, key=lambda x: abs(x - med))[:min_passes]
    return (max(near) - min(near)) / med <= agree

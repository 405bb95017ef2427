"""The comparison harness: plan a grid of runs from a YAML config, run it resumably into
SQLite, and report it (Markdown + self-contained HTML with plots).

- ``load_config(path)`` / ``plan(cfg)``: config validation and the grid of cells;
- ``compare(cfg, out, ...)``: run every unfinished cell, one stored row per cell;
- ``write_report(out)``: ``report.md`` and ``report.html`` from the stored rows.
"""

from .plan import Cell, CompareConfig, MethodEntry, load_config, plan, restrict
from .report import write_report
from .runner import compare
from .store import Store, read_rows

__all__ = [
    "Cell",
    "CompareConfig",
    "MethodEntry",
    "Store",
    "compare",
    "load_config",
    "plan",
    "read_rows",
    "restrict",
    "write_report",
]

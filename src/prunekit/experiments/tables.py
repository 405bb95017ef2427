"""The comparison report's tables, as (header, body) string lists, and their Markdown and
HTML renderings: the method notes, every run with its reproduce command, and the
neuron-level methods at equal cost."""

from __future__ import annotations

import html
import shlex
from typing import Any

from . import claims
from .summary import (
    Row,
    latency_b1,
    method_notes,
)


def _compare_cmd(config_path: str | None, label: str) -> str:
    cfg = f" --config {config_path}" if config_path else ""
    return f"prunekit compare{cfg} --only {shlex.quote(label)}"


def method_table(rows: list[Row], config_path: str | None) -> tuple[list[str], list[list[str]]]:
    notes = method_notes(rows)
    header = ["method", "granularity", "strengths", "weaknesses", "reproduce"]
    body = [
        [
            m,
            n["granularity"] or "-",
            "; ".join(n["strengths"]) or "-",
            "; ".join(n["weaknesses"]) or "-",
            _compare_cmd(config_path, m),
        ]
        for m, n in notes.items()
    ]
    return header, body


def runs_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    header = [
        "method",
        "sparsity",
        "seed",
        "status",
        "accuracy",
        "achieved",
        "MACs eff.",
        "noise acc.",
        "latency b1 (ms)",
        "speed-up b1",
        "wall (s)",
        "reproduce",
    ]

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    body = [
        [
            r["method"],
            f"{r['sparsity']:g}",
            str(r["seed"]),
            r["status"] if r["status"] == "ok" else f"failed: {r['error']}",
            f(r.get("accuracy"), ".4f"),
            f(r.get("achieved_sparsity"), ".4f"),
            f(r.get("macs_effective"), ",.0f"),
            f(r.get("accuracy_corrupted_mean"), ".4f"),
            f(latency_b1(r), ".4f"),
            _speedup_cell(r),
            f(r.get("wall_seconds"), ".1f"),
            r["command"],
        ]
        for r in rows
    ]
    return header, body


def _speedup_cell(r: Row) -> str:
    up = claims.speedup(r)
    if up is None:
        return "-"
    if up.reference:
        return "1x (reference)"
    verdict = {"no spread": "no spread"}.get(up.verdict, up.verdict)
    busy = ", busy" if up.busy else ""
    return f"{up.value:.2f}x ({verdict}{busy})"


def equal_cost_tables(rows: list[Row]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Neuron-level methods against each other at equal parameter count, MACs and
    measured speed-up: (axis, header, body); accuracy interpolated between measured
    points, '-' outside a method's range, '*' marks the top group (within noise)."""
    notes = method_notes(rows)
    neuron = [m for m, n in notes.items() if (n["level"], n["setting"]) == ("neuron", "fine-tuned")]
    out = []
    if len(neuron) < 2:
        return out
    for axis in claims.COST_AXES:
        entries = claims.equal_cost(rows, neuron, axis)
        if not entries:
            continue
        header = ["method", *[_cost_label(axis, e["cost"]) for e in entries]]
        body = []
        for m in neuron:
            cells = []
            for e in entries:
                v = e["values"].get(m)
                mark = " *" if m in e["top"] else ""
                cells.append("-" if v is None else f"{v.mean:.4f}{mark}")
            body.append([m, *cells])
        out.append((axis, header, body))
    return out


def _cost_label(axis: str, x: float) -> str:
    if axis == "measured speed-up":
        return f"{x:.2f}x"
    return f"{x:,.0f}"


def markdown_table(header: list[str], body: list[list[str]], code_last: bool = False) -> str:
    def cell(text: str, last: bool) -> str:
        text = str(text).replace("|", "\\|").replace("\n", " ")
        return f"`{text}`" if last and code_last and text not in ("", "-") else text

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(cell(c, i == len(row) - 1) for i, c in enumerate(row)) + " |"
        for row in body
    ]
    return "\n".join(lines)


def html_table(header: list[str], body: list[list[str]], code_last: bool = False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = []
    for row in body:
        tds = []
        for i, c in enumerate(row):
            text = html.escape(str(c))
            last = code_last and i == len(row) - 1 and text not in ("", "-")
            tds.append(f"<td><code>{text}</code></td>" if last else f"<td>{text}</td>")
        trs.append("<tr>" + "".join(tds) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(trs)}</tbody></table>"

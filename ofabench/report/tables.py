"""Tables of a pareto document: every point as rows (pandas), and the Markdown summary tables
(best accuracy within each budget, hypervolume, the searched architectures)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..search.axes import AXES_INFO
from ..search.points import ParetoPoint
from .style import MethodStyle

POINT_COLUMNS = (
    "method",
    "kind",
    "model",
    "accuracy_pct",
    "accuracy_kind",
    "latency_ms",
    "device",
    "mmacs",
    "mparams",
    "budget",
    "axis",
    "on_front",
    "source",
    "notes",
    "arch",
)


def points_frame(
    points: Sequence[ParetoPoint], fronts: Mapping[str, Mapping[str, Sequence[int]]]
) -> pd.DataFrame:
    """One row per point; ``on_front`` lists the axes on which it is on its method's front."""
    on_front: dict[int, list[str]] = {}
    for axis, per_method in fronts.items():
        for ids in per_method.values():
            for i in ids:
                on_front.setdefault(i, []).append(axis)
    rows = [_row(i, p, on_front.get(i, [])) for i, p in enumerate(points)]
    return pd.DataFrame(rows, columns=list(POINT_COLUMNS))


def _row(i: int, p: ParetoPoint, front_axes: list[str]) -> dict[str, Any]:
    return {
        "method": p.method,
        "kind": p.kind,
        "model": p.model,
        "accuracy_pct": round(100.0 * p.accuracy, 4),
        "accuracy_kind": p.accuracy_kind,
        "latency_ms": p.latency_ms,
        "device": p.device,
        "mmacs": p.mmacs,
        "mparams": p.mparams,
        "budget": p.budget,
        "axis": p.axis,
        "on_front": ";".join(front_axes),
        "source": p.source,
        "notes": p.notes,
        "arch": json.dumps(dict(p.arch)) if p.arch is not None else "",
    }


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100.0 * value:.{digits}f}"


def best_table(
    best: Mapping[str, Mapping[str, float | None]],
    budgets: Sequence[float],
    unit: str,
    looks: Mapping[str, MethodStyle],
) -> str:
    """Methods x budgets: best top-1 (%) among a method's points within each budget."""
    header = ["method", *[f"≤ {b:g} {unit}" for b in budgets]]
    rows = []
    for method, per_budget in best.items():
        digits = 2 if looks[method].kind in ("search", "baseline") else 1
        cells = [_pct(per_budget.get(f"{b:g}"), digits) for b in budgets]
        rows.append([looks[method].label, *cells])
    return markdown_table(header, rows)


def hypervolume_table(
    summary: Mapping[str, Mapping[str, Any]], looks: Mapping[str, MethodStyle]
) -> str:
    """Methods x axes: hypervolume in (axis unit x top-1 points) against each axis' reference."""
    axes = [a for a, s in summary.items() if s.get("reference")]
    methods = list(dict.fromkeys(m for a in axes for m in summary[a]["hypervolume"]))
    header = ["method", *[_axis_title(a, summary[a]["reference"]) for a in axes]]
    rows = []
    for method in methods:
        cells = [_hv(summary[a]["hypervolume"].get(method)) for a in axes]
        rows.append([looks[method].label, *cells])
    return markdown_table(header, rows)


def _axis_title(axis: str, ref: Mapping[str, float]) -> str:
    unit = AXES_INFO[axis].unit
    return f"{axis} (ref ≤ {ref['cost']:g} {unit}, ≥ {100 * ref['accuracy']:.0f}%)"


def _hv(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def search_table(points: Sequence[ParetoPoint], method: str, unit: str) -> str:
    """The architectures one searched method found, one row per budget."""
    rows = []
    for p in points:
        if p.method != method or p.budget is None:
            continue
        arch = p.arch or {}
        rows.append(
            [
                f"{p.budget:g} {unit}",
                _pct(p.accuracy, 2),
                _num(p.latency_ms, 2),
                _num(p.mmacs, 0),
                _num(p.mparams, 2),
                arch.get("r", ""),
                "".join(str(d) for d in arch.get("d", [])),
            ]
        )
    header = ["budget", "top-1 %", "latency ms", "MMACs", "M params", "r", "depths"]
    return markdown_table(header, rows)


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"

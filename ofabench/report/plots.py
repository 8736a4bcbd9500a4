"""Accuracy-cost plots (matplotlib, Agg, no pyplot state): every method's points in its own
colour and marker, its Pareto front as a step line, the sweep's budgets as vertical lines.
Fronts come from :func:`ofabench.search.pareto.pareto_front`; nothing is computed here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..search.axes import AXES_INFO
from ..search.pareto import pareto_front
from ..search.points import ParetoPoint, on_axis
from .style import MethodStyle, method_order, styles

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DPI = 220
LEGEND_INSIDE_MAX = 6  # with more methods the legend goes beside the axes
AXIS_LABELS = {name: a.label for name, a in AXES_INFO.items()}


def axis_label(axis: str, device: str | None) -> str:
    return AXIS_LABELS[axis].format(device=device or "device")


def plot_accuracy_vs(
    points: Sequence[ParetoPoint],
    axis: str,
    path: str | Path,
    device: str | None = None,
    budgets: Sequence[float] = (),
    title: str = "",
) -> Path | None:
    """Write one accuracy-vs-``axis`` PNG; None (nothing written) if no point has that cost."""
    from matplotlib.figure import Figure

    usable = on_axis(points, axis, device)
    if not usable:
        return None
    look = styles(points)
    n_methods = len(method_order(usable))
    wide = n_methods > LEGEND_INSIDE_MAX
    fig = Figure(figsize=(10.5 if wide else 8.0, 5.6), layout="constrained")
    ax = fig.subplots()
    for budget in budgets:
        ax.axvline(budget, color="0.82", lw=0.8, ls="--", zorder=0)
    for method in method_order(usable):
        mine = [p for p in usable if p.method == method]
        _draw_method(ax, mine, axis, look[method])
    _decorate(ax, axis, device, title, budgets, usable, legend_outside=wide)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _draw_method(ax: Axes, points: Sequence[ParetoPoint], axis: str, look: MethodStyle) -> None:
    costs = np.array([p.cost(axis) for p in points], dtype=np.float64)
    accs = 100.0 * np.array([p.accuracy for p in points])
    ax.scatter(
        costs,
        accs,
        marker=look.marker,
        s=34 if look.kind in ("search", "baseline") else 46,
        facecolors=look.colour if look.filled else "white",
        edgecolors=look.colour,
        linewidths=1.2,
        label=look.label,
        zorder=3,
    )
    front = pareto_front(costs, accs)
    if len(front) >= 2:
        ax.step(
            costs[front], accs[front], where="post", color=look.colour, lw=1.4, alpha=0.85, zorder=2
        )


def _decorate(
    ax: Axes,
    axis: str,
    device: str | None,
    title: str,
    budgets: Sequence[float],
    points: Sequence[ParetoPoint],
    legend_outside: bool = False,
) -> None:
    ax.set_xlabel(axis_label(axis, device))
    ax.set_ylabel("Top-1 accuracy (%)")
    if title:
        ax.set_title(title)
    ax.grid(True, color="0.92", lw=0.6)
    ax.set_axisbelow(True)
    costs = [p.cost(axis) for p in points]
    high = max([*costs, *budgets])
    ax.set_xlim(0, high * 1.06)
    if legend_outside:
        ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.legend(fontsize=7.5, loc="lower right", framealpha=0.92)

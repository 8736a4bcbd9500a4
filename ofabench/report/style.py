"""How methods look and are named in reports: one colour/marker per method, readable labels.

Searched and run baselines come first with fixed styles; published and external series get
the next free colour/marker pairs (hollow markers for measured accuracies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..search.points import ParetoPoint

FIXED = {
    "evolution": ("#d62728", "o", "OFA evolutionary search"),
    "random": ("#1f77b4", "v", "Random search, equal evaluations"),
    "uniform": ("#2ca02c", "s", "Uniform scaling (same k/e/d in every block)"),
    "aging_evolution": ("#e6550d", "^", "Regularized (aging) evolution, equal evaluations"),
    "local_search": ("#6b6ecf", "<", "Local search from the best random subnet"),
    "nsga2": ("#393b79", "D", "NSGA-II (pymoo), one run, equal total evaluations"),
}
COLOURS = (  # distinct from the fixed ones above, and from each other
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#ff7f0e",
    "#000075",
    "#469990",
    "#800000",
    "#f032e6",
    "#c49a00",
    "#222222",
    "#8e7cc3",
)
MARKERS = ("D", "^", "P", "X", "*", "h", "<", ">", "p", "d", "H", "8")
KIND_ORDER = {"search": 0, "baseline": 1, "external": 2, "published": 3}


@dataclass(frozen=True)
class MethodStyle:
    method: str
    label: str
    colour: str
    marker: str
    filled: bool
    kind: str


def method_order(points: Sequence[ParetoPoint]) -> list[str]:
    """Methods in display order: search, run baselines, external, published; then first seen."""
    first: dict[str, tuple[int, int]] = {}
    for i, p in enumerate(points):
        first.setdefault(p.method, (KIND_ORDER.get(p.kind, 9), i))
    return sorted(first, key=lambda m: first[m])


def styles(points: Sequence[ParetoPoint]) -> dict[str, MethodStyle]:
    """A style for every method of ``points`` (stable for a given set of methods)."""
    out: dict[str, MethodStyle] = {}
    free = 0
    for method in method_order(points):
        sample = next(p for p in points if p.method == method)
        if method in FIXED and sample.kind in ("search", "baseline"):
            colour, marker, label = FIXED[method]
        else:
            colour, marker = COLOURS[free % len(COLOURS)], MARKERS[free % len(MARKERS)]
            label = f"{method} (published)" if sample.kind == "published" else method
            free += 1
        suffix = " (predicted)" if sample.accuracy_kind == "predicted" else ""
        out[method] = MethodStyle(
            method,
            label + suffix,
            colour,
            marker,
            sample.accuracy_kind == "predicted",
            sample.kind,
        )
    return out

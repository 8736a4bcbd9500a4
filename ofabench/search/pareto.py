"""Pareto fronts and 2-D hypervolume for accuracy-cost trade-offs (minimise cost, maximise
score). Pure numpy; plotting lives elsewhere."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _as_pairs(costs: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(costs, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if c.shape != s.shape:
        raise ValueError(f"costs and scores must have the same length, got {len(c)} and {len(s)}")
    if not (np.isfinite(c).all() and np.isfinite(s).all()):
        raise ValueError("costs and scores must be finite numbers (no NaN or inf)")
    return c, s


def pareto_front(costs: ArrayLike, scores: ArrayLike) -> np.ndarray:
    """Indices of the non-dominated points, sorted by increasing cost.

    A point is dominated when another costs no more and scores no less, and is strictly better
    in one of the two. Exact duplicates of a front point are all kept.
    """
    c, s = _as_pairs(costs, scores)
    if not len(c):
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((-s, c))  # by cost, then best score first
    c_sorted, s_sorted = c[order], s[order]
    group_start = np.searchsorted(c_sorted, c_sorted, side="left")
    running_best = np.maximum.accumulate(s_sorted)
    best_cheaper = np.where(group_start > 0, running_best[group_start - 1], -np.inf)
    on_front = (s_sorted > best_cheaper) & (s_sorted == s_sorted[group_start])
    return order[on_front]


def hypervolume_2d(costs: ArrayLike, scores: ArrayLike, ref_cost: float, ref_score: float) -> float:
    """Area dominated by the points and bounded by the reference point (``ref_cost`` above
    every useful cost, ``ref_score`` below every useful score). Points not strictly better
    than the reference in both objectives add nothing."""
    c, s = _as_pairs(costs, scores)
    useful = (c < ref_cost) & (s > ref_score)
    c, s = c[useful], s[useful]
    if not len(c):
        return 0.0
    front = pareto_front(c, s)
    c, s = c[front], s[front]
    widths = np.diff(np.append(c, ref_cost))
    return float(np.sum(widths * (s - ref_score)))


def hypervolume_spread(
    runs: Sequence[tuple[ArrayLike, ArrayLike]], ref_cost: float, ref_score: float
) -> dict[str, float | int | list[float]]:
    """Hypervolume of each run's ``(costs, scores)`` against one reference point, and their
    spread: mean, sample standard deviation (0 for one run), min, max, number of runs."""
    values = np.array([hypervolume_2d(c, s, ref_cost, ref_score) for c, s in runs], np.float64)
    if not len(values):
        raise ValueError("hypervolume_spread needs at least one run")
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
        "n": int(len(values)),
        "values": values.tolist(),
    }


__all__ = ["hypervolume_2d", "hypervolume_spread", "pareto_front"]

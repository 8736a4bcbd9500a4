"""Baselines to compare OFA's search against: random search at equal evaluations and uniform
scaling (run here), points supplied as CSV (the "no PS" supernet, from-scratch subnets), and
published ImageNet reference points shipped with the package.

Run baselines are registered by name in :data:`BASELINES`; each maps
``(problem, axis, budgets, fixed, context) -> (points, skipped)`` where ``fixed`` holds the
limits on the other axes and ``context`` what the OFA search found (its evaluation counts).
"""

from __future__ import annotations

from .external import load_external_points
from .published import list_published, load_published
from .registry import BASELINES, get_baseline, list_baselines
from .uniform import best_within, uniform_archs, uniform_points

__all__ = [
    "BASELINES",
    "best_within",
    "get_baseline",
    "list_baselines",
    "list_published",
    "load_external_points",
    "load_published",
    "uniform_archs",
    "uniform_points",
]

"""Baselines to compare OFA's search against: NAS search algorithms run at OFA's number of
predictor evaluations (random search, regularized evolution, local search, NSGA-II through
pymoo), uniform scaling, points supplied as CSV (the "no PS" supernet, from-scratch subnets),
published ImageNet reference points shipped with the package, and torchvision's standard
mobile networks (:mod:`.reference_nets`).

A run baseline is a :class:`Baseline` (``name``, ``run(SweepTask) -> BaselineOutcome``)
registered by name (:func:`get_baseline`, :func:`list_baselines`); third parties add one
through the ``ofabench.baselines`` entry-point group.
"""

from __future__ import annotations

from .base import Baseline, BaselineOutcome, PerBudgetSearch, SweepTask
from .external import load_external_points
from .published import list_published, load_published
from .registry import get_baseline, get_baseline_class, list_baselines, register_baseline
from .uniform import best_within, uniform_archs, uniform_points

__all__ = [
    "Baseline",
    "BaselineOutcome",
    "PerBudgetSearch",
    "SweepTask",
    "best_within",
    "get_baseline",
    "get_baseline_class",
    "list_baselines",
    "list_published",
    "load_external_points",
    "load_published",
    "register_baseline",
    "uniform_archs",
    "uniform_points",
]

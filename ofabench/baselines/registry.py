"""Baselines that are run (not read): random search at equal evaluations, uniform scaling.

A runner maps ``(problem, axis, budgets, fixed, context)`` to ``(points, skipped)``: one point
per budget it could meet, and for each budget it could not a ``{"method", "budget", "reason"}``
record. ``fixed`` holds limits on the other axes; ``context["n_evaluations"]`` maps a budget
to the number of architectures OFA's search scored there, ``context["seed"]`` the seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigError, InfeasibleConstraintError
from ..search.points import ParetoPoint
from .uniform import best_within, uniform_points

Skipped = dict[str, Any]
Runner = Callable[
    [Any, str, Sequence[float], Mapping[str, float | None], Mapping[str, Any]],
    tuple[list[ParetoPoint], list[Skipped]],
]
DEFAULT_EVALUATIONS = 100 * 501


def run_random(
    problem: Any,
    axis: str,
    budgets: Sequence[float],
    fixed: Mapping[str, float | None],
    context: Mapping[str, Any],
) -> tuple[list[ParetoPoint], list[Skipped]]:
    """Random search at each budget with as many evaluations as OFA's search used there."""
    from ..search.problem import result_point, run_search

    points, skipped = [], []
    evaluations = context.get("n_evaluations", {})
    for budget in budgets:
        n = int(evaluations.get(budget, DEFAULT_EVALUATIONS))
        limits = {**fixed, axis: budget}
        try:
            result = run_search(problem, limits, "random", n_evals=n, seed=context.get("seed", 0))
        except InfeasibleConstraintError as exc:
            skipped.append({"method": "random", "budget": budget, "reason": str(exc)})
            continue
        points.append(result_point(problem, result, "random", axis, budget, kind="baseline"))
    return points, skipped


def run_uniform(
    problem: Any,
    axis: str,
    budgets: Sequence[float],
    fixed: Mapping[str, float | None],
    context: Mapping[str, Any],
) -> tuple[list[ParetoPoint], list[Skipped]]:
    """The most accurate uniform subnet within each budget."""
    candidates = uniform_points(problem)
    points, skipped = [], []
    for budget in budgets:
        best = best_within(candidates, {**fixed, axis: budget})
        if best is None:
            reason = f"no uniform subnet has {axis} <= {budget:g} (within the fixed limits)"
            skipped.append({"method": "uniform", "budget": budget, "reason": reason})
            continue
        points.append(dataclasses.replace(best, budget=budget, axis=axis))
    return points, skipped


BASELINES: dict[str, Runner] = {"random": run_random, "uniform": run_uniform}


def list_baselines() -> list[str]:
    return sorted(BASELINES)


def get_baseline(name: str) -> Runner:
    """The runner registered as ``name``; the error lists the valid names."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; available: {list_baselines()}")
    return BASELINES[name]

"""Accuracy-cost sweeps: OFA's search at every budget of a list, the baselines beside it, the
non-dominated set and hypervolume of every method (what ``ofabench pareto`` writes).

The result is one JSON-ready document (``format: ofabench.pareto``) holding every point, the
budgets each could not meet and why, per-axis fronts and hypervolumes, the best accuracy
each method reaches within each budget, the settings and the provenance.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, InfeasibleConstraintError
from .axes import AXES, AXES_INFO
from .pareto import hypervolume_2d, hypervolume_spread, pareto_front
from .points import ParetoPoint, on_axis
from .problem import SearchProblem, result_point, run_searches

logger = logging.getLogger("ofabench")

PARETO_FORMAT = "ofabench.pareto"
SCHEMA_VERSION = 1
SEARCH_METHOD = "evolution"
UNITS = {name: a.unit for name, a in AXES_INFO.items()}


def pareto_sweep(
    problem: SearchProblem,
    axis: str,
    budgets: Sequence[float],
    fixed: Mapping[str, float | None] | None = None,
    population: int = 100,
    generations: int = 500,
    seed: int = 0,
    baselines: Sequence[str] = ("random", "uniform"),
    published: str | None = None,
    external: Sequence[str] = (),
    seeds: int = 1,
    extra_points: Sequence[ParetoPoint] = (),
) -> dict[str, Any]:
    """Run OFA's evolutionary search at every budget on ``axis`` (plus ``fixed`` limits on the
    other axes) and the named baselines; add published, external and ``extra_points``;
    summarise. With ``seeds`` > 1 every run method is repeated with seeds ``seed + 1``, ...
    and the summary gives each method's hypervolume spread over the seeds (the points and
    plots are those of ``seed``)."""
    from ..baselines import get_baseline, load_external_points, load_published

    _check_axis(axis, budgets)
    if seeds < 1:
        raise ConfigError(f"seeds must be >= 1, got {seeds}")
    fixed = {k: v for k, v in (fixed or {}).items() if v is not None and k != axis}
    runners = {name: get_baseline(name) for name in baselines}  # fail fast on unknown names
    run = (problem, axis, budgets, fixed, population, generations, runners)
    points, skipped, context = _run_methods(*run, seed)
    reruns = [_run_methods(*run, seed + i)[0] for i in range(1, seeds)]
    if published:
        points += load_published(published)
    for path in external:
        points += load_external_points(path)
    points += list(extra_points)
    settings = {
        "population": population,
        "generations": generations,
        "seed": seed,
        "seeds": seeds,
        "baselines": list(baselines),
        "published": published,
        "external": [str(p) for p in external],
    }
    document = _document(problem, axis, budgets, fixed, points, skipped, settings, context)
    _add_spread(document, [points, *reruns], device=problem.device)
    return document


def _run_methods(
    problem: SearchProblem,
    axis: str,
    budgets: Sequence[float],
    fixed: Mapping[str, float | None],
    population: int,
    generations: int,
    runners: Mapping[str, Any],
    seed: int,
) -> tuple[list[ParetoPoint], list[dict[str, Any]], dict[str, Any]]:
    """OFA's search at every budget, then every baseline at its evaluation counts."""
    from ..baselines import SweepTask

    points, skipped, context = _search_budgets(
        problem, axis, budgets, fixed, population, generations, seed
    )
    task = SweepTask(problem, axis, tuple(budgets), fixed, context["n_evaluations"], seed)
    for name, baseline in runners.items():
        start = time.perf_counter()
        outcome = baseline.run(task)
        context["timing_s"][name] = time.perf_counter() - start
        context["evaluations"][name] = outcome.n_evaluations
        points += outcome.points
        skipped += outcome.skipped
    return points, skipped, context


def _add_spread(
    document: dict[str, Any], runs: Sequence[Sequence[ParetoPoint]], device: str | None
) -> None:
    """Per axis and run method: the hypervolume of every seed's points against the axis's
    reference point, and their spread (``summary[axis]["hypervolume_spread"]``)."""
    for axis, summary in document["summary"].items():
        ref = summary["reference"]
        if ref is None:
            continue
        spread = {}
        for method in _methods_in_order(p for p in runs[0] if p.kind in ("search", "baseline")):
            per_run = []
            for points in runs:
                mine = [p for p in on_axis(points, axis, device) if p.method == method]
                per_run.append(([p.cost(axis) for p in mine], [p.accuracy for p in mine]))
            result = hypervolume_spread(per_run, ref["cost"], ref["accuracy"])
            spread[method] = {k: _scaled(k, v) for k, v in result.items()}
        summary["hypervolume_spread"] = spread


def _scaled(key: str, value: Any) -> Any:
    """Hypervolumes in (cost unit x accuracy points), as ``summary.hypervolume`` has them."""
    if key == "n":
        return value
    if key == "values":
        return [100.0 * v for v in value]
    return 100.0 * value


def _check_axis(axis: str, budgets: Sequence[float]) -> None:
    if axis not in AXES:
        raise ConfigError(f"unknown sweep axis {axis!r}; allowed: {list(AXES)}")
    if not budgets:
        raise ConfigError("a sweep needs at least one budget")


def _search_budgets(
    problem: SearchProblem,
    axis: str,
    budgets: Sequence[float],
    fixed: Mapping[str, float | None],
    population: int,
    generations: int,
    seed: int,
) -> tuple[list[ParetoPoint], list[dict[str, Any]], dict[str, Any]]:
    points, skipped = [], []
    context: dict[str, Any] = {"n_evaluations": {}, "seed": seed, "timing_s": {}, "evaluations": {}}
    start = time.perf_counter()
    limits = [{**fixed, axis: budget} for budget in budgets]
    results = run_searches(problem, limits, population, generations, seed)
    for budget, result in zip(budgets, results):
        if isinstance(result, InfeasibleConstraintError):
            skipped.append({"method": SEARCH_METHOD, "budget": budget, "reason": str(result)})
            logger.warning("budget %g skipped: %s", budget, result)
            continue
        context["n_evaluations"][budget] = result.n_evaluations
        context["evaluations"][SEARCH_METHOD] = (
            context["evaluations"].get(SEARCH_METHOD, 0) + result.n_evaluations
        )
        points.append(result_point(problem, result, SEARCH_METHOD, axis, budget))
        logger.info("%s <= %g: predicted accuracy %.4f", axis, budget, result.best_score)
    context["timing_s"][SEARCH_METHOD] = time.perf_counter() - start
    if not points:
        raise InfeasibleConstraintError(
            f"no budget of the sweep can be met; the first: {skipped[0]['reason']}"
        )
    return points, skipped, context


# -- summaries ---------------------------------------------------------------------------------
def summarize_axis(
    points: Sequence[ParetoPoint],
    axis: str,
    device: str | None,
    ref_cost: float | None = None,
) -> dict[str, Any]:
    """Per method on ``axis``: the ids (positions in ``points``) of its non-dominated points and
    its hypervolume, all against one reference point (``ref_cost``, default the largest cost
    of the searched points; accuracy 1 point below the worst point considered, floored)."""
    ids = [i for i, p in enumerate(points) if on_axis([p], axis, device)]
    if not ids:
        return {"reference": None, "fronts": {}, "hypervolume": {}}
    if ref_cost is None:
        searched = [points[i].cost(axis) for i in ids if points[i].kind == "search"]
        ref_cost = max(searched or [points[i].cost(axis) for i in ids])
    inside = [i for i in ids if points[i].cost(axis) <= ref_cost]
    worst = min((points[i].accuracy for i in inside), default=0.0)
    ref_score = math.floor(worst * 100.0 - 1.0) / 100.0
    fronts, volumes = {}, {}
    for method, members in _by_method(points, ids).items():
        costs = np.array([points[i].cost(axis) for i in members])
        accs = np.array([points[i].accuracy for i in members])
        fronts[method] = [members[j] for j in pareto_front(costs, accs)]
        volumes[method] = 100.0 * hypervolume_2d(costs, accs, ref_cost, ref_score)
    return {
        "reference": {"cost": ref_cost, "accuracy": ref_score},
        "fronts": fronts,
        "hypervolume": volumes,
    }


def best_at_budgets(
    points: Sequence[ParetoPoint], axis: str, budgets: Sequence[float], device: str | None
) -> dict[str, dict[str, float | None]]:
    """For every method, the best accuracy among its points costing at most each budget."""
    table: dict[str, dict[str, float | None]] = {}
    usable = on_axis(points, axis, device)
    for method in _methods_in_order(usable):
        mine = [p for p in usable if p.method == method]
        table[method] = {
            _budget_key(b): max((p.accuracy for p in mine if p.cost(axis) <= b), default=None)
            for b in budgets
        }
    return table


def _budget_key(budget: float) -> str:
    return f"{budget:g}"


def _by_method(points: Sequence[ParetoPoint], ids: Iterable[int]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i in ids:
        groups.setdefault(points[i].method, []).append(i)
    return groups


def _methods_in_order(points: Iterable[ParetoPoint]) -> list[str]:
    return list(dict.fromkeys(p.method for p in points))


def _document(
    problem: SearchProblem,
    axis: str,
    budgets: Sequence[float],
    fixed: Mapping[str, float | None],
    points: list[ParetoPoint],
    skipped: list[dict[str, Any]],
    settings: dict[str, Any],
    context: Mapping[str, Any],
) -> dict[str, Any]:
    from ..provenance import provenance

    device = problem.device
    axes = [axis] + [a for a in ("mmacs",) if a != axis]
    summary = {
        a: summarize_axis(points, a, device, max(budgets) if a == axis else None) for a in axes
    }
    return {
        "format": PARETO_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "space": problem.space.name,
        "space_mismatch": problem.space_mismatch,
        "resolutions": list(problem.space.resolutions),
        "device": device,
        "axis": axis,
        "unit": UNITS[axis],
        "budgets": [float(b) for b in budgets],
        "fixed": dict(fixed),
        "settings": settings,
        "points": [p.to_dict() for p in points],
        "skipped": skipped,
        "summary": summary,
        "best_at_budget": best_at_budgets(points, axis, budgets, device),
        "timing_s": dict(context["timing_s"]),
        "evaluations": dict(context["evaluations"]),
        "sources": dict(problem.sources),
        "provenance": provenance(),
    }


def with_points(document: Mapping[str, Any], extra: Sequence[ParetoPoint]) -> dict[str, Any]:
    """A saved sweep ``document`` with ``extra`` points added (measured points, say) and its
    summaries recomputed from all points; its searches are not run again."""
    points = points_of(document) + list(extra)
    axis, budgets, device = document["axis"], document["budgets"], document.get("device")
    summary = {}
    for a, old in document["summary"].items():
        limit = max(budgets) if a == axis else None
        summary[a] = {**old, **summarize_axis(points, a, device, limit)}
    return {
        **document,
        "points": [p.to_dict() for p in points],
        "summary": summary,
        "best_at_budget": best_at_budgets(points, axis, budgets, device),
    }


def load_sweep(path: str) -> dict[str, Any]:
    """Read a document written by :func:`pareto_sweep` (checks its format and version)."""
    import json
    from pathlib import Path

    from ..files import read_text

    file = Path(path)
    if not file.exists():
        raise ConfigError(f"pareto file {file} does not exist; write one with `ofabench pareto`")
    try:
        data = json.loads(read_text(file, "pareto file"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"pareto file {file} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != PARETO_FORMAT:
        raise ConfigError(f"{file} is not an ofabench pareto file (format {PARETO_FORMAT!r})")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(
            f"{file} has schema version {data.get('schema_version')}; this ofabench reads "
            f"{SCHEMA_VERSION}"
        )
    _check_document(file, data)
    return data


# the keys a pareto document must have, with their JSON types (what the report reads)
DOCUMENT_KEYS = {
    "space": str, "resolutions": list, "axis": str, "unit": str, "budgets": list,
    "settings": dict, "points": list, "summary": dict, "best_at_budget": dict, "sources": dict,
}  # fmt: skip


def _check_document(file: Any, data: Mapping[str, Any]) -> None:
    for key, kind in DOCUMENT_KEYS.items():
        if not isinstance(data.get(key), kind):
            raise ConfigError(
                f"pareto file {file}: {key!r} is missing or not a {kind.__name__}; "
                "write the file with `ofabench pareto`"
            )
    try:
        points_of(data)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"pareto file {file}: a point is malformed: {exc}") from exc


def points_of(document: Mapping[str, Any]) -> list[ParetoPoint]:
    """The points of a pareto document as :class:`ParetoPoint` objects."""
    return [ParetoPoint.from_dict(p) for p in document["points"]]

"""Uniform scaling: one kernel size, expand ratio and depth for every block, at every resolution.

This is how MobileNet-style families are scaled by hand (a width/depth/resolution knob for the
whole network). All ``|K| x |E| x |D| x |R|`` uniform subnets are evaluated once; at each budget
the best one that meets it is the baseline's point.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from ..search.points import ParetoPoint
from ..space import ArchConfig, SpaceSpec
from .base import Baseline, BaselineOutcome, SweepTask


class UniformScaling(Baseline):
    """The most accurate uniform subnet within each budget (no search: every uniform subnet is
    scored once, which the outcome counts as its evaluations)."""

    name = "uniform"
    label = "Uniform scaling (same k/e/d in every block)"

    def run(self, task: SweepTask) -> BaselineOutcome:
        candidates = uniform_points(task.problem, self.name)
        outcome = BaselineOutcome([], [], len(candidates))
        for budget in task.budgets:
            best = best_within(candidates, task.limits(budget))
            if best is None:
                reason = (
                    f"no uniform subnet has {task.axis} <= {budget:g} (within the fixed limits)"
                )
                outcome.skipped.append({"method": self.name, "budget": budget, "reason": reason})
                continue
            outcome.points.append(dataclasses.replace(best, budget=budget, axis=task.axis))
        return outcome


def uniform_archs(space: SpaceSpec) -> list[ArchConfig]:
    """Every uniform subnet of ``space``: kernel x expand x depth x resolution, in that order."""
    return [
        space.uniform(k, e, d, r)
        for k, e, d, r in itertools.product(
            space.kernel_choices, space.expand_choices, space.depth_choices, space.resolutions
        )
    ]


def uniform_points(problem: object, method: str = "uniform") -> list[ParetoPoint]:
    """All uniform subnets of ``problem.space`` with predicted accuracy and costs."""
    archs = uniform_archs(problem.space)  # type: ignore[attr-defined]
    values = problem.measure(archs)  # type: ignore[attr-defined]
    device = getattr(problem, "device", None)
    return [_point(method, arch, values, i, device) for i, arch in enumerate(archs)]


def _point(
    method: str, arch: ArchConfig, values: Mapping[str, np.ndarray], i: int, device: str | None
) -> ParetoPoint:
    latency = values.get("latency_ms")
    return ParetoPoint(
        method=method,
        accuracy=float(values["accuracy"][i]),
        latency_ms=None if latency is None else float(latency[i]),
        mmacs=float(values["mmacs"][i]),
        mparams=float(values["mparams"][i]),
        device=device if latency is not None else None,
        kind="baseline",
        source="ofabench uniform scaling",
        model=f"k{arch.ks[0]} e{arch.e[0]} d{arch.d[0]} r{arch.r}",
        arch=arch.to_dict(),
    )


def best_within(
    points: Sequence[ParetoPoint], limits: Mapping[str, float | None]
) -> ParetoPoint | None:
    """The most accurate point meeting every limit (axis -> limit; None means no limit)."""
    feasible = [p for p in points if _meets(p, limits)]
    return max(feasible, key=lambda p: p.accuracy, default=None)


def _meets(point: ParetoPoint, limits: Mapping[str, float | None]) -> bool:
    for axis, limit in limits.items():
        value = point.cost(axis)
        if limit is not None and (value is None or value > limit):
            return False
    return True

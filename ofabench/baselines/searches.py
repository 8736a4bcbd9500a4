"""Run baselines that search: random search, regularized (aging) evolution and local search
at every budget, NSGA-II once for the whole front, all at OFA's number of evaluations."""

from __future__ import annotations

from typing import Any

from ..search.points import ParetoPoint
from .base import Baseline, BaselineOutcome, PerBudgetSearch, SweepTask

RANDOM_BATCH = 1000


class RandomSearch(PerBudgetSearch):
    name = "random"
    label = "Random search, equal evaluations"

    def search(self, problem: Any, constraints: list[Any], n_evaluations: int, seed: int) -> Any:
        from ..search.evolution import random_search

        predict = problem.predictor.predict
        return random_search(
            problem.space, predict, constraints, n_evaluations, seed=seed, batch_size=RANDOM_BATCH
        )


class AgingEvolution(PerBudgetSearch):
    name = "aging_evolution"
    label = "Regularized (aging) evolution, equal evaluations"

    def search(self, problem: Any, constraints: list[Any], n_evaluations: int, seed: int) -> Any:
        from ..search.algorithms import aging_evolution

        predict = problem.predictor.predict
        return aging_evolution(problem.space, predict, constraints, n_evaluations, seed=seed)


class LocalSearch(PerBudgetSearch):
    name = "local_search"
    label = "Local search from the best random subnet, equal evaluations"

    def search(self, problem: Any, constraints: list[Any], n_evaluations: int, seed: int) -> Any:
        from ..search.algorithms import local_search

        predict = problem.predictor.predict
        return local_search(problem.space, predict, constraints, n_evaluations, seed=seed)


class NSGA2(Baseline):
    """pymoo's NSGA-II, one run over the whole sweep with OFA's total evaluations; its final
    non-dominated feasible set are the points (costs up to the largest budget)."""

    name = "nsga2"
    label = "NSGA-II (pymoo), one run, equal total evaluations"

    def __init__(self, population: int = 100) -> None:
        self.population = population

    def run(self, task: SweepTask) -> BaselineOutcome:
        from ..search.nsga2 import nsga2

        problem = task.problem
        constraints = problem.constraints(task.limits(max(task.budgets)))
        (cost,) = [c for c in constraints if c.name == task.axis]
        others = [c for c in constraints if c is not cost]
        front = nsga2(
            problem.space,
            problem.predictor.predict,
            cost,
            others,
            task.total_evaluations,
            self.population,
            task.seed,
        )
        points = self._points(problem, front, task.axis)
        return BaselineOutcome(points, [], front.n_evaluations)

    def _points(self, problem: Any, front: Any, axis: str) -> list[ParetoPoint]:
        values = problem.measure(front.archs)
        source = f"pymoo NSGA-II, one run ({front.n_evaluations} evaluations)"
        return [
            ParetoPoint(
                method=self.name,
                accuracy=float(values["accuracy"][i]),
                latency_ms=_value(values, "latency_ms", i),
                mmacs=float(values["mmacs"][i]),
                mparams=float(values["mparams"][i]),
                device=problem.device if "latency_ms" in values else None,
                axis=axis,
                kind="baseline",
                source=source,
                arch=arch.to_dict(),
            )
            for i, arch in enumerate(front.archs)
        ]


def _value(values: dict[str, Any], key: str, i: int) -> float | None:
    return float(values[key][i]) if key in values else None

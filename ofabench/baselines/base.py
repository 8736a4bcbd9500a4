"""The baseline interface: a named method that, given the sweep a user asked for, returns
accuracy-cost points at the same number of predictor evaluations as OFA's search.

A baseline is a :class:`Baseline` subclass with a ``name`` and a ``run(task)`` method (like
optuna's ``BaseSampler``); searches run once per budget subclass :class:`PerBudgetSearch` and
implement only ``search``. Baselines register by name (:mod:`.registry`), third-party ones
through the ``ofabench.baselines`` entry-point group.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import InfeasibleConstraintError
from ..search.points import ParetoPoint

logger = logging.getLogger("ofabench")

Skipped = dict[str, Any]
DEFAULT_EVALUATIONS = 100 * 501  # OFA's search at its defaults (population 100, 500 generations)


@dataclass(frozen=True)
class SweepTask:
    """What a baseline is asked: the search problem (space, predictor, latency model), the swept
    ``axis`` and its ``budgets``, ``fixed`` limits on the other axes, the number of
    architectures OFA's search scored at each budget, and the seed."""

    problem: Any
    axis: str
    budgets: Sequence[float]
    fixed: Mapping[str, float | None] = field(default_factory=dict)
    n_evaluations: Mapping[float, int] = field(default_factory=dict)
    seed: int = 0

    def limits(self, budget: float) -> dict[str, float | None]:
        return {**self.fixed, self.axis: budget}

    def evaluations(self, budget: float) -> int:
        """OFA's evaluation count at ``budget`` (its default search's when not known)."""
        return int(self.n_evaluations.get(budget, DEFAULT_EVALUATIONS))

    @property
    def total_evaluations(self) -> int:
        """OFA's evaluations over the whole sweep (budgets it could not meet count nothing)."""
        known = [self.n_evaluations[b] for b in self.budgets if b in self.n_evaluations]
        return int(sum(known)) if known else DEFAULT_EVALUATIONS * len(self.budgets)


@dataclass
class BaselineOutcome:
    """A baseline's points, the budgets it could not meet (``{"method", "budget", "reason"}``)
    and the predictor evaluations it used in all."""

    points: list[ParetoPoint]
    skipped: list[Skipped] = field(default_factory=list)
    n_evaluations: int = 0


class Baseline(ABC):
    """A method compared against OFA's search. Subclasses set ``name`` (the registry key and
    the points' method) and ``label`` (how reports name it) and implement :meth:`run`."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""

    @abstractmethod
    def run(self, task: SweepTask) -> BaselineOutcome:
        """The baseline's points for ``task``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class PerBudgetSearch(Baseline):
    """A single-objective search run at every budget with as many predictor evaluations as
    OFA's search used there; subclasses implement :meth:`search`."""

    @abstractmethod
    def search(self, problem: Any, constraints: list[Any], n_evaluations: int, seed: int) -> Any:
        """The :class:`~ofabench.search.SearchResult` of one constrained search."""

    def run(self, task: SweepTask) -> BaselineOutcome:
        from ..search.problem import result_point

        outcome = BaselineOutcome([])
        for budget in task.budgets:
            constraints = task.problem.constraints(task.limits(budget))
            try:
                result = self.search(task.problem, constraints, task.evaluations(budget), task.seed)
            except InfeasibleConstraintError as exc:
                outcome.skipped.append({"method": self.name, "budget": budget, "reason": str(exc)})
                continue
            outcome.n_evaluations += result.n_evaluations
            point = result_point(task.problem, result, self.name, task.axis, budget, "baseline")
            outcome.points.append(point)
        return outcome

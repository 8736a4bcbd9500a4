"""NSGA-II (Deb et al., 2002) through pymoo: one run gives a whole accuracy-cost front.

Objectives: minimise the swept cost (latency, MACs or parameters) and maximise the predicted
accuracy; constraints: the largest budget on that axis and any fixed limits on the others.
Genes are the search's choice indices (``ks | e | d | r``) as pymoo integer variables,
with pymoo's integer operators (random sampling, SBX crossover and polynomial mutation with
rounding repair); the first population is the engine's feasible random sample, like every
other method's. Only feasible architectures are scored by the predictor, and exactly
``n_evals`` of them: the last offspring batch is cut where the budget runs out.

pymoo is an optional dependency (``pip install ofabench[search]``), imported only here, when
:func:`nsga2` runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..blas import single_threaded_blas
from ..errors import ConfigError, require
from ..space import ArchConfig, SpaceSpec
from .evolution import BatchFn, Constraint, _Engine, _initial_population, _Pool

OFA_CHILD_SETTINGS = {"mutate_prob": 0.1, "resolution_mutate_prob": 0.5}
MAX_STALLS = 50  # generations in a row without a new feasible child end the run early


@dataclass(frozen=True)
class FrontResult:
    """The non-dominated feasible architectures a multi-objective search ended with, sorted by
    cost, with their scores and costs (``costs[name]`` per constraint)."""

    archs: list[ArchConfig]
    scores: np.ndarray
    costs: dict[str, np.ndarray]
    n_evaluations: int
    wall_time_s: float
    method: str = "nsga2"
    settings: dict[str, Any] = field(default_factory=dict)


def nsga2(
    space: SpaceSpec,
    predict_fn: BatchFn,
    cost: Constraint,
    constraints: Sequence[Constraint] = (),
    n_evals: int = 50_100,
    population: int = 100,
    seed: int = 0,
    max_rounds: int = 50,
) -> FrontResult:
    """NSGA-II over ``space``: minimise ``cost`` (its ``limit`` bounds the front) and maximise
    ``predict_fn`` under ``constraints``, scoring exactly ``n_evals`` feasible architectures."""
    if n_evals < 1 or population < 2:
        raise ConfigError(
            f"nsga2 needs n_evals >= 1 and population >= 2; got {n_evals}, {population}"
        )
    start = time.perf_counter()
    with single_threaded_blas():
        engine = _Engine(space, predict_fn, [cost, *constraints], seed, max_rounds, True)
        engine.check_reachable("nsga2")
        algorithm, problem = _setup(engine, min(population, n_evals), seed)
        _generations(algorithm, problem, engine, n_evals)
    run = {"n_evals": n_evals, "population": population, "seed": seed, "library": _library()}
    return _front(engine, problem, algorithm.opt.get("X"), start, run)


def _generations(algorithm: Any, problem: Any, engine: _Engine, n_evals: int) -> None:
    """Ask-and-tell until ``n_evals`` feasible architectures are scored (or the population
    stops producing new feasible children)."""
    stalls = 0
    while engine.n_evaluations < n_evals and stalls < MAX_STALLS:
        before = engine.n_evaluations
        infills = algorithm.ask()
        infills = infills[: problem.cut(infills.get("X"), n_evals - engine.n_evaluations)]
        algorithm.evaluator.eval(problem, infills)
        algorithm.tell(infills=infills)
        stalls = stalls + 1 if engine.n_evaluations == before else 0


def _setup(engine: _Engine, population: int, seed: int) -> tuple[Any, Any]:
    require("pymoo", "search")
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.termination import NoTermination
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair

    problem = _problem_class()(engine)
    start = _initial_population(engine, population, OFA_CHILD_SETTINGS)
    algorithm = NSGA2(
        pop_size=population,
        sampling=start.genes.astype(np.float64),
        crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=20, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    algorithm.setup(problem, termination=NoTermination(), seed=seed, verbose=False)
    first = algorithm.ask()  # the first population, scored already: read from the cache
    problem.from_cache = True
    algorithm.evaluator.eval(problem, first)
    problem.from_cache = False
    algorithm.tell(infills=first)
    return algorithm, problem


def _problem_class() -> type:
    from pymoo.core.problem import Problem

    class SubnetProblem(Problem):
        """Rows of choice indices -> (cost, -accuracy) and constraint slack (<= 0 feasible)."""

        def __init__(self, engine: _Engine) -> None:
            upper = engine.genome.counts - 1
            n_constr = len(engine.constraints)
            super().__init__(n_var=len(upper), n_obj=2, n_ieq_constr=n_constr, xl=0, xu=upper)
            self.engine = engine
            self.from_cache = False

        def genes(self, x: np.ndarray) -> np.ndarray:
            upper = self.engine.genome.counts - 1
            return np.clip(np.rint(x), 0, upper).astype(np.uint8)

        def cut(self, x: np.ndarray, budget: int) -> int:
            """How many leading rows of ``x`` hold at most ``budget`` feasible ones."""
            ok, _ = self.engine.feasibility.check(self.genes(x))
            return int(np.searchsorted(np.cumsum(ok), budget, side="right"))

        def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            genes = self.genes(x)
            ok, values = self.engine.feasible(genes)
            scores = np.zeros(len(genes))
            if self.from_cache:
                scores[ok] = _cached(self.engine, genes[ok])
            elif ok.any():
                scores[ok] = self.engine.score(_Pool(genes[ok])).scores  # type: ignore[assignment]
            out["F"] = np.stack([values[:, 0], -scores], axis=1)
            out["G"] = values - self.engine.feasibility.limits

    return SubnetProblem


def _front(
    engine: _Engine, problem: Any, x: np.ndarray, start: float, run: dict[str, Any]
) -> FrontResult:
    genes = problem.genes(np.atleast_2d(x))
    ok, values = engine.feasibility.check(genes)
    genes, values = genes[ok], values[ok]
    scores = _cached(engine, genes)
    order = np.lexsort((-scores, values[:, 0]))
    archs = engine.genome.to_batch(engine.genome.values(genes[order])).to_archs()
    costs = {c.name: values[order, i] for i, c in enumerate(engine.constraints)}
    return FrontResult(
        archs=archs,
        scores=scores[order],
        costs=costs,
        n_evaluations=engine.n_evaluations,
        wall_time_s=time.perf_counter() - start,
        settings={**run, "space": engine.space.name, "n_predicted": engine.n_predicted},
    )


def _cached(engine: _Engine, genes: np.ndarray) -> np.ndarray:
    """Scores of rows the engine has scored already (no new evaluation)."""
    cache = engine.cache
    assert cache is not None
    return np.array([cache[k] for k in engine._cache_keys(genes)], dtype=np.float64)


def _library() -> str:
    from importlib.metadata import version

    return f"pymoo {version('pymoo')}"

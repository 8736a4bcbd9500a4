"""NSGA-II (Deb et al., 2002) through pymoo: one run gives a whole accuracy-cost front.

Objectives: minimise the swept cost (latency, MACs or parameters) and maximise the predicted
accuracy; constraints: the largest budget on that axis and any fixed limits on the others.
Genes are the search's choice indices (``ks | e | d | r``) as pymoo integer variables,
with pymoo's operators for them (SBX crossover and polynomial mutation with rounding repair,
distribution index 3); the first population is the engine's feasible random sample, like every
other method's. Only feasible architectures are scored by the predictor, and exactly
``n_evals`` of them: the last offspring batch is cut where the budget runs out.

Two engines run the same algorithm with pymoo's settings for NSGA2:

- ``"arrays"`` (default): the population lives in numpy arrays, and pymoo's own functions do
  the non-dominated sorting, crowding distances, SBX crossover and polynomial mutation; the
  loop around them (binary tournament by constraint violation, domination, then crowding;
  duplicate elimination; rank-and-crowding survival with infeasible rows last by violation) is
  ours, a few vectorised lines.
- ``"pymoo"``: pymoo's ``NSGA2`` class itself, ask-and-tell. Its population is a list of
  per-individual objects, which costs about 0.13 ms per evaluation here (65 s of pure
  bookkeeping at the ImageNet sweep's 501k evaluations; ``benchmarks/bench_nsga2.py`` compares
  the two engines' time and hypervolume).

pymoo is an optional dependency (``pip install ofabench[search]``), imported only here, when
:func:`nsga2` runs.
"""

from __future__ import annotations

import math
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
ENGINES = ("arrays", "pymoo")
# The operators of pymoo's guide to discrete variables (SBX and polynomial mutation on floats,
# rounded, both with probability 1 and distribution index 3), which both engines use. With the
# continuous defaults (SBX eta 15 with probability 0.9, mutation eta 20) a mutated gene of 2-4
# choices rounds back to its parent's value almost always: 0.025% of the ImageNet space's genes
# changed (tests/test_nas_baselines.py checks the rate).
SBX_PROB, SBX_ETA, SBX_PROB_VAR, SBX_PROB_BIN = 1.0, 3.0, 0.5, 0.5
PM_PROB, PM_ETA = 1.0, 3.0
MAX_INFILL_ITERATIONS = 100  # mating rounds to find a generation's new offspring


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
    engine: str = "arrays",
) -> FrontResult:
    """NSGA-II over ``space``: minimise ``cost`` (its ``limit`` bounds the front) and maximise
    ``predict_fn`` under ``constraints``, scoring exactly ``n_evals`` feasible architectures.
    ``engine``: ``"arrays"`` or ``"pymoo"`` (see the module's docstring)."""
    if n_evals < 1 or population < 2:
        raise ConfigError(
            f"nsga2 needs n_evals >= 1 and population >= 2; got {n_evals}, {population}"
        )
    if engine not in ENGINES:
        raise ConfigError(f"unknown NSGA-II engine {engine!r}; allowed: {', '.join(ENGINES)}")
    require("pymoo", "search")
    start = time.perf_counter()
    with single_threaded_blas():
        state = _Engine(space, predict_fn, [cost, *constraints], seed, max_rounds, True)
        state.check_reachable("nsga2")
        size = min(population, n_evals)
        if engine == "pymoo":
            algorithm, problem = _setup(state, size, seed)
            _generations(algorithm, problem, state, n_evals)
            x = algorithm.opt.get("X")
        else:
            x = _ArrayNSGA2(state, size, seed).run(n_evals)
    run = {
        "n_evals": n_evals,
        "population": population,
        "seed": seed,
        "library": _library(),
        "engine": engine,
        "operators": {
            "sbx": {"prob": SBX_PROB, "eta": SBX_ETA, "prob_var": SBX_PROB_VAR},
            "pm": {"prob": PM_PROB, "eta": PM_ETA, "prob_var": "1/n_var"},
        },
    }
    return _front(state, x, start, run)


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
        crossover=SBX(prob=SBX_PROB, eta=SBX_ETA, vtype=float, repair=RoundingRepair()),
        mutation=PM(prob=PM_PROB, eta=PM_ETA, vtype=float, repair=RoundingRepair()),
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

        def cut(self, x: np.ndarray, budget: int) -> int:
            return _cut(self.engine, x, budget)

        def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            out["F"], slack = _objectives(self.engine, x, self.from_cache)
            out["G"] = slack

    return SubnetProblem


def _genes(engine: _Engine, x: np.ndarray) -> np.ndarray:
    """pymoo's float variables -> rows of choice indices."""
    return np.clip(np.rint(x), 0, engine.genome.counts - 1).astype(np.uint8)


def _cut(engine: _Engine, x: np.ndarray, budget: int) -> int:
    """How many leading rows of ``x`` hold at most ``budget`` feasible ones."""
    ok, _ = engine.feasibility.check(_genes(engine, x))
    return int(np.searchsorted(np.cumsum(ok), budget, side="right"))


def _objectives(
    engine: _Engine, x: np.ndarray, from_cache: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Objectives ``(cost, -accuracy)`` and constraint slack (``<= 0`` feasible) of rows;
    only the feasible ones are scored (``from_cache``: scored already)."""
    genes = _genes(engine, x)
    ok, values = engine.feasible(genes)
    scores = np.zeros(len(genes))
    if from_cache:
        scores[ok] = _cached(engine, genes[ok])
    elif ok.any():
        scores[ok] = engine.score(_Pool(genes[ok])).scores  # type: ignore[assignment]
    return np.stack([values[:, 0], -scores], axis=1), values - engine.feasibility.limits


class _ArrayNSGA2:
    """The ``"arrays"`` engine: pymoo's NSGA2 generation (``pop_size`` offspring by binary
    tournament, SBX and polynomial mutation with rounding, duplicates of the population and of
    each other dropped; survival by rank and crowding distance, infeasible rows after the
    feasible ones by their constraint violation) on a population held in arrays."""

    def __init__(self, engine: _Engine, population: int, seed: int) -> None:
        from pymoo.operators.survival.rank_and_crowding.metrics import get_crowding_function
        from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

        self.ops = pymoo_array_functions()

        self.engine = engine
        self.size = population
        self.rng = np.random.default_rng(seed)
        self.xl = np.zeros(len(engine.genome.counts))
        self.xu = (engine.genome.counts - 1).astype(np.float64)
        self.nds = NonDominatedSorting()
        self.crowding_fn = get_crowding_function("cd")
        self.new_share = 1.0  # running share of mated rows that are new
        start = _initial_population(engine, population, OFA_CHILD_SETTINGS)
        x = start.genes.astype(np.float64)
        f, slack = _objectives(engine, x, from_cache=True)
        self._survive(x, f, _violation(slack))

    def run(self, n_evals: int) -> np.ndarray:
        """Generations until ``n_evals`` feasible architectures are scored; the final
        population's non-dominated feasible rows."""
        engine, stalls = self.engine, 0
        while engine.n_evaluations < n_evals and stalls < MAX_STALLS:
            before = engine.n_evaluations
            off = self._offspring()
            if not len(off):
                break
            off = off[: _cut(engine, off, n_evals - engine.n_evaluations)]
            f, slack = _objectives(engine, off)
            self._survive(
                np.concatenate([self.x, off]),
                np.concatenate([self.f, f]),
                np.concatenate([self.cv, _violation(slack)]),
            )
            stalls = stalls + 1 if engine.n_evaluations == before else 0
        feasible = np.flatnonzero(self.cv <= 0)
        if not len(feasible):
            return self.x[:0]
        first = self.nds.do(self.f[feasible], only_non_dominated_front=True)
        return self.x[feasible[first]]

    # -- survival ---------------------------------------------------------------------------
    def _survive(self, x: np.ndarray, f: np.ndarray, cv: np.ndarray) -> None:
        n = min(self.size, len(x))
        rank = np.full(len(x), np.inf)
        crowding = np.zeros(len(x))
        feasible = np.flatnonzero(cv <= 0)
        kept: list[np.ndarray] = []
        n_kept = 0
        if len(feasible):
            want = min(len(feasible), n)
            for k, front in enumerate(self.nds.do(f[feasible], n_stop_if_ranked=want)):
                extra = n_kept + len(front) - want
                distance = self.crowding_fn.do(f[feasible[front]], n_remove=max(extra, 0))
                order = np.arange(len(front))
                if extra > 0:
                    order = self.ops.randomized_argsort(
                        distance, order="descending", method="numpy", random_state=self.rng
                    )[:-extra]
                rank[feasible[front]] = k
                crowding[feasible[front]] = distance
                kept.append(feasible[front[order]])
                n_kept += len(order)
        infeasible = np.flatnonzero(cv > 0)
        kept.append(infeasible[np.argsort(cv[infeasible], kind="stable")][: n - n_kept])
        idx = np.concatenate(kept).astype(np.intp)
        self.x, self.f, self.cv = x[idx], f[idx], cv[idx]
        self.rank, self.crowding = rank[idx], crowding[idx]

    # -- mating -----------------------------------------------------------------------------
    def _offspring(self) -> np.ndarray:
        """``size`` new rows (fewer if the mating rounds run out): none equal to a member of
        the population or to each other."""
        taken = set(_row_keys(self.x))
        found: list[np.ndarray] = []
        have = 0
        for _ in range(MAX_INFILL_ITERATIONS):
            if have >= self.size:
                break
            need = self.size - have
            # mate as many as will likely give ``need`` new rows (pymoo mates ``need`` and
            # repeats; the first new rows of a longer batch are the same draw, in fewer rounds)
            rows = self._mate(min(math.ceil(need / self.new_share * 1.2), 4 * self.size))
            new = []
            for i, key in enumerate(_row_keys(rows)):
                if key not in taken:
                    taken.add(key)
                    new.append(i)
            self.new_share = max(0.5 * self.new_share + 0.5 * len(new) / len(rows), 0.05)
            rows = rows[new][:need]
            found.append(rows)
            have += len(rows)
        return np.concatenate(found) if found else self.x[:0]

    def _mate(self, n_offspring: int) -> np.ndarray:
        parents = self._select(math.ceil(n_offspring / 2))
        return self._vary(np.stack([self.x[parents[:, 0]], self.x[parents[:, 1]]]))

    def _vary(self, x: np.ndarray) -> np.ndarray:
        """Two children per mating from parents ``x`` (2, n_matings, n_var): SBX (applied to a
        mating with probability ``SBX_PROB``, else its parents are copied), rounding, then
        polynomial mutation of each child with probability ``PM_PROB``, rounding."""
        rng, n_var, n_matings = self.rng, len(self.xl), x.shape[1]
        children = x.copy()
        cross = rng.random(n_matings) < SBX_PROB
        if cross.any():
            column = np.ones((n_matings, 1))
            q = self.ops.cross_sbx(
                x, self.xl, self.xu, SBX_ETA * column, SBX_PROB_VAR * column,
                SBX_PROB_BIN * column, random_state=rng,
            )  # fmt: skip
            children[:, cross] = q[:, cross]
        children = np.around(children.reshape(-1, n_var))
        n = len(children)
        mutated = self.ops.mut_pm(
            children, self.xl, self.xu, np.full(n, PM_ETA), np.full(n, min(0.5, 1 / n_var)),
            at_least_once=False, random_state=rng,
        )  # fmt: skip
        hit = rng.random(n) <= PM_PROB
        children[hit] = np.around(mutated[hit])
        return children

    def _select(self, n_matings: int) -> np.ndarray:
        """Two parents per mating, each the winner of a binary tournament between members
        drawn as pymoo draws them (consecutive random permutations of the population)."""
        n_random = n_matings * 2 * 2
        n_perms = math.ceil(n_random / len(self.x))
        pairs = self.ops.random_permutations(n_perms, len(self.x), random_state=self.rng)[:n_random]
        a, b = pairs.reshape(-1, 2).T
        return self._tournament(a, b).reshape(n_matings, 2)

    def _tournament(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Winners of members ``a[i]`` against ``b[i]``: the smaller constraint violation if
        either is infeasible, else the dominating one, else the larger crowding distance; ties
        at random."""
        coin = np.where(self.rng.random(len(a)) < 0.5, a, b)
        cv, f, cd = self.cv, self.f, self.crowding
        by_cv = np.where(cv[a] < cv[b], a, np.where(cv[b] < cv[a], b, coin))
        a_dominates = (f[a] <= f[b]).all(axis=1) & (f[a] < f[b]).any(axis=1)
        b_dominates = (f[b] <= f[a]).all(axis=1) & (f[b] < f[a]).any(axis=1)
        by_cd = np.where(cd[a] > cd[b], a, np.where(cd[b] > cd[a], b, coin))
        by_front = np.where(a_dominates, a, np.where(b_dominates, b, by_cd))
        return np.where((cv[a] > 0) | (cv[b] > 0), by_cv, by_front)


def pymoo_array_functions() -> Any:
    """pymoo's functions the arrays engine calls every generation, imported once."""
    import types

    from pymoo.operators.crossover.sbx import cross_sbx
    from pymoo.operators.mutation.pm import mut_pm
    from pymoo.util.misc import random_permutations
    from pymoo.util.randomized_argsort import randomized_argsort

    return types.SimpleNamespace(
        cross_sbx=cross_sbx,
        mut_pm=mut_pm,
        random_permutations=random_permutations,
        randomized_argsort=randomized_argsort,
    )


def _violation(slack: np.ndarray) -> np.ndarray:
    """pymoo's constraint violation: the summed positive slack of the constraints."""
    return np.maximum(slack, 0.0).sum(axis=1)


def _row_keys(x: np.ndarray) -> list[bytes]:
    rows = np.ascontiguousarray(x.astype(np.uint8))
    return rows.view(np.dtype((np.void, rows.shape[1]))).ravel().tolist()


def _front(engine: _Engine, x: np.ndarray, start: float, run: dict[str, Any]) -> FrontResult:
    genes = _genes(engine, np.atleast_2d(x))
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

"""NAS search algorithms used as baselines for OFA's evolution, on the same engine (feasible
sampling, exact additive constraints, cached scores) and with an exact evaluation budget:

- :func:`aging_evolution`: regularized (aging) evolution (Real et al., 2019, "Regularized
  Evolution for Image Classifier Architecture Search"): tournament selection of ``sample_size``
  members, a one-gene mutation of the winner, the *oldest* member removed. Children are made
  ``batch`` at a time (each from its own tournament), as the paper's parallel workers do;
- :func:`local_search`: hill climbing from the best of ``n_initial`` random architectures:
  evaluate every neighbour (one gene changed), move to the best if it improves, else restart
  from a fresh random architecture (as in White et al., 2021, "Local search is state of the art
  for neural architecture search benchmarks").

Both score exactly ``n_evals`` architectures (counted like :func:`~.evolution.evolve` counts
them: every scored row, cached or not). Pure numpy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..blas import single_threaded_blas
from ..errors import ConfigError
from ..space import SpaceSpec
from .evolution import (
    BatchFn,
    Constraint,
    SearchResult,
    _as_constraints,
    _Engine,
    _initial_population,
    _Pool,
    _result,
    _top,
)

OFA_CHILD_SETTINGS = {
    "mutate_prob": 0.1,
    "resolution_mutate_prob": 0.5,
}  # only to fill a short start


def _check(n_evals: int, **positive: int) -> None:
    bad = {k: v for k, v in {"n_evals": n_evals, **positive}.items() if v < 1}
    if bad:
        raise ConfigError(f"search settings must be >= 1; got {bad}")


# -- regularized (aging) evolution ---------------------------------------------------------------
def aging_evolution(
    space: SpaceSpec,
    predict_fn: BatchFn,
    constraints: Constraint | Sequence[Constraint] | None = (),
    n_evals: int = 50_100,
    population: int = 100,
    sample_size: int = 25,
    batch: int = 10,
    seed: int = 0,
    max_rounds: int = 50,
) -> SearchResult:
    """Regularized evolution maximising ``predict_fn`` under the constraints, scoring exactly
    ``n_evals`` feasible architectures (see the module docstring)."""
    _check(n_evals, population=population, sample_size=sample_size, batch=batch)
    start = time.perf_counter()
    with single_threaded_blas():
        engine = _Engine(space, predict_fn, _as_constraints(constraints), seed, max_rounds, True)
        engine.check_reachable("aging_evolution")
        pool = _initial_population(engine, min(population, n_evals), OFA_CHILD_SETTINGS)
        best, history = _top(pool, 1), [float(pool.scores.max())]  # type: ignore[union-attr]
        while engine.n_evaluations < n_evals:
            n = min(batch, n_evals - engine.n_evaluations)
            kids = engine.score(_Pool(_aging_children(engine, pool, n, sample_size)))
            pool = _Pool.concat([pool.take(slice(n, None)), kids])  # the oldest leave
            best = _better(best, _top(kids, 1))
            history.append(float(best.scores[0]))  # type: ignore[index]
    run = {"n_evals": n_evals, "population": population, "sample_size": sample_size}
    run |= {"batch": batch, "seed": seed}
    return _result(engine, best, history, start, "aging_evolution", run)


def _aging_children(engine: _Engine, pool: _Pool, n: int, sample_size: int) -> np.ndarray:
    """``n`` feasible one-gene mutants, each of the best of ``sample_size`` random members; a
    child still infeasible after the engine's rounds is a copy of its parent."""
    assert pool.scores is not None
    need, found = n, []
    size = min(sample_size, len(pool.genes))
    for _ in range(engine.max_rounds):
        draws = engine._draw(need, "mutate")
        contenders = engine.rng.integers(0, len(pool.genes), size=(draws, size))
        parents = pool.genes[contenders[np.arange(draws), pool.scores[contenders].argmax(1)]]
        kids = engine.genome.mutate_one_index(parents, engine.rng)
        ok, _ = engine.feasible(kids)
        engine._observe("mutate", ok)
        found.append(kids[ok][:need])
        need -= len(found[-1])
        if not need:
            return np.concatenate(found)
    found.append(pool.genes[engine.rng.integers(0, len(pool.genes), size=need)])
    return np.concatenate(found)


def _better(best: _Pool, other: _Pool) -> _Pool:
    return other if other.scores[0] > best.scores[0] else best  # type: ignore[index]


# -- local search ----------------------------------------------------------------------------------
def local_search(
    space: SpaceSpec,
    predict_fn: BatchFn,
    constraints: Constraint | Sequence[Constraint] | None = (),
    n_evals: int = 50_100,
    n_initial: int = 100,
    seed: int = 0,
    max_rounds: int = 50,
) -> SearchResult:
    """Hill climbing from the best of ``n_initial`` feasible random architectures, scoring
    exactly ``n_evals`` architectures (see the module docstring)."""
    _check(n_evals, n_initial=n_initial)
    start = time.perf_counter()
    with single_threaded_blas():
        engine = _Engine(space, predict_fn, _as_constraints(constraints), seed, max_rounds, True)
        engine.check_reachable("local_search")
        pool = _initial_population(engine, min(n_initial, n_evals), OFA_CHILD_SETTINGS)
        current = best = _top(pool, 1)
        history = [float(best.scores[0])]  # type: ignore[index]
        while engine.n_evaluations < n_evals:
            step = _best_neighbour(engine, current, n_evals - engine.n_evaluations)
            if step is None:  # a local optimum (or no feasible neighbour): start afresh
                if engine.n_evaluations >= n_evals:
                    break
                restart = engine.sample_random(1)
                if restart is None:
                    break
                step = _top(engine.score(restart), 1)
            current = step
            best = _better(best, current)
            history.append(float(best.scores[0]))  # type: ignore[index]
    run = {"n_evals": n_evals, "n_initial": n_initial, "seed": seed}
    return _result(engine, best, history, start, "local_search", run)


def _best_neighbour(engine: _Engine, current: _Pool, budget: int) -> _Pool | None:
    """The best feasible neighbour of ``current`` if it scores higher (at most ``budget`` of
    them scored), else None."""
    neighbours = engine.genome.neighbours_index(current.genes[0])
    ok, _ = engine.feasible(neighbours)
    neighbours = neighbours[ok][:budget]
    if not len(neighbours):
        return None
    top = _top(engine.score(_Pool(neighbours)), 1)
    return top if top.scores[0] > current.scores[0] else None  # type: ignore[index]

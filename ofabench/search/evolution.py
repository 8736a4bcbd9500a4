"""Constrained architecture search: OFA's evolutionary search and a random-search baseline.

Internally a population is one small-integer matrix of *choice indices*, a row per
architecture laid out as ``ks (n_blocks) | e (n_blocks) | d (n_stages) | r``; sampling,
mutation, crossover and the feasibility check run on whole matrices. Constraints whose cost is
additive over blocks (MACs, parameters, a latency-table sum: see :mod:`.additive`) are evaluated
for a whole population by one gather on that matrix; any other constraint, and the objective,
are called once per batch with an :class:`~ofabench.space.ArchBatch` of choice values. Pure
numpy: no torch here.

Evolution follows OFA's ``EvolutionFinder``: a population of feasible random samples; each
generation keeps the best ``parent_ratio`` as parents, and fills the population with feasible
mutants of random parents (``mutation_ratio``) and feasible crossovers of two random parents.
A mutation resamples each block slot's kernel and expand ratio together (one coin per slot, as
OFA does), each stage depth, and the resolution with its own probability.

Unlike OFA's loops, every loop here is bounded: candidates are drawn in rounds sized from the
acceptance rate seen so far; a child still missing after ``max_rounds`` rounds is a copy of a
random parent (always feasible), and a search whose constraints no architecture meets raises
:class:`InfeasibleConstraintError` naming the smallest value reachable (exact for additive
costs, before any sampling).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..blas import single_threaded_blas
from ..errors import ConfigError, InfeasibleConstraintError
from ..space import ArchBatch, ArchConfig, SpaceSpec
from .additive import AdditiveCost, StackedCost, layout_of, probe_cached
from .genome import Genome

logger = logging.getLogger("ofabench")

BatchFn = Callable[[ArchBatch], np.ndarray]
MIN_RATE = 1.0 / 64.0  # children: rates below this count as this (bounds a round's size)
MIN_RANDOM_RATE = 1.0 / 65536.0  # random samples: the same floor, far lower
MAX_ROUND = 1 << 18  # never draw more candidates than this in one round
MAX_RANDOM_DRAWS = 1 << 20  # random samples drawn per request before giving up on the rest
OVERDRAW = 1.25  # draw this many times the expected need
UNIQUE_ROUNDS = 2  # rounds per generation in which children must be new (then copies may do)
MIN_NOVELTY = 0.25  # never draw more than 4x as many children just to find new ones


# -- constraints -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Constraint:
    """``fn(batch) <= limit`` for every architecture kept; ``fn`` maps an :class:`ArchBatch`
    to one value per architecture (latency ms, MMACs, M params...).

    ``table`` (an exact :class:`~.additive.AdditiveCost` of ``fn``) or ``probe=True`` (recover
    one from ``fn`` when the search starts) let the search evaluate it in index space and name
    the exact smallest reachable value.
    """

    name: str
    limit: float
    fn: BatchFn = field(repr=False, compare=False)
    table: AdditiveCost | None = field(default=None, repr=False, compare=False)
    probe: bool = field(default=False, repr=False, compare=False)

    def evaluate(self, batch: ArchBatch) -> np.ndarray:
        values = np.asarray(self.fn(batch), dtype=np.float64).reshape(-1)
        if len(values) != len(batch):
            raise ConfigError(
                f"constraint {self.name!r} returned {len(values)} values for {len(batch)} "
                "architectures; its fn must map a batch to one value per architecture"
            )
        return values

    def additive_for(self, space: SpaceSpec) -> AdditiveCost | None:
        """This constraint's additive table indexed for ``space`` (None if it has none)."""
        if self.table is not None:
            return self.table.for_space(space)
        if self.probe:
            return probe_cached(space, self.fn)
        return None


def block_cost_fn(
    space: SpaceSpec, layer_cost: Callable[[Any], int], scale: float = 1.0
) -> AdditiveCost | BatchFn:
    """A vectorised cost (``sum(layer_cost(layer))`` over a subnet's layers, times ``scale``):
    an :class:`~.additive.AdditiveCost`, callable on whole batches; ``layer_cost`` is e.g.
    ``ofabench.latency.counting.layer_macs``. A family whose costs are not additive over its
    genes (``lut_additive`` False: OFA-ResNet50's widths) gets the exact per-arch sum instead."""
    from ..families import family_of

    if family_of(space).lut_additive:
        return AdditiveCost.from_layer_costs(space, layer_cost, scale)

    def per_arch(batch: ArchBatch) -> np.ndarray:
        archs = batch.to_archs()
        return np.array([scale * sum(map(layer_cost, space.layers(a))) for a in archs])

    return per_arch


def macs_fn(space: SpaceSpec) -> AdditiveCost | BatchFn:
    """Vectorised MACs in millions (equal to ``count_macs / 1e6``)."""
    from ..latency.counting import layer_macs

    return block_cost_fn(space, layer_macs, 1e-6)


def params_fn(space: SpaceSpec) -> AdditiveCost | BatchFn:
    """Vectorised parameter count in millions (equal to ``count_params / 1e6``)."""
    from ..latency.counting import layer_params

    return block_cost_fn(space, layer_params, 1e-6)


def macs_constraint(space: SpaceSpec, limit: float) -> Constraint:
    """MACs <= ``limit`` millions (OFA's "600M" is ``limit=600``)."""
    fn = macs_fn(space)
    table = fn if isinstance(fn, AdditiveCost) else None
    return Constraint("mmacs", float(limit), fn, table=table)


def params_constraint(space: SpaceSpec, limit: float) -> Constraint:
    """Parameters <= ``limit`` millions."""
    fn = params_fn(space)
    table = fn if isinstance(fn, AdditiveCost) else None
    return Constraint("mparams", float(limit), fn, table=table)


def latency_constraint(model: Any, limit: float, name: str = "latency_ms") -> Constraint:
    """Latency <= ``limit`` ms from any object with ``predict_batch(batch) -> ms array``.

    A :class:`~ofabench.latency.LatencyModel` gives its exact additive form
    (``additive_cost()``), which the search evaluates by array lookups; any other model is a
    black box whose table the search tries to recover once (checked exact, see
    :meth:`~.additive.AdditiveCost.probe`), and is called as it is when it is not additive.
    A LatencyModel of a non-additive family (``model.additive`` False, OFA-ResNet50) is called
    as it is: its exact per-arch prediction is the constraint."""
    additive = getattr(model, "additive", True)
    form = getattr(model, "additive_cost", None)
    table = form() if callable(form) and additive else None
    probe = table is None and additive
    return Constraint(name, float(limit), model.predict_batch, table=table, probe=probe)


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchResult:
    """The best architecture a search found, with its score and constraint values.

    ``history[0]`` is the best score of the first batch (the initial population); ``history[g]``
    the best score found up to generation (or batch) ``g``.
    """

    best: ArchConfig
    best_score: float
    constraint_values: dict[str, float]
    history: list[float]
    n_evaluations: int
    wall_time_s: float
    method: str = "evolution"
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "best": self.best.to_dict(),
            "best_score": float(self.best_score),
            "constraint_values": {k: float(v) for k, v in self.constraint_values.items()},
            "history": [float(h) for h in self.history],
            "n_evaluations": int(self.n_evaluations),
            "wall_time_s": float(self.wall_time_s),
            "settings": dict(self.settings),
        }


@dataclass
class _Pool:
    """Rows of choice indices (all feasible) and, once scored, their scores; ``keys`` are the
    rows' cache keys (``_Engine._cache_keys``) where already computed, kept so that a row's key
    is made once however often it is looked up."""

    genes: np.ndarray
    scores: np.ndarray | None = None
    keys: list[bytes] | None = None

    def take(self, idx: np.ndarray | slice) -> _Pool:
        scores = None if self.scores is None else self.scores[idx]
        keys = None
        if self.keys is not None:
            keys = self.keys[idx] if isinstance(idx, slice) else [self.keys[i] for i in idx]
        return _Pool(self.genes[idx], scores, keys)

    def unscored(self) -> _Pool:
        return _Pool(self.genes, None, self.keys)

    @staticmethod
    def concat(pools: Sequence[_Pool]) -> _Pool:
        if len(pools) == 1:
            return pools[0]
        scores = [p.scores for p in pools]
        joined = None if any(s is None for s in scores) else np.concatenate(scores)
        keys = None
        if all(p.keys is not None for p in pools):
            keys = [k for p in pools for k in p.keys]  # type: ignore[union-attr]
        return _Pool(np.concatenate([p.genes for p in pools]), joined, keys)


# -- constraint evaluation -----------------------------------------------------------------------
class _Feasibility:
    """Evaluates every constraint for rows of choice indices: additive ones by one gather,
    the others through their ``fn`` on a value batch."""

    def __init__(self, genome: Genome, constraints: Sequence[Constraint]) -> None:
        self.genome = genome
        self.constraints = list(constraints)
        self.limits = np.array([c.limit for c in self.constraints], dtype=np.float64)
        self.tables = [c.additive_for(genome.space) for c in self.constraints]
        self.table_cols = [i for i, t in enumerate(self.tables) if t is not None]
        self.called_cols = [i for i, t in enumerate(self.tables) if t is None]
        tables = [t for t in self.tables if t is not None]
        self.stacked: StackedCost | None = AdditiveCost.stack(tables) if tables else None

    def values(self, genes: np.ndarray) -> np.ndarray:
        """(N, C) constraint values."""
        if self.stacked is not None and not self.called_cols:
            return self.stacked.of_indices(genes)
        out = np.empty((len(genes), len(self.constraints)))
        if self.stacked is not None:
            out[:, self.table_cols] = self.stacked.of_indices(genes)
        if self.called_cols:
            batch = self.genome.to_batch(self.genome.values(genes))
            for i in self.called_cols:
                out[:, i] = self.constraints[i].evaluate(batch)
        return out

    def check(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(feasible mask, values) of rows of indices."""
        values = self.values(genes)
        if values.shape[1] == 1:
            return values[:, 0] <= self.limits[0], values
        return (values <= self.limits).all(axis=1), values

    def exact_minimum(self, i: int) -> tuple[float, np.ndarray] | None:
        """The exact smallest value of constraint ``i`` and a row reaching it, if additive."""
        table = self.tables[i]
        return None if table is None else table.minimum()


# -- the engine --------------------------------------------------------------------------------
class _Engine:
    """Feasible sampling in bounded rounds, objective calls, bookkeeping."""

    def __init__(
        self,
        space: SpaceSpec,
        predict_fn: BatchFn,
        constraints: Sequence[Constraint],
        seed: int,
        max_rounds: int,
        cache_scores: bool = False,
        unique_children: bool = False,
    ) -> None:
        self.genome = Genome(space)
        self.canonical = bool(getattr(predict_fn, "ignores_inactive_slots", False))
        self._layout = layout_of(space)
        self.feasibility = _Feasibility(self.genome, constraints)
        self.predict_fn = predict_fn
        self.rng = np.random.default_rng(seed)
        self.max_rounds = max_rounds
        self.rates = {"random": 0.5, "mutate": 0.5, "cross": 0.5}
        self.novelty = {"mutate": 1.0, "cross": 1.0}  # share of feasible children that are new
        self.random_tally = [0, 0]  # random samples drawn, feasible
        self.n_evaluations = 0
        self.n_predicted = 0
        self.n_checked = 0
        self.cache: dict[bytes, float] | None = {} if cache_scores else None
        self.unique = unique_children
        self.seen_min = np.full(len(self.constraints), np.inf)

    @property
    def space(self) -> SpaceSpec:
        return self.genome.space

    @property
    def constraints(self) -> list[Constraint]:
        return self.feasibility.constraints

    def feasible(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.n_checked += len(genes)
        return self.feasibility.check(genes)

    # -- scoring ------------------------------------------------------------------------------
    def score(self, pool: _Pool) -> _Pool:
        """Score every row; with the cache, only rows never scored before reach predict_fn."""
        if self.cache is None:
            pool.scores = self._predict(pool.genes)
        else:
            if pool.keys is None:
                pool.keys = self._cache_keys(pool.genes)
            pool.scores = self._cached_scores(pool.genes, pool.keys)
        self.n_evaluations += len(pool.scores)
        return pool

    def _predict(self, genes: np.ndarray) -> np.ndarray:
        scores = self._predict_rows(genes)
        self.n_predicted += len(scores)
        return scores

    def _predict_rows(self, genes: np.ndarray) -> np.ndarray:
        """``predict_fn`` on rows of indices (not counted in ``n_predicted``)."""
        raw = self.predict_fn(self.genome.to_batch(self.genome.values(genes)))
        scores = np.asarray(raw, dtype=np.float64).reshape(-1)
        if len(scores) != len(genes):
            raise ConfigError(
                f"predict_fn returned {len(scores)} scores for {len(genes)} architectures"
            )
        return np.where(np.isfinite(scores), scores, -np.inf)

    def _cache_keys(self, genes: np.ndarray) -> list[bytes]:
        """One key per row; with ``canonical``, the kernel/expand genes of skipped slots are
        masked, so rows that differ only there share a key (and a score)."""
        rows = np.array(genes, dtype=np.uint8, order="C")
        if self.canonical:
            nb = self.genome.space.n_blocks
            inactive = ~self._layout.active(rows)
            rows[:, :nb][inactive] = 255
            rows[:, nb : 2 * nb][inactive] = 255
        return rows.view(np.dtype((np.void, rows.shape[1]))).ravel().tolist()

    def _cached_scores(self, genes: np.ndarray, keys: list[bytes]) -> np.ndarray:
        cache = self.cache
        assert cache is not None
        missing: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in cache and key not in missing:
                missing[key] = i
        if missing:
            fresh = self._predict(genes[np.fromiter(missing.values(), np.int64, len(missing))])
            cache.update(zip(missing, fresh.tolist()))
        return np.array([cache[key] for key in keys])

    # -- sampling -----------------------------------------------------------------------------
    def _new_rows(
        self, genes: np.ndarray, feasible: np.ndarray, taken: set[bytes], keys: list[bytes | None]
    ) -> np.ndarray:
        """Feasible rows not equal (on active genes) to a taken one or to an earlier row; they
        become taken. ``keys`` (one slot per row) gets the feasible rows' keys."""
        new = np.zeros(len(genes), dtype=bool)
        idx = np.flatnonzero(feasible)
        for i, key in zip(idx.tolist(), self._cache_keys(genes[idx])):
            keys[i] = key
            if key not in taken:
                taken.add(key)
                new[i] = True
        return new

    def _draw(self, need: int, kind: str, unique: bool = False) -> int:
        """How many candidates to draw to get ``need`` feasible (and, if ``unique``, new) ones
        at the rates seen so far."""
        floor = MIN_RANDOM_RATE if kind == "random" else MIN_RATE
        rate = self.rates[kind] * (max(self.novelty[kind], MIN_NOVELTY) if unique else 1.0)
        rate = max(rate, floor)
        wanted = int(math.ceil(need / rate * OVERDRAW)) + 4
        return min(wanted, int(need / floor) + 256, MAX_ROUND)

    def _observe(self, kind: str, ok: np.ndarray) -> None:
        """Update the acceptance rate of ``kind``: a running mean for children (their rate
        drifts as the population converges), the overall fraction for random samples."""
        if not len(ok):
            return
        n_ok = int(np.count_nonzero(ok))
        if kind == "random":
            self.random_tally[0] += len(ok)
            self.random_tally[1] += n_ok
            drawn, feasible = self.random_tally
            self.rates[kind] = (feasible + 0.5) / (drawn + 1.0)
        else:
            self.rates[kind] = 0.5 * self.rates[kind] + 0.5 * n_ok / len(ok)

    def sample_random(self, n: int) -> _Pool | None:
        """Up to ``n`` feasible random architectures; None when bounded rounds (at most
        ``max_rounds`` of them, ``MAX_RANDOM_DRAWS`` samples in all) found none."""
        found: list[_Pool] = []
        have = drawn = 0
        for _ in range(self.max_rounds):
            if drawn >= MAX_RANDOM_DRAWS:
                break
            size = min(self._draw(n - have, "random"), MAX_RANDOM_DRAWS - drawn)
            drawn += size
            genes = self.genome.random_index(size, self.rng)
            ok, values = self.feasible(genes)
            self._observe("random", ok)
            self._note_samples(values)
            idx = np.flatnonzero(ok)[: n - have]
            found.append(_Pool(genes[idx]))
            have += len(idx)
            if have >= n:
                break
        return _Pool.concat(found) if have else None

    def _note_samples(self, values: np.ndarray) -> None:
        if values.shape[1] and len(values):
            self.seen_min = np.minimum(self.seen_min, values.min(axis=0))

    def children(
        self, parents: _Pool, n_mut: int, n_cross: int, settings: dict[str, float]
    ) -> _Pool:
        """``n_mut`` feasible mutants then ``n_cross`` feasible crossovers of random parents.

        With ``unique``, children must differ from the parents and from each other during the
        first ``UNIQUE_ROUNDS`` rounds, for each kind whose recent share of new children is at
        least ``MIN_NOVELTY`` (the crossovers of a converged population rarely can be new)."""
        need = {"mutate": n_mut, "cross": n_cross}
        found: dict[str, list[_Pool]] = {"mutate": [], "cross": []}
        taken = None
        if self.unique:
            parent_keys = parents.keys
            taken = set(self._cache_keys(parents.genes) if parent_keys is None else parent_keys)
        for round_ in range(self.max_rounds):
            if not any(need.values()):
                break
            check = taken is not None and round_ < UNIQUE_ROUNDS
            strict = {k for k in need if check and self.novelty[k] >= MIN_NOVELTY}
            draws = {k: self._draw(n, k, k in strict) if n else 0 for k, n in need.items()}
            genes = self._candidates(parents.genes, draws, settings)
            feasible, _ = self.feasible(genes)
            keys: list[bytes | None] | None = None
            keep = feasible
            if check:
                keys = [None] * len(genes)
                keep = self._keep(genes, feasible, draws, strict, taken, keys)
            self._collect(genes, feasible, keep, draws, need, found, keys)
        self._fill_with_parents(parents, need, found)
        return _Pool.concat(found["mutate"] + found["cross"])

    def _keep(
        self,
        genes: np.ndarray,
        feasible: np.ndarray,
        draws: dict[str, int],
        strict: set[str],
        taken: set[bytes] | None,
        keys: list[bytes | None],
    ) -> np.ndarray:
        """Feasible rows, restricted to new ones for the ``strict`` kinds; updates each kind's
        share of new children (measured for every kind, enforced for the strict ones)."""
        assert taken is not None
        new = self._new_rows(genes, feasible, taken, keys)
        keep = feasible.copy()
        start = 0
        for kind, n in draws.items():
            part = slice(start, start + n)
            n_ok = int(np.count_nonzero(feasible[part]))
            if n_ok:
                share = int(np.count_nonzero(new[part])) / n_ok
                self.novelty[kind] = 0.5 * self.novelty[kind] + 0.5 * share
            if kind in strict:
                keep[part] &= new[part]
            start += n
        return keep

    def _candidates(
        self, parents: np.ndarray, draws: dict[str, int], settings: dict[str, float]
    ) -> np.ndarray:
        n_m, n_c = draws["mutate"], draws["cross"]
        pick = self.rng.integers(0, len(parents), size=n_m + 2 * n_c)
        mutants = self.genome.mutate_index(
            parents[pick[:n_m]],
            self.rng,
            settings["mutate_prob"],
            settings["resolution_mutate_prob"],
        )
        crosses = Genome.crossover(
            parents[pick[n_m : n_m + n_c]], parents[pick[n_m + n_c :]], self.rng
        )
        return np.concatenate([mutants, crosses])

    def _collect(
        self,
        genes: np.ndarray,
        feasible: np.ndarray,
        keep: np.ndarray,
        draws: dict[str, int],
        need: dict[str, int],
        found: dict[str, list[_Pool]],
        keys: list[bytes | None] | None = None,
    ) -> None:
        """Take the first kept rows of each kind, up to its need (with their cache keys, where
        ``keys`` has them); learn its feasibility rate."""
        start = 0
        for kind, n in draws.items():
            ok = feasible[start : start + n]
            self._observe(kind, ok)
            idx = start + np.flatnonzero(keep[start : start + n])[: need[kind]]
            if len(idx):
                kept = None if keys is None else [keys[i] for i in idx.tolist()]
                found[kind].append(_Pool(genes[idx], keys=kept))  # type: ignore[arg-type]
                need[kind] -= len(idx)
            start += n

    def _fill_with_parents(
        self, parents: _Pool, need: dict[str, int], found: dict[str, list[_Pool]]
    ) -> None:
        for kind, n in need.items():
            if n:
                logger.debug(
                    "search: %d children copied from parents after %d rounds", n, self.max_rounds
                )
                pick = self.rng.integers(0, len(parents.genes), size=n)
                found[kind].append(parents.take(pick).unscored())

    # -- infeasibility --------------------------------------------------------------------------
    def smallest_reachable(self) -> list[tuple[float, str]]:
        """Per constraint, the smallest value known to be reachable and how it is known."""
        at_min = self.feasibility.values(self._min_arch_row())[0]
        out = []
        for i in range(len(self.constraints)):
            exact = self.feasibility.exact_minimum(i)
            if exact is not None:
                out.append((exact[0], "exact minimum over all subnets"))
            else:
                value = min(at_min[i], self.seen_min[i])
                how = (
                    f"space.min_arch(): {at_min[i]:g}; best of {self.n_checked} "
                    f"random samples: {self.seen_min[i]:g}"
                )
                out.append((float(value), how))
        return out

    def _min_arch_row(self) -> np.ndarray:
        values = Genome.from_batch(ArchBatch.from_archs([self.space.min_arch()]))
        return self.genome.indices(values)

    def check_reachable(self, method: str) -> None:
        """Raise at once if an additive constraint's exact minimum exceeds its limit."""
        for i, c in enumerate(self.constraints):
            exact = self.feasibility.exact_minimum(i)
            if exact is not None and exact[0] > c.limit:
                raise self.infeasible_error(method)

    def seed_rows(self) -> np.ndarray:
        """Architectures to start from when random sampling finds none: min_arch and the
        exact minimisers of the additive constraints."""
        rows = [self._min_arch_row()[0]]
        for i in range(len(self.constraints)):
            exact = self.feasibility.exact_minimum(i)
            if exact is not None:
                rows.append(exact[1])
        return np.stack(rows).astype(np.uint8)

    def infeasible_error(self, method: str) -> InfeasibleConstraintError:
        return InfeasibleConstraintError(_infeasible_message(self, method))


def _infeasible_message(engine: _Engine, method: str) -> str:
    space = engine.space
    reachable = engine.smallest_reachable()
    parts = [
        f"{c.name} <= {c.limit:g}: the smallest value reachable is {value:g} ({how})"
        for c, (value, how) in zip(engine.constraints, reachable)
        if value > c.limit
    ]
    head = f"{method}: no architecture of space {space.name!r} meets the constraints"
    if parts:
        return f"{head}. " + "; ".join(parts) + ". Raise the limit(s) or use a smaller space."
    ok, _ = engine.feasibility.check(engine.seed_rows())
    if ok.any():
        return (
            f"{head} among {engine.n_checked} random samples, though space.min_arch() or the "
            "cheapest subnet does: the feasible region is too small to sample at random; "
            "evolve() starts from those"
        )
    return (
        f"{head} together: each limit alone is reachable, but none of {engine.n_checked} "
        "random samples nor space.min_arch() met all of them at once. Loosen one of them."
    )


# -- evolution ---------------------------------------------------------------------------------
def _as_constraints(constraints: Constraint | Sequence[Constraint] | None) -> list[Constraint]:
    if constraints is None:
        return []
    if isinstance(constraints, Constraint):
        return [constraints]
    return list(constraints)


def _check_settings(
    population: int, generations: int, parent_ratio: float, mutation_ratio: float
) -> None:
    if population < 2 or generations < 0:
        raise ConfigError(
            f"population must be >= 2 and generations >= 0; got {population}, {generations}"
        )
    if not 0.0 < parent_ratio <= 1.0 or not 0.0 <= mutation_ratio <= 1.0:
        raise ConfigError(
            "parent_ratio must lie in (0, 1] and mutation_ratio in [0, 1]; "
            f"got {parent_ratio}, {mutation_ratio}"
        )


def _initial_population(engine: _Engine, population: int, settings: dict[str, float]) -> _Pool:
    """The first population, scored."""
    steps = _initial_steps(engine, population, settings)
    pool = engine.score(next(steps))
    steps.close()
    return pool


def _initial_steps(
    engine: _Engine, population: int, settings: dict[str, float]
) -> Generator[_Pool, _Pool, _Pool]:
    """Feasible random samples (children of the cheapest subnets where random sampling finds
    none), yielded once to be scored."""
    pool = engine.sample_random(population)
    if pool is None:
        seeds = engine.seed_rows()
        ok, _ = engine.feasible(seeds)
        if not ok.any():
            raise engine.infeasible_error("evolve")
        logger.info("evolve: no random sample was feasible; starting from the cheapest subnets")
        pool = _Pool(seeds[ok])
    short = population - len(pool.genes)
    if short > 0:
        pool = _Pool.concat([pool, engine.children(pool, short, 0, settings)])
    return (yield pool)


def _top(pool: _Pool, k: int) -> _Pool:
    assert pool.scores is not None
    if k == 1:
        return pool.take(np.array([int(np.argmax(pool.scores))]))
    return pool.take(np.argsort(-pool.scores, kind="stable")[:k])


# An evolution is a generator that yields every pool it needs scored and returns its last
# population and history: one evolution is driven alone (``_drive_alone``), the budgets of a
# sweep in lockstep (``_drive_together``: one predictor call per generation for all of them).
Evolution = Generator[_Pool, _Pool, tuple[_Pool, list[float]]]


def _evolution(
    engine: _Engine,
    population: int,
    generations: int,
    parent_ratio: float,
    mutation_ratio: float,
    settings: dict[str, float],
) -> Evolution:
    n_parents = max(1, int(round(parent_ratio * population)))
    n_mut = int(round(mutation_ratio * population))
    pool = yield from _initial_steps(engine, population, settings)
    assert pool.scores is not None
    history = [float(pool.scores.max())]
    for _ in range(generations):
        parents = _top(pool, n_parents)
        kids = yield engine.children(parents, n_mut, population - n_mut, settings)
        pool = _Pool.concat([parents, kids])
        assert kids.scores is not None
        history.append(max(history[-1], float(kids.scores.max())))
    return pool, history


def _drive_alone(engine: _Engine, steps: Evolution) -> tuple[_Pool, list[float]]:
    try:
        pool = next(steps)
        while True:
            pool = steps.send(engine.score(pool))
    except StopIteration as stop:
        return stop.value


def _drive_together(
    engines: Sequence[_Engine], steps: Sequence[Evolution], cache: dict[bytes, float]
) -> list[tuple[_Pool, list[float]] | InfeasibleConstraintError]:
    """Run evolutions in lockstep: each generation, the rows none of them has seen are scored
    by one ``predict_fn`` call (the first engine's; all share ``cache``). Each evolution's result
    is the one it would have alone, or the InfeasibleConstraintError it raised."""
    outcomes: list[Any] = [None] * len(steps)
    pending: dict[int, _Pool] = {}

    def advance(i: int, scored: _Pool | None) -> None:
        try:
            pending[i] = steps[i].send(scored)
        except StopIteration as stop:
            outcomes[i] = stop.value
        except InfeasibleConstraintError as exc:
            outcomes[i] = exc

    for i in range(len(steps)):
        advance(i, None)
    while pending:
        waiting = sorted(pending)
        pools = [pending.pop(i) for i in waiting]
        _score_together([engines[i] for i in waiting], pools, cache)
        for i, pool in zip(waiting, pools):
            advance(i, pool)
    return outcomes


def _score_together(
    engines: Sequence[_Engine], pools: Sequence[_Pool], cache: dict[bytes, float]
) -> None:
    """Score every pool (each with its engine) through ``cache``: the rows missing from it are
    predicted in one batch; each is counted in ``n_predicted`` of the first engine asking."""
    fresh_keys: dict[bytes, None] = {}
    fresh_rows = []
    for engine, pool in zip(engines, pools):
        if pool.keys is None:
            pool.keys = engine._cache_keys(pool.genes)
        idx = []
        for i, key in enumerate(pool.keys):
            if key not in cache and key not in fresh_keys:
                fresh_keys[key] = None
                idx.append(i)
        if idx:
            fresh_rows.append(pool.genes[idx])
            engine.n_predicted += len(idx)
    if fresh_rows:
        scores = engines[0]._predict_rows(np.concatenate(fresh_rows))
        cache.update(zip(fresh_keys, scores.tolist()))
    for engine, pool in zip(engines, pools):
        pool.scores = np.array([cache[key] for key in pool.keys])  # type: ignore[union-attr]
        engine.n_evaluations += len(pool.scores)


def evolve(
    space: SpaceSpec,
    predict_fn: BatchFn,
    constraints: Constraint | Sequence[Constraint] | None = (),
    population: int = 100,
    generations: int = 500,
    parent_ratio: float = 0.25,
    mutation_ratio: float = 0.5,
    mutate_prob: float = 0.1,
    resolution_mutate_prob: float = 0.5,
    seed: int = 0,
    max_rounds: int = 50,
    cache_scores: bool = True,
    unique_children: bool = True,
    score_cache: dict[bytes, float] | None = None,
) -> SearchResult:
    """OFA's evolutionary search for the architecture maximising ``predict_fn`` (batch -> scores)
    under every constraint. ``population * (generations + 1)`` architectures are scored.

    With ``cache_scores`` (for deterministic objectives) an architecture scored once is not
    passed to ``predict_fn`` again; later generations repeat many, so this halves the calls.
    If ``predict_fn`` has a true attribute ``ignores_inactive_slots`` (an
    :class:`~ofabench.predictor.AccuracyPredictor`'s ``predict`` does: skipped blocks encode as
    zeros), architectures differing only in the kernel/expand genes of skipped slots share one
    cached score, which saves up to 60% of the calls under tight constraints.

    With ``unique_children`` (a departure from OFA, whose populations fill up with copies) a
    child equal to a parent or to another child of its generation is redrawn like an
    infeasible one, as long as new children of its kind can still be found (see
    ``_Engine.children``); on OFA's Note10 setting this raises the best predicted accuracy by
    0.2-0.5 points on average at the same number of evaluations.

    ``score_cache`` (a dict, with ``cache_scores``) is the cache to use: searches with the same
    ``predict_fn`` that share one (a sweep's budgets) never score an architecture twice. Their
    results and evaluation counts are those of separate caches; only ``predict_fn`` is called
    less (a 10-budget ImageNet sweep: 21% fewer predictions). "The same" holds exactly for a
    ``predict_fn`` that scores a row alike in any batch; a BLAS matrix product (the MLP
    predictors) may differ in the last bit with the batch's size (measured: 2-5% of OFA's
    predictor rows, by at most 6e-8), and a search that meets such a tie can take another path.
    """
    _check_settings(population, generations, parent_ratio, mutation_ratio)
    start = time.perf_counter()
    settings = {"mutate_prob": mutate_prob, "resolution_mutate_prob": resolution_mutate_prob}
    with single_threaded_blas():
        engine = _Engine(
            space,
            predict_fn,
            _as_constraints(constraints),
            seed,
            max_rounds,
            cache_scores,
            unique_children,
        )
        if cache_scores and score_cache is not None:
            engine.cache = score_cache
        engine.check_reachable("evolve")
        steps = _evolution(engine, population, generations, parent_ratio, mutation_ratio, settings)
        pool, history = _drive_alone(engine, steps)
    run = _run_settings(
        population, generations, parent_ratio, mutation_ratio, seed, cache_scores,
        unique_children, settings,
    )  # fmt: skip
    return _result(engine, _top(pool, 1), history, start, "evolution", run)


def _run_settings(
    population: int,
    generations: int,
    parent_ratio: float,
    mutation_ratio: float,
    seed: int,
    cache_scores: bool,
    unique_children: bool,
    settings: dict[str, float],
) -> dict[str, Any]:
    """What an evolution's result records of how it ran."""
    return {
        "population": population,
        "generations": generations,
        "parent_ratio": parent_ratio,
        "mutation_ratio": mutation_ratio,
        "seed": seed,
        "cache_scores": cache_scores,
        "unique_children": unique_children,
        **settings,
    }


def evolve_many(
    space: SpaceSpec,
    predict_fn: BatchFn,
    constraint_sets: Sequence[Constraint | Sequence[Constraint] | None],
    population: int = 100,
    generations: int = 500,
    parent_ratio: float = 0.25,
    mutation_ratio: float = 0.5,
    mutate_prob: float = 0.1,
    resolution_mutate_prob: float = 0.5,
    seed: int = 0,
    max_rounds: int = 50,
    unique_children: bool = True,
    score_cache: dict[bytes, float] | None = None,
) -> list[SearchResult | InfeasibleConstraintError]:
    """:func:`evolve` under each of ``constraint_sets`` (a sweep's budgets), all with ``seed``
    and one predictor cache, run in lockstep: each generation, the architectures none of them
    has scored yet go to ``predict_fn`` in one batch (bigger batches and ~1/n of the calls).

    Each result is the one :func:`evolve` gives alone with a shared ``score_cache`` (same
    architecture, score, history and evaluation count; ``predict_fn`` must score a row the same
    in any batch), or the :class:`InfeasibleConstraintError` that search raised. A row several
    searches need first in the same generation counts in ``n_predicted`` of the first only. The
    ``wall_time_s`` of each is an equal share of the whole (``settings["lockstep"]`` says how
    many shared it)."""
    _check_settings(population, generations, parent_ratio, mutation_ratio)
    start = time.perf_counter()
    settings = {"mutate_prob": mutate_prob, "resolution_mutate_prob": resolution_mutate_prob}
    cache: dict[bytes, float] = {} if score_cache is None else score_cache
    out: list[Any] = [None] * len(constraint_sets)
    engines: dict[int, _Engine] = {}
    with single_threaded_blas():
        for i, constraints in enumerate(constraint_sets):
            engine = _Engine(
                space, predict_fn, _as_constraints(constraints), seed, max_rounds, True,
                unique_children,
            )  # fmt: skip
            engine.cache = cache
            try:
                engine.check_reachable("evolve")
            except InfeasibleConstraintError as exc:
                out[i] = exc
                continue
            engines[i] = engine
        order = list(engines)
        steps = [
            _evolution(engines[i], population, generations, parent_ratio, mutation_ratio, settings)
            for i in order
        ]
        outcomes = _drive_together([engines[i] for i in order], steps, cache)
    share = (time.perf_counter() - start) / max(1, len(constraint_sets))
    run = _run_settings(
        population, generations, parent_ratio, mutation_ratio, seed, True, unique_children,
        settings,
    )  # fmt: skip
    run["lockstep"] = len(constraint_sets)
    for i, outcome in zip(order, outcomes):
        if isinstance(outcome, InfeasibleConstraintError):
            out[i] = outcome
            continue
        pool, history = outcome
        result = _result(engines[i], _top(pool, 1), history, start, "evolution", run)
        out[i] = dataclasses.replace(result, wall_time_s=share)
    return out


def random_search(
    space: SpaceSpec,
    predict_fn: BatchFn,
    constraints: Constraint | Sequence[Constraint] | None = (),
    n_evals: int = 50_100,
    seed: int = 0,
    batch_size: int = 100,
    max_rounds: int = 50,
) -> SearchResult:
    """Score ``n_evals`` feasible random architectures (in batches) and keep the best: the
    baseline for :func:`evolve` at the same number of evaluations (its ``n_evaluations``)."""
    if n_evals < 1 or batch_size < 1:
        raise ConfigError(f"n_evals and batch_size must be >= 1, got {n_evals}, {batch_size}")
    start = time.perf_counter()
    with single_threaded_blas():
        engine = _Engine(space, predict_fn, _as_constraints(constraints), seed, max_rounds)
        engine.check_reachable("random_search")
        best, history = _random_loop(engine, n_evals, batch_size)
    run = {"n_evals": n_evals, "seed": seed, "batch_size": batch_size}
    return _result(engine, best, history, start, "random", run)


def _random_loop(engine: _Engine, n_evals: int, batch_size: int) -> tuple[_Pool, list[float]]:
    best: _Pool | None = None
    history: list[float] = []
    while engine.n_evaluations < n_evals:
        pool = engine.sample_random(min(batch_size, n_evals - engine.n_evaluations))
        if pool is None:
            raise engine.infeasible_error("random_search")
        candidate = _top(engine.score(pool), 1)
        assert candidate.scores is not None
        if best is None or candidate.scores[0] > best.scores[0]:  # type: ignore[index]
            best = candidate
        history.append(float(best.scores[0]))  # type: ignore[index]
    assert best is not None
    return best, history


def _result(
    engine: _Engine,
    best: _Pool,
    history: list[float],
    start: float,
    method: str,
    settings: dict[str, Any],
) -> SearchResult:
    best_values = engine.feasibility.values(best.genes)[0]
    values = {c.name: float(v) for c, v in zip(engine.constraints, best_values)}
    limits = {c.name: c.limit for c in engine.constraints}
    arch = engine.genome.to_batch(engine.genome.values(best.genes))[0]
    return SearchResult(
        best=arch,
        best_score=float(best.scores[0]),
        constraint_values=values,
        history=history,
        n_evaluations=engine.n_evaluations,
        wall_time_s=time.perf_counter() - start,
        method=method,
        settings={
            **settings,
            "limits": limits,
            "space": engine.space.name,
            "n_predicted": engine.n_predicted,
            "n_checked": engine.n_checked,
        },
    )

"""Constrained architecture search: OFA's evolutionary search and a random-search baseline.

Internally a population is one integer matrix, a row per architecture laid out as
``ks (n_blocks) | e (n_blocks) | d (n_stages) | r``; sampling, mutation, crossover and the
feasibility check run on whole matrices, and the objective and every constraint are called
once per batch with an :class:`~ofabench.space.ArchBatch` view. Pure numpy: no torch here.

Evolution follows OFA's ``EvolutionFinder``: a population of feasible random samples; each
generation keeps the best ``parent_ratio`` as parents, and fills the population with feasible
mutants of random parents (``mutation_ratio``) and feasible crossovers of two random parents.
A mutation resamples each block slot's kernel and expand ratio together (one coin per slot, as
OFA does), each stage depth, and the resolution with its own probability.

Unlike OFA's loops, every loop here is bounded: candidates are drawn in oversampled rounds; a
child still missing after ``max_rounds`` rounds is a copy of a random parent (always feasible),
and a search that finds no feasible architecture at all raises
:class:`InfeasibleConstraintError` naming the smallest value reachable.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, InfeasibleConstraintError
from ..space import ArchBatch, ArchConfig, SpaceSpec

logger = logging.getLogger("ofabench")

BatchFn = Callable[[ArchBatch], np.ndarray]


# -- constraints -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Constraint:
    """``fn(batch) <= limit`` for every architecture kept; ``fn`` maps an :class:`ArchBatch`
    to one value per architecture (latency ms, MMACs, M params...)."""

    name: str
    limit: float
    fn: BatchFn = field(repr=False, compare=False)

    def evaluate(self, batch: ArchBatch) -> np.ndarray:
        values = np.asarray(self.fn(batch), dtype=np.float64).reshape(-1)
        if len(values) != len(batch):
            raise ConfigError(
                f"constraint {self.name!r} returned {len(values)} values for {len(batch)} "
                "architectures; its fn must map a batch to one value per architecture"
            )
        return values


@functools.lru_cache(maxsize=16)
def _cost_table(
    space: SpaceSpec, layer_cost: Callable[[Any], int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-resolution fixed cost (R,) and per-block cost (n_blocks, K, E, R) of ``space``.

    A block's cost depends only on its slot, kernel, expand ratio and the input resolution
    (strides sit on a stage's first slot, which always runs), so a subnet's cost is the fixed
    part plus the costs of its active slots.
    """
    kc, ec, res = space.kernel_choices, space.expand_choices, space.resolutions
    depth = max(space.depth_choices)
    base = np.zeros(len(res))
    blocks = np.zeros((space.n_blocks, len(kc), len(ec), len(res)))
    slots = [s * space.max_depth + j for s in range(space.n_stages) for j in range(depth)]
    for ri, r in enumerate(res):
        for ki, k in enumerate(kc):
            for ei, e in enumerate(ec):
                layers = space.layers(space.uniform(k, e, depth, r))
                costs = [layer_cost(layer) for layer in layers]
                blocks[slots, ki, ei, ri] = costs[2 : 2 + len(slots)]
                base[ri] = sum(costs) - sum(costs[2 : 2 + len(slots)])
    return base, blocks


def _index_lut(choices: tuple[int, ...]) -> np.ndarray:
    """value -> position in ``choices`` (-1 where a value is not a choice)."""
    lut = np.full(max(choices) + 2, -1, dtype=np.int64)
    lut[list(choices)] = np.arange(len(choices))
    return lut


def _lookup(lut: np.ndarray, values: np.ndarray, name: str, choices: tuple[int, ...]) -> np.ndarray:
    idx = lut[np.clip(values, 0, len(lut) - 1)]
    bad = (idx < 0) | (values < 0)
    if bad.any():
        raise ConfigError(
            f"arch field {name!r} holds {values[bad].flat[0]}; allowed: {list(choices)}"
        )
    return idx


def block_cost_fn(
    space: SpaceSpec, layer_cost: Callable[[Any], int], scale: float = 1.0
) -> BatchFn:
    """A vectorised cost (``sum(layer_cost(layer))`` over a subnet's layers, times ``scale``)
    for whole batches; ``layer_cost`` is e.g. ``ofabench.latency.counting.layer_macs``."""
    base, blocks = _cost_table(space, layer_cost)
    base, flat = base * scale, (blocks * scale).reshape(-1)
    n_k, n_e, n_r = blocks.shape[1:]
    luts = [_index_lut(c) for c in (space.kernel_choices, space.expand_choices, space.resolutions)]
    slot_offset = np.arange(space.n_blocks) * (n_k * n_e * n_r)
    stage_of_slot = np.arange(space.n_blocks) // space.max_depth
    slot_in_stage = np.arange(space.n_blocks) % space.max_depth

    def cost(batch: ArchBatch) -> np.ndarray:
        k = _lookup(luts[0], batch.ks, "ks", space.kernel_choices)
        e = _lookup(luts[1], batch.e, "e", space.expand_choices)
        r = _lookup(luts[2], batch.r, "r", space.resolutions)
        active = batch.d[:, stage_of_slot] > slot_in_stage
        per_block = flat[slot_offset + (k * n_e + e) * n_r + r[:, None]]
        return base[r] + (per_block * active).sum(axis=1)

    return cost


def macs_fn(space: SpaceSpec) -> BatchFn:
    """Vectorised MACs in millions (equal to ``count_macs / 1e6``)."""
    from ..latency.counting import layer_macs

    return block_cost_fn(space, layer_macs, 1e-6)


def params_fn(space: SpaceSpec) -> BatchFn:
    """Vectorised parameter count in millions (equal to ``count_params / 1e6``)."""
    from ..latency.counting import layer_params

    return block_cost_fn(space, layer_params, 1e-6)


def macs_constraint(space: SpaceSpec, limit: float) -> Constraint:
    """MACs <= ``limit`` millions (OFA's "600M" is ``limit=600``)."""
    return Constraint("mmacs", float(limit), macs_fn(space))


def params_constraint(space: SpaceSpec, limit: float) -> Constraint:
    """Parameters <= ``limit`` millions."""
    return Constraint("mparams", float(limit), params_fn(space))


def latency_constraint(model: Any, limit: float, name: str = "latency_ms") -> Constraint:
    """Latency <= ``limit`` ms from any object with ``predict_batch(batch) -> ms array``."""
    return Constraint(name, float(limit), model.predict_batch)


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


# -- architectures as rows of one matrix -------------------------------------------------------
class Genome:
    """The row layout ``ks | e | d | r`` of a space, and the batch operations on it."""

    def __init__(self, space: SpaceSpec) -> None:
        self.space = space
        nb, ns = space.n_blocks, space.n_stages
        groups = (
            [space.kernel_choices] * nb
            + [space.expand_choices] * nb
            + [space.depth_choices] * ns
            + [space.resolutions]
        )
        width = max(len(g) for g in groups)
        self.options = np.array([list(g) + [g[-1]] * (width - len(g)) for g in groups])
        self.counts = np.array([len(g) for g in groups], dtype=np.float64)
        self.columns = np.arange(len(groups))[None, :]
        self._cuts = (nb, 2 * nb, 2 * nb + ns)

    def random(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniformly random rows (every choice independent)."""
        pick = (rng.random((n, len(self.counts))) * self.counts).astype(np.int64)
        return self.options[self.columns, pick]

    def mutate(
        self, genes: np.ndarray, rng: np.random.Generator, prob: float, resolution_prob: float
    ) -> np.ndarray:
        """OFA's mutation of every row: one coin per slot for its kernel and expand ratio,
        one per stage depth, one (``resolution_prob``) for the resolution."""
        n = len(genes)
        slot_hit = rng.random((n, self.space.n_blocks)) < prob
        depth_hit = rng.random((n, self.space.n_stages)) < prob
        res_hit = rng.random((n, 1)) < resolution_prob
        hit = np.concatenate([slot_hit, slot_hit, depth_hit, res_hit], axis=1)
        return np.where(hit, self.random(n, rng), genes)

    @staticmethod
    def crossover(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Each gene of each child from row ``a`` or row ``b`` with equal chance."""
        return np.where(rng.random(a.shape) < 0.5, a, b)

    def to_batch(self, genes: np.ndarray) -> ArchBatch:
        i, j, k = self._cuts
        return ArchBatch(ks=genes[:, :i], e=genes[:, i:j], d=genes[:, j:k], r=genes[:, k])

    @staticmethod
    def from_batch(batch: ArchBatch) -> np.ndarray:
        columns = [batch.ks, batch.e, batch.d, np.asarray(batch.r)[:, None]]
        return np.concatenate(columns, axis=1).astype(np.int64)


@dataclass
class _Pool:
    """Rows of architectures with their constraint values (N, C) and, once scored, scores."""

    genes: np.ndarray
    values: np.ndarray
    scores: np.ndarray | None = None

    def take(self, idx: np.ndarray) -> _Pool:
        scores = None if self.scores is None else self.scores[idx]
        return _Pool(self.genes[idx], self.values[idx], scores)

    @staticmethod
    def concat(pools: Sequence[_Pool]) -> _Pool:
        scores = [p.scores for p in pools]
        joined = None if any(s is None for s in scores) else np.concatenate(scores)
        genes = np.concatenate([p.genes for p in pools])
        return _Pool(genes, np.concatenate([p.values for p in pools]), joined)


# -- the engine --------------------------------------------------------------------------------
class _Engine:
    """Feasible sampling in bounded, oversampled rounds; objective calls; bookkeeping."""

    def __init__(
        self,
        space: SpaceSpec,
        predict_fn: BatchFn,
        constraints: Sequence[Constraint],
        seed: int,
        max_rounds: int,
        cache_scores: bool = False,
    ) -> None:
        self.genome = Genome(space)
        self.predict_fn = predict_fn
        self.constraints = list(constraints)
        self.limits = np.array([c.limit for c in self.constraints], dtype=np.float64)
        self.rng = np.random.default_rng(seed)
        self.max_rounds = max_rounds
        self.oversample = 2.0
        self.n_evaluations = 0
        self.n_predicted = 0
        self.cache: dict[bytes, float] | None = {} if cache_scores else None
        self.n_sampled = 0
        self.seen_min = np.full(len(self.constraints), np.inf)

    @property
    def space(self) -> SpaceSpec:
        return self.genome.space

    def constraint_values(self, genes: np.ndarray) -> np.ndarray:
        if not self.constraints:
            return np.zeros((len(genes), 0))
        batch = self.genome.to_batch(genes)
        return np.stack([c.evaluate(batch) for c in self.constraints], axis=1)

    def feasible(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = self.constraint_values(genes)
        return (values <= self.limits).all(axis=1), values

    def score(self, pool: _Pool) -> _Pool:
        """Score every row; with the cache, only rows never scored before reach predict_fn."""
        if self.cache is None:
            pool.scores = self._predict(pool.genes)
        else:
            pool.scores = self._cached_scores(pool.genes)
        self.n_evaluations += len(pool.scores)
        return pool

    def _predict(self, genes: np.ndarray) -> np.ndarray:
        raw = self.predict_fn(self.genome.to_batch(genes))
        scores = np.asarray(raw, dtype=np.float64).reshape(-1)
        if len(scores) != len(genes):
            raise ConfigError(
                f"predict_fn returned {len(scores)} scores for {len(genes)} architectures"
            )
        self.n_predicted += len(scores)
        return np.where(np.isfinite(scores), scores, -np.inf)

    def _cached_scores(self, genes: np.ndarray) -> np.ndarray:
        cache = self.cache
        assert cache is not None
        rows = np.ascontiguousarray(genes, dtype=np.int32)
        keys = rows.view(np.dtype((np.void, rows.shape[1] * 4))).ravel().tolist()
        missing: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in cache and key not in missing:
                missing[key] = i
        if missing:
            fresh = self._predict(genes[np.fromiter(missing.values(), np.int64, len(missing))])
            cache.update(zip(missing, fresh.tolist()))
        return np.array([cache[key] for key in keys])

    def _draw(self, need: int) -> int:
        return int(math.ceil(need * self.oversample)) + 1

    def sample_random(self, n: int) -> _Pool | None:
        """Up to ``n`` feasible random architectures; None when bounded rounds found none."""
        found: list[_Pool] = []
        have = 0
        for _ in range(self.max_rounds):
            genes = self.genome.random(max(self._draw(n - have), 256), self.rng)
            ok, values = self.feasible(genes)
            self._note_samples(values)
            idx = np.flatnonzero(ok)[: n - have]
            found.append(_Pool(genes[idx], values[idx]))
            have += len(idx)
            if have >= n:
                break
        return _Pool.concat(found) if have else None

    def _note_samples(self, values: np.ndarray) -> None:
        self.n_sampled += len(values)
        if values.shape[1]:
            self.seen_min = np.minimum(self.seen_min, values.min(axis=0))

    def children(
        self, parents: _Pool, n_mut: int, n_cross: int, settings: dict[str, float]
    ) -> _Pool:
        """``n_mut`` feasible mutants then ``n_cross`` feasible crossovers of random parents."""
        need = np.array([n_mut, n_cross])
        found: list[list[_Pool]] = [[], []]
        for _ in range(self.max_rounds):
            if not need.any():
                break
            kinds, genes = self._candidates(parents.genes, need, settings)
            ok, values = self.feasible(genes)
            self._collect(kinds, ok, _Pool(genes, values), need, found)
            self._adapt(ok, need)
        self._fill_with_parents(parents, need, found)
        return _Pool.concat(found[0] + found[1])

    def _candidates(
        self, parents: np.ndarray, need: np.ndarray, settings: dict[str, float]
    ) -> tuple[np.ndarray, np.ndarray]:
        n_m, n_c = (self._draw(int(k)) if k else 0 for k in need)
        pick = self.rng.integers(0, len(parents), size=n_m + 2 * n_c)
        mutants = self.genome.mutate(
            parents[pick[:n_m]],
            self.rng,
            settings["mutate_prob"],
            settings["resolution_mutate_prob"],
        )
        crosses = Genome.crossover(
            parents[pick[n_m : n_m + n_c]], parents[pick[n_m + n_c :]], self.rng
        )
        return np.repeat([0, 1], [n_m, n_c]), np.concatenate([mutants, crosses])

    @staticmethod
    def _collect(
        kinds: np.ndarray, ok: np.ndarray, pool: _Pool, need: np.ndarray, found: list[list[_Pool]]
    ) -> None:
        for kind in (0, 1):
            idx = np.flatnonzero(ok & (kinds == kind))[: need[kind]]
            if len(idx):
                found[kind].append(pool.take(idx))
                need[kind] -= len(idx)

    def _adapt(self, ok: np.ndarray, need: np.ndarray) -> None:
        if need.any():  # a round fell short: draw more next time
            self.oversample = min(self.oversample * 4.0, 64.0)
        elif ok.mean() > 0.9 and self.oversample > 1.2:
            self.oversample /= 1.5

    def _fill_with_parents(
        self, parents: _Pool, need: np.ndarray, found: list[list[_Pool]]
    ) -> None:
        for kind in (0, 1):
            if need[kind]:
                logger.debug(
                    "search: %d children copied from parents after %d rounds",
                    need[kind],
                    self.max_rounds,
                )
                pick = self.rng.integers(0, len(parents.genes), size=int(need[kind]))
                found[kind].append(_Pool(parents.genes[pick], parents.values[pick]))

    def infeasible_error(self, method: str) -> InfeasibleConstraintError:
        return InfeasibleConstraintError(_infeasible_message(self, method))


def _infeasible_message(engine: _Engine, method: str) -> str:
    space = engine.space
    at_min = engine.constraint_values(Genome.from_batch(ArchBatch.from_archs([space.min_arch()])))[
        0
    ]
    parts = []
    for i, c in enumerate(engine.constraints):
        smallest = min(at_min[i], engine.seen_min[i])
        if smallest > c.limit:
            parts.append(
                f"{c.name} <= {c.limit:g}: the smallest value reachable is {smallest:g} "
                f"(space.min_arch(): {at_min[i]:g}; best of {engine.n_sampled} random samples: "
                f"{engine.seen_min[i]:g})"
            )
    head = f"{method}: no architecture of space {space.name!r} meets the constraints"
    if parts:
        return f"{head}. " + "; ".join(parts) + ". Raise the limit(s) or use a smaller space."
    if (at_min <= engine.limits).all():
        return (
            f"{head} among {engine.n_sampled} random samples, though space.min_arch() does: "
            "the feasible region is too small to sample at random; evolve() starts from min_arch"
        )
    return (
        f"{head} together: each limit alone is reachable, but none of {engine.n_sampled} random "
        "samples nor space.min_arch() met all of them at once. Loosen one of them."
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
    pool = engine.sample_random(population)
    if pool is None:
        seed = Genome.from_batch(ArchBatch.from_archs([engine.space.min_arch()]))
        ok, values = engine.feasible(seed)
        if not ok[0]:
            raise engine.infeasible_error("evolve")
        logger.info("evolve: no random sample was feasible; starting from space.min_arch()")
        pool = _Pool(seed, values)
    short = population - len(pool.genes)
    if short > 0:
        pool = _Pool.concat([pool, engine.children(pool, short, 0, settings)])
    return engine.score(pool)


def _top(pool: _Pool, k: int) -> _Pool:
    assert pool.scores is not None
    if k == 1:
        return pool.take(np.array([int(np.argmax(pool.scores))]))
    return pool.take(np.argsort(-pool.scores, kind="stable")[:k])


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
) -> SearchResult:
    """OFA's evolutionary search for the architecture maximising ``predict_fn`` (batch -> scores)
    under every constraint. ``population * (generations + 1)`` architectures are scored.

    With ``cache_scores`` (for deterministic objectives) an architecture scored once is not
    passed to ``predict_fn`` again; later generations repeat many, so this halves the calls.
    """
    _check_settings(population, generations, parent_ratio, mutation_ratio)
    start = time.perf_counter()
    settings = {"mutate_prob": mutate_prob, "resolution_mutate_prob": resolution_mutate_prob}
    engine = _Engine(
        space, predict_fn, _as_constraints(constraints), seed, max_rounds, cache_scores
    )
    n_parents = max(1, int(round(parent_ratio * population)))
    n_mut = int(round(mutation_ratio * population))
    pool = _initial_population(engine, population, settings)
    history = [float(pool.scores.max())]
    for _ in range(generations):
        parents = _top(pool, n_parents)
        kids = engine.score(engine.children(parents, n_mut, population - n_mut, settings))
        pool = _Pool.concat([parents, kids])
        history.append(max(history[-1], float(kids.scores.max())))
    run = {
        "population": population,
        "generations": generations,
        "parent_ratio": parent_ratio,
        "mutation_ratio": mutation_ratio,
        "seed": seed,
        "cache_scores": cache_scores,
        **settings,
    }
    return _result(engine, _top(pool, 1), history, start, "evolution", run)


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
    engine = _Engine(space, predict_fn, _as_constraints(constraints), seed, max_rounds)
    best: _Pool | None = None
    history: list[float] = []
    while engine.n_evaluations < n_evals:
        pool = engine.sample_random(min(batch_size, n_evals - engine.n_evaluations))
        if pool is None:
            raise engine.infeasible_error("random_search")
        candidate = _top(engine.score(pool), 1)
        if best is None or candidate.scores[0] > best.scores[0]:
            best = candidate
        history.append(float(best.scores[0]))
    run = {"n_evals": n_evals, "seed": seed, "batch_size": batch_size}
    return _result(engine, best, history, start, "random", run)


def _result(
    engine: _Engine,
    best: _Pool,
    history: list[float],
    start: float,
    method: str,
    settings: dict[str, Any],
) -> SearchResult:
    values = {c.name: float(best.values[0, i]) for i, c in enumerate(engine.constraints)}
    limits = {c.name: c.limit for c in engine.constraints}
    return SearchResult(
        best=engine.genome.to_batch(best.genes)[0],
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
        },
    )

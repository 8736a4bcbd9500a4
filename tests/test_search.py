"""Search: vectorised constraints, batch genetic operators, evolution vs random search,
bounded failure on infeasible constraints, Pareto front and hypervolume."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ofabench.errors import ConfigError, OfabenchError
from ofabench.latency.counting import count_macs, count_params
from ofabench.search import (
    Constraint,
    Genome,
    InfeasibleConstraintError,
    SearchResult,
    evolve,
    evolve_many,
    hypervolume_2d,
    macs_constraint,
    macs_fn,
    params_constraint,
    params_fn,
    pareto_front,
    random_search,
)
from ofabench.space import ArchBatch, ArchConfig, get_space

W10 = get_space("ofa_mbv3_w1.0")
SMALL = get_space("small32")
MIN_MMACS = count_macs(W10, W10.min_arch()) / 1e6


# -- constraints -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "space",
    [W10, SMALL, get_space("ofa_mbv3_w1.2"), W10.restrict(depth_choices=[2, 3], resolutions=[160])],
    ids=lambda s: s.name + str(s.depth_choices),
)
def test_vectorised_counts_equal_per_arch_counts(space) -> None:
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(30)] + [space.min_arch(), space.max_arch()]
    batch = ArchBatch.from_archs(archs)
    macs = np.array([count_macs(space, a) for a in archs]) / 1e6
    params = np.array([count_params(space, a) for a in archs]) / 1e6
    np.testing.assert_allclose(macs_fn(space)(batch), macs, rtol=1e-12)
    np.testing.assert_allclose(params_fn(space)(batch), params, rtol=1e-12)


def test_constraint_values_must_match_the_batch() -> None:
    bad = Constraint("broken", 1.0, lambda batch: np.zeros(3))
    with pytest.raises(ConfigError, match="one value per architecture"):
        evolve(SMALL, lambda b: np.zeros(len(b)), [bad], population=8, generations=1)


# -- genetic operators on matrices -------------------------------------------------------------
def test_genome_round_trip_and_random_rows_are_valid() -> None:
    genome = Genome(W10)
    genes = genome.random(200, np.random.default_rng(0))
    archs = genome.to_batch(genes).to_archs()
    assert all(W10.contains(a) for a in archs)
    np.testing.assert_array_equal(Genome.from_batch(ArchBatch.from_archs(archs)), genes)
    for column, options in ((0, W10.kernel_choices), (-1, W10.resolutions)):
        assert set(genes[:, column]) == set(options)  # every choice is drawn


def test_mutation_rates_and_crossover_genes() -> None:
    genome, rng = Genome(W10), np.random.default_rng(1)
    parents = genome.random(400, rng)
    np.testing.assert_array_equal(genome.mutate(parents, rng, 0.0, 0.0), parents)
    mutants = genome.mutate(parents, rng, 1.0, 1.0)
    assert all(W10.contains(a) for a in genome.to_batch(mutants).to_archs())
    changed = (genome.mutate(parents, rng, 0.1, 0.5) != parents).mean(axis=0)
    assert 0.03 < changed[:40].mean() < 0.1  # 0.1 x (2/3 chance of a new value)
    assert 0.38 < changed[-1] < 0.58  # resolution: 0.5 x 24/25 = 0.48
    other = genome.random(400, rng)
    child = Genome.crossover(parents, other, rng)
    assert ((child == parents) | (child == other)).all()
    assert 0.4 < (child == parents).mean() < 0.85


# -- evolution ---------------------------------------------------------------------------------
TARGET = W10.uniform(5, 4, 3, 176)


def match_score(batch: ArchBatch) -> np.ndarray:
    """Genes equal to TARGET's: 20 + 20 + 5 + 1 = 46 at the optimum, TARGET itself."""
    return (
        (batch.ks == np.array(TARGET.ks)).sum(1)
        + (batch.e == np.array(TARGET.e)).sum(1)
        + (batch.d == np.array(TARGET.d)).sum(1)
        + (batch.r == TARGET.r)
    ).astype(float)


def test_evolve_finds_the_optimum_under_a_macs_limit() -> None:
    limit = count_macs(W10, TARGET) / 1e6 + 1.0  # TARGET is feasible, most of the space is not
    constraint = macs_constraint(W10, limit)
    share = (
        macs_fn(W10)(ArchBatch.from_archs([W10.sample(i) for i in range(300)])) <= limit
    ).mean()
    assert 0.2 < share < 0.8
    result = evolve(W10, match_score, [constraint], population=100, generations=150, seed=0)
    assert result.best == TARGET and result.best_score == 46
    baseline = random_search(W10, match_score, [constraint], result.n_evaluations, seed=0)
    assert baseline.n_evaluations == result.n_evaluations == 100 * 151
    assert baseline.best_score < 40


def size_score(batch: ArchBatch) -> np.ndarray:
    """Bigger is better, with slot weights unlike MACs': the best sits on the MACs boundary."""
    weights = np.linspace(1.0, 0.2, W10.n_blocks)
    active = batch.active_mask(W10)
    return ((batch.ks * batch.e * active) @ weights) + 0.05 * batch.r


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evolve_beats_random_search_at_equal_evaluations(seed: int) -> None:
    constraint = macs_constraint(W10, 300)
    result = evolve(W10, size_score, [constraint], population=60, generations=60, seed=seed)
    baseline = random_search(W10, size_score, [constraint], result.n_evaluations, seed=seed)
    assert result.best_score > baseline.best_score
    assert result.constraint_values["mmacs"] <= 300
    assert count_macs(W10, result.best) / 1e6 == pytest.approx(result.constraint_values["mmacs"])


def test_objective_only_ever_sees_feasible_batches() -> None:
    constraints = [macs_constraint(W10, 250), params_constraint(W10, 5.5)]
    calls: list[int] = []

    def checked(batch: ArchBatch) -> np.ndarray:
        assert isinstance(batch, ArchBatch)
        for c in constraints:
            assert (c.fn(batch) <= c.limit).all(), c.name
        calls.append(len(batch))
        return size_score(batch)

    result = evolve(
        W10, checked, constraints, population=40, generations=25, seed=3, cache_scores=False
    )
    assert calls == [40] * 26  # one batched call per generation, plus the initial population
    assert result.n_evaluations == 40 * 26 and len(result.history) == 26
    assert all(a <= b for a, b in zip(result.history, result.history[1:]))
    assert result.history[-1] == result.best_score
    best = result.best
    assert count_macs(W10, best) / 1e6 <= 250 and count_params(W10, best) / 1e6 <= 5.5
    for c in constraints:
        assert result.constraint_values[c.name] <= c.limit


def test_score_cache_skips_repeats_without_changing_the_search() -> None:
    constraint = macs_constraint(W10, 300)
    calls: list[int] = []

    def counted(batch: ArchBatch) -> np.ndarray:
        calls.append(len(batch))
        return match_score(batch)  # exact: the same in any batch

    cached = evolve(W10, counted, [constraint], population=50, generations=80, seed=4)
    plain = evolve(
        W10, match_score, [constraint], population=50, generations=80, seed=4, cache_scores=False
    )
    assert cached.best == plain.best and cached.history == plain.history
    assert cached.n_evaluations == plain.n_evaluations == 50 * 81
    assert sum(calls) == cached.settings["n_predicted"] < 0.8 * cached.n_evaluations
    assert len(calls) <= 81 and max(calls) <= 50


def test_a_shared_score_cache_spares_the_next_budget_its_repeats() -> None:
    """A sweep's budgets share one predictor cache: the second search finds the same
    architecture with the same history and evaluation count, with fewer predictor rows than
    the same search with a cache of its own."""
    calls: list[int] = []

    def counted(batch: ArchBatch) -> np.ndarray:
        calls.append(len(batch))
        return match_score(batch)

    run = {"population": 50, "generations": 60, "seed": 4}
    shared: dict[bytes, float] = {}
    evolve(W10, counted, [macs_constraint(W10, 300)], score_cache=shared, **run)
    calls.clear()
    second = evolve(W10, counted, [macs_constraint(W10, 350)], score_cache=shared, **run)
    with_shared = sum(calls)
    calls.clear()
    alone = evolve(W10, counted, [macs_constraint(W10, 350)], **run)
    assert second.best == alone.best and second.history == alone.history
    assert second.n_evaluations == alone.n_evaluations == 50 * 61
    assert with_shared == second.settings["n_predicted"] < alone.settings["n_predicted"] == sum(calls)


def test_evolve_many_runs_a_sweep_in_lockstep_with_the_results_of_separate_searches() -> None:
    """The budgets of a sweep in lockstep: each result (architecture, history, evaluations)
    is that budget's search alone; the predictor sees each architecture once, one call per
    generation for all budgets; an unreachable budget comes back as its error."""
    calls: list[int] = []

    def counted(batch: ArchBatch) -> np.ndarray:
        calls.append(len(batch))
        return match_score(batch)

    run = {"population": 30, "generations": 40, "seed": 6}
    limits = [260.0, 1.0, 320.0, 380.0]  # 1 MMAC: no subnet
    together = evolve_many(W10, counted, [macs_constraint(W10, m) for m in limits], **run)
    n_calls, n_rows = len(calls), sum(calls)
    assert isinstance(together[1], InfeasibleConstraintError)
    assert "smallest value reachable" in str(together[1])
    calls.clear()
    shared: dict[bytes, float] = {}
    for limit, result in zip(limits, together):
        if limit == 1.0:
            continue
        alone = evolve(W10, counted, [macs_constraint(W10, limit)], score_cache=shared, **run)
        assert isinstance(result, SearchResult)
        assert result.best == alone.best and result.history == alone.history
        assert result.best_score == alone.best_score
        assert result.n_evaluations == alone.n_evaluations == 30 * 41
        assert result.settings["lockstep"] == 4
    assert n_rows == sum(calls) == len(shared)  # the same architectures predicted once each
    counts = [r.settings["n_predicted"] for r in together if isinstance(r, SearchResult)]
    assert n_rows == sum(counts) and counts[0] < n_rows, counts  # counted by the first asking
    assert n_calls <= 41 < len(calls)  # one call per generation for the three budgets


def test_results_are_reproducible_and_json_ready() -> None:
    run = {"population": 20, "generations": 10, "seed": 5}
    first = evolve(SMALL, match_small, macs_constraint(SMALL, 30), **run)
    second = evolve(SMALL, match_small, macs_constraint(SMALL, 30), **run)
    assert first.best == second.best and first.history == second.history
    data = json.loads(json.dumps(first.to_dict()))
    assert ArchConfig.from_dict(data["best"]) == first.best
    assert data["method"] == "evolution" and data["settings"]["limits"] == {"mmacs": 30.0}
    assert isinstance(first, SearchResult) and first.wall_time_s > 0


def match_small(batch: ArchBatch) -> np.ndarray:
    return (batch.ks == 3).sum(1) + (batch.r == 32).astype(float)


def test_random_search_history_and_budget() -> None:
    result = random_search(SMALL, match_small, [], n_evals=250, seed=0, batch_size=100)
    assert result.n_evaluations == 250 and len(result.history) == 3
    assert result.method == "random" and result.constraint_values == {}


# -- bounded failure -----------------------------------------------------------------------------
def test_infeasible_limit_names_the_smallest_reachable_value() -> None:
    with pytest.raises(InfeasibleConstraintError) as info:
        evolve(W10, size_score, [macs_constraint(W10, 10)], population=20, generations=5)
    message = str(info.value)
    assert isinstance(info.value, OfabenchError)
    assert "mmacs <= 10" in message and f"smallest value reachable is {MIN_MMACS:g}" in message
    with pytest.raises(InfeasibleConstraintError, match=f"{MIN_MMACS:g}"):
        random_search(W10, size_score, [macs_constraint(W10, 10)], n_evals=100)


def test_tiny_feasible_region_starts_from_the_smallest_arch() -> None:
    constraint = macs_constraint(W10, MIN_MMACS + 0.5)  # practically only min_arch-like nets
    result = evolve(W10, size_score, [constraint], population=20, generations=10, max_rounds=3)
    assert result.constraint_values["mmacs"] <= MIN_MMACS + 0.5
    with pytest.raises(InfeasibleConstraintError, match="too small to sample"):
        random_search(W10, size_score, [constraint], n_evals=50, max_rounds=3)


def test_jointly_infeasible_constraints_say_so() -> None:
    small_r = Constraint("r", 128, lambda b: b.r)
    large_r = Constraint("minus_r", -224, lambda b: -b.r)
    with pytest.raises(InfeasibleConstraintError, match="each limit alone is reachable"):
        evolve(W10, size_score, [small_r, large_r], population=10, generations=2, max_rounds=2)


def test_search_does_not_import_torch() -> None:
    code = "import sys, ofabench.search; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- Pareto --------------------------------------------------------------------------------------
def test_pareto_front_by_hand() -> None:
    costs = [3.0, 1.0, 2.0, 2.5, 4.0]
    scores = [0.6, 0.5, 0.7, 0.7, 0.9]
    # (2.5, .7) is matched by the cheaper (2, .7); (3, .6) is beaten by (2, .7)
    assert pareto_front(costs, scores).tolist() == [1, 2, 4]
    assert pareto_front([1.0, 1.0], [0.5, 0.5]).tolist() == [0, 1]  # exact duplicates stay
    assert pareto_front([1.0, 1.0], [0.4, 0.5]).tolist() == [1]
    assert pareto_front([], []).tolist() == []
    with pytest.raises(ValueError, match="same length"):
        pareto_front([1.0], [0.5, 0.6])


def test_hypervolume_by_hand() -> None:
    # staircase from (1, .5), (2, .7) to ref (4, 0): 1 x .5 + 2 x .7
    assert hypervolume_2d([1, 2, 3], [0.5, 0.7, 0.6], 4, 0) == pytest.approx(1.9)
    assert hypervolume_2d([1, 2, 3, 5], [0.5, 0.7, 0.6, 0.9], 4, 0) == pytest.approx(1.9)
    assert hypervolume_2d([1], [0.5], 3, 0.1) == pytest.approx(0.8)
    assert hypervolume_2d([1], [0.05], 3, 0.1) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 8), st.integers(0, 8)).map(lambda t: (float(t[0]), float(t[1]))),
        max_size=25,
    )
)
def test_pareto_front_agrees_with_brute_force(points) -> None:
    costs = np.array([p[0] for p in points])
    scores = np.array([p[1] for p in points])

    def dominated(i: int) -> bool:
        better_or_equal = (costs <= costs[i]) & (scores >= scores[i])
        strictly = (costs < costs[i]) | (scores > scores[i])
        return bool((better_or_equal & strictly).any())

    expected = [i for i in range(len(points)) if not dominated(i)]
    front = pareto_front(costs, scores)
    assert sorted(front.tolist()) == expected
    assert (np.diff(costs[front]) >= 0).all()
    volume = hypervolume_2d(costs, scores, 9.0, -1.0)
    assert volume == pytest.approx(hypervolume_2d(costs[front], scores[front], 9.0, -1.0))
    assert hypervolume_2d(np.append(costs, 0.0), np.append(scores, 0.0), 9.0, -1.0) >= volume

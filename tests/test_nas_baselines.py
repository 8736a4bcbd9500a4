"""NAS search baselines (random, regularized evolution, local search, NSGA-II, uniform) on a tiny
space at OFA's number of evaluations, their registry, the hypervolume spread, and the search's
structure: the latency model's exact additive form, no import cycles, lazy pymoo."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ofabench.baselines import (
    Baseline,
    BaselineOutcome,
    SweepTask,
    get_baseline,
    list_baselines,
    register_baseline,
)
from ofabench.baselines import registry as baseline_registry
from ofabench.errors import ConfigError
from ofabench.latency import LatencyModel, LatencyTable
from ofabench.search import latency_constraint, macs_constraint, params_constraint
from ofabench.search.algorithms import aging_evolution, local_search
from ofabench.search.genome import Genome
from ofabench.search.nsga2 import _ArrayNSGA2, nsga2, pymoo_array_functions
from ofabench.search.pareto import hypervolume_2d, hypervolume_spread, pareto_front
from ofabench.search.problem import SearchProblem
from ofabench.search.sweep import pareto_sweep
from ofabench.space import ArchBatch, get_space

SMALL = get_space("small32")
W12 = get_space("ofa_mbv3_w1.2")
PACKAGE = Path(__file__).resolve().parents[1] / "ofabench"


class LinearScore:
    """A deterministic 'predictor': accuracy grows with kernel * expand, depth and resolution."""

    def predict(self, batch: ArchBatch) -> np.ndarray:
        active = (np.arange(batch.ks.shape[1]) % 4)[None, :] < np.repeat(batch.d, 4, axis=1)
        ke = (batch.ks * batch.e * active).sum(1)
        return 0.5 + 0.0004 * ke + 0.002 * batch.d.sum(1) + 0.001 * batch.r

    predict.ignores_inactive_slots = True  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def sweep() -> dict:
    problem = SearchProblem(SMALL, LinearScore())
    return pareto_sweep(
        problem,
        "mmacs",
        [12.0, 20.0, 40.0],
        population=20,
        generations=9,
        baselines=list_baselines(),
        seeds=2,
    )


def test_every_baseline_uses_ofas_evaluations_and_meets_budgets(sweep: dict) -> None:
    evaluations = sweep["evaluations"]
    assert evaluations["evolution"] == 3 * 20 * 10
    for method in ("random", "aging_evolution", "local_search", "nsga2"):
        assert evaluations[method] == evaluations["evolution"], method
    assert evaluations["uniform"] == 3 * 3 * 3 * len(SMALL.resolutions)
    methods = {p["method"] for p in sweep["points"]}
    assert methods == {"evolution", *list_baselines()}
    for p in sweep["points"]:
        assert p["mmacs"] <= (p["budget"] if p["budget"] is not None else 40.0) + 1e-9


def test_every_front_is_non_dominated(sweep: dict) -> None:
    points = sweep["points"]
    fronts = sweep["summary"]["mmacs"]["fronts"]
    for method, ids in fronts.items():
        costs = np.array([points[i]["mmacs"] for i in ids])
        accs = np.array([points[i]["accuracy"] for i in ids])
        assert len(pareto_front(costs, accs)) == len(ids), method
        for i in ids:  # nothing of the same method dominates a front point
            better = [
                q
                for q in points
                if q["method"] == method
                and q["mmacs"] <= points[i]["mmacs"]
                and q["accuracy"] >= points[i]["accuracy"]
                and (q["mmacs"], q["accuracy"]) != (points[i]["mmacs"], points[i]["accuracy"])
            ]
            assert not better, (method, points[i])
    nsga = [p for p in points if p["method"] == "nsga2"]
    ids = pareto_front([p["mmacs"] for p in nsga], [p["accuracy"] for p in nsga])
    assert len(nsga) >= 2 and len(ids) == len(nsga)  # NSGA-II returns a front, nothing else


def test_hypervolume_spread_over_seeds(sweep: dict) -> None:
    spread = sweep["summary"]["mmacs"]["hypervolume_spread"]
    assert set(spread) == {"evolution", *list_baselines()}
    for method, s in spread.items():
        assert s["n"] == 2 and s["min"] <= s["mean"] <= s["max"] and s["std"] >= 0, method
    volumes = sweep["summary"]["mmacs"]["hypervolume"]
    assert spread["evolution"]["values"][0] == pytest.approx(volumes["evolution"])
    assert spread["uniform"]["std"] == 0.0  # no randomness in uniform scaling


def test_hypervolume_spread_numbers() -> None:
    runs = [([1.0, 2.0], [0.5, 0.7]), ([1.5], [0.6])]
    out = hypervolume_spread(runs, ref_cost=3.0, ref_score=0.4)
    first = hypervolume_2d(*runs[0], 3.0, 0.4)
    assert first == pytest.approx(1 * 0.1 + 1 * 0.3)  # widths x heights above 0.4
    assert out["values"] == pytest.approx([0.4, 1.5 * 0.2])
    assert out["mean"] == pytest.approx(0.35) and out["n"] == 2
    assert out["std"] == pytest.approx(np.std([0.4, 0.3], ddof=1))
    assert out["min"] == pytest.approx(0.3) and out["max"] == pytest.approx(0.4)


@pytest.mark.parametrize("search", [aging_evolution, local_search])
def test_single_objective_searches_score_exactly_n_and_stay_feasible(search) -> None:
    constraint = macs_constraint(SMALL, 15.0)
    result = search(SMALL, LinearScore().predict, [constraint], n_evals=357, seed=3)
    assert result.n_evaluations == 357 and result.constraint_values["mmacs"] <= 15.0
    assert result.history == sorted(result.history)  # best-so-far never falls
    again = search(SMALL, LinearScore().predict, [constraint], n_evals=357, seed=3)
    assert again.best == result.best  # seeded
    for n in range(101, 200, 7):  # the budget ends anywhere: mid-step, at a local optimum...
        assert search(SMALL, LinearScore().predict, [constraint], n_evals=n).n_evaluations == n


def test_one_gene_moves_change_exactly_one_meaningful_gene() -> None:
    genome, rng = Genome(SMALL), np.random.default_rng(0)
    rows = genome.random_index(200, rng)
    kids = genome.mutate_one_index(rows, rng)
    changed = kids != rows
    assert (changed.sum(1) == 1).all() and genome.meaningful(rows)[changed].all()
    neighbours = genome.neighbours_index(rows[0])
    assert ((neighbours != rows[0]).sum(1) == 1).all()
    assert len(neighbours) == int((genome.meaningful(rows[:1])[0] * (genome.counts - 1)).sum())


@pytest.mark.parametrize("engine", ["arrays", "pymoo"])
def test_nsga2_engines_score_exactly_n_and_return_a_feasible_front(engine: str) -> None:
    cost, params = macs_constraint(SMALL, 30.0), params_constraint(SMALL, 3.5)
    front = nsga2(SMALL, LinearScore().predict, cost, [params], n_evals=1234, population=24,
                  seed=5, engine=engine)  # fmt: skip
    assert front.n_evaluations == 1234 and front.settings["engine"] == engine
    assert len(front.archs) >= 2
    assert (front.costs["mmacs"] <= 30.0).all() and (front.costs["mparams"] <= 3.5).all()
    assert len(pareto_front(front.costs["mmacs"], front.scores)) == len(front.archs)
    again = nsga2(SMALL, LinearScore().predict, cost, [params], n_evals=1234, population=24,
                  seed=5, engine=engine)  # fmt: skip
    assert again.archs == front.archs  # seeded


def test_nsga2_array_engine_fronts_are_as_good_as_pymoos() -> None:
    cost = macs_constraint(SMALL, 40.0)
    volumes = {}
    for engine in ("arrays", "pymoo"):
        runs = []
        for seed in range(3):
            front = nsga2(SMALL, LinearScore().predict, cost, [], 1500, 20, seed, engine=engine)
            runs.append((front.costs["mmacs"], front.scores))
        volumes[engine] = hypervolume_spread(runs, 40.0, 0.5)
    spread = max(volumes["arrays"]["std"], volumes["pymoo"]["std"], 1e-3 * volumes["pymoo"]["mean"])
    assert abs(volumes["arrays"]["mean"] - volumes["pymoo"]["mean"]) < 3 * spread, volumes


def _array_engine(x, f, cv, crowding=None):
    engine = object.__new__(_ArrayNSGA2)  # the population alone, no search around it
    engine.rng, engine.size = np.random.default_rng(0), len(x)
    engine.ops = pymoo_array_functions()
    engine.x, engine.f, engine.cv = np.asarray(x, float), np.asarray(f, float), np.asarray(cv, float)
    engine.crowding = np.zeros(len(x)) if crowding is None else np.asarray(crowding, float)
    return engine


def test_nsga2_array_tournament_prefers_feasible_then_dominating_then_crowded() -> None:
    # members: 0 dominates 1; 2 and 3 are non-dominated with 2 more crowded (smaller distance);
    # 4 and 5 infeasible (violation 1 and 2)
    f = [[1, -5], [2, -4], [1, -3], [3, -6], [0, -9], [0, -9]]
    engine = _array_engine(np.zeros((6, 2)), f, [0, 0, 0, 0, 1, 2], [1, 1, 0.5, 2.0, 0, 0])
    a = np.array([0, 1, 2, 3, 4, 5, 0, 4])
    b = np.array([1, 0, 3, 2, 5, 4, 4, 1])
    assert engine._tournament(a, b).tolist() == [0, 0, 3, 3, 4, 4, 0, 1]
    ties = engine._tournament(np.full(400, 4), np.full(400, 4))  # equal violation: at random
    assert (ties == 4).all()
    even = _array_engine(np.zeros((2, 2)), [[1, -2], [2, -3]], [0, 0], [1.0, 1.0])
    picks = even._tournament(np.zeros(400, int), np.ones(400, int))
    assert 100 < (picks == 0).sum() < 300  # same front, same crowding: a coin


def test_nsga2_array_survival_keeps_fronts_then_least_violating() -> None:
    from pymoo.operators.survival.rank_and_crowding.metrics import get_crowding_function
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    engine = _array_engine(np.zeros((1, 1)), np.zeros((1, 2)), [0])
    engine.nds, engine.crowding_fn = NonDominatedSorting(), get_crowding_function("cd")
    x = np.arange(7.0)[:, None]
    f = np.array([[1, -1], [2, -2], [3, -3], [2, -1], [3, -2], [0, 0], [0, 0]], float)
    cv = np.array([0, 0, 0, 0, 0, 3.0, 1.0])
    engine.size = 6
    engine._survive(x, f, cv)
    assert set(engine.x[:3, 0]) == {0, 1, 2} and set(engine.x[3:5, 0]) == {3, 4}
    assert engine.x[5, 0] == 6  # the smaller violation of the two infeasible rows
    assert engine.rank[:5].tolist() == [0, 0, 0, 1, 1] and np.isinf(engine.rank[5])
    engine.size = 4  # the second front is split by crowding: both its members are boundary
    engine._survive(x, f, cv)
    assert set(engine.x[:3, 0]) == {0, 1, 2} and engine.x[3, 0] in (3, 4) and len(engine.x) == 4


def test_nsga2_array_variation_is_pymoos_sbx_and_polynomial_mutation() -> None:
    from pymoo.core.population import Population
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair

    module = importlib.import_module("ofabench.search.nsga2")  # the package exports the function
    upper = Genome(SMALL).counts - 1.0
    rng = np.random.default_rng(0)
    engine = _array_engine(np.zeros((1, 1)), np.zeros((1, 2)), [0])
    engine.xl, engine.xu = np.zeros(len(upper)), upper
    problem = Problem(n_var=len(upper), n_obj=2, xl=0, xu=upper)
    sbx = SBX(prob=module.SBX_PROB, eta=module.SBX_ETA, vtype=float, repair=RoundingRepair())
    pm = PM(prob=module.PM_PROB, eta=module.PM_ETA, vtype=float, repair=RoundingRepair())
    pairs = np.stack([np.arange(4000), 4000 + np.arange(4000)], axis=1)

    def stats(children: np.ndarray, parents: np.ndarray) -> np.ndarray:
        changed = children[:4000] != parents[0]  # a first child against its first parent
        distance = np.abs(children[:4000] - parents[0]).mean()
        return np.array([changed.mean(), (changed.sum(1) == 0).mean(), distance])

    one = np.floor(rng.random((4000, len(upper))) * (upper + 1))
    other = np.floor(rng.random((4000, len(upper))) * (upper + 1))
    # different parents: mostly crossover; equal parents: SBX leaves them, mutation alone
    for parents in (np.stack([one, other]), np.stack([one, one])):
        ours = engine._vary(parents)
        pop = Population.new("X", np.concatenate(parents))
        theirs = pm(problem, sbx(problem, pop, pairs, random_state=rng), random_state=rng)
        assert ours.shape == (8000, len(upper)) and (ours == np.rint(ours)).all()
        assert (ours >= 0).all() and (ours <= upper).all()
        np.testing.assert_allclose(
            stats(ours, parents), stats(theirs.get("X"), parents), rtol=0.1, atol=0.005
        )
    # equal parents: mutation alone changes a gene of about one child in six (with pymoo's
    # continuous settings, eta 20, fewer than one in a hundred: rounding undoes the rest)
    assert stats(ours, parents)[1] < 0.9


def test_nsga2_unknown_engine_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown NSGA-II engine 'numba'; allowed: arrays, pymoo"):
        nsga2(SMALL, LinearScore().predict, macs_constraint(SMALL, 30.0), engine="numba")


# -- registry ------------------------------------------------------------------------------------
def test_registry_refuses_a_taken_name_and_loads_entry_points(monkeypatch) -> None:
    class Impostor(Baseline):
        name = "random"

        def run(self, task: SweepTask) -> BaselineOutcome:
            return BaselineOutcome([])

    with pytest.raises(ConfigError, match="'random' is taken"):
        register_baseline(Impostor)

    class Nothing(Baseline):
        name = "nothing_at_all"

        def run(self, task: SweepTask) -> BaselineOutcome:
            return BaselineOutcome([], [], 0)

    class Entry:
        name, value = "third_party", "pkg.mod:Nothing"

        def load(self):
            return Nothing

    registry = baseline_registry.BASELINES
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))  # forgotten after
    monkeypatch.setattr(registry, "entry_points", lambda: {"third_party": Entry()})
    assert "third_party" in list_baselines()
    assert isinstance(get_baseline("third_party"), Nothing)
    monkeypatch.setattr(registry, "_registered", {})
    with pytest.raises(ConfigError, match="available: .*'nsga2'.*'third_party'"):
        get_baseline("fourth_party")


def test_unknown_baseline_in_a_sweep_fails_before_any_search() -> None:
    problem = SearchProblem(SMALL, LinearScore())
    with pytest.raises(ConfigError, match="unknown baseline 'nsga3'; available: \\['aging"):
        pareto_sweep(problem, "mmacs", [20.0], baselines=["nsga3"], population=4, generations=1)


# -- structure -----------------------------------------------------------------------------------
def test_latency_model_additive_form_is_exact(ofa_reference: Path) -> None:
    lut = ofa_reference / "note10_lut"
    if not lut.is_dir():
        pytest.skip("OFA Note10 LUT missing")
    model = LatencyModel(LatencyTable.from_ofa_yaml(lut, space=W12, device="note10"), W12)
    space = W12.restrict(resolutions=model.resolutions)
    genome, rng = Genome(space), np.random.default_rng(1)
    genes = genome.random_index(400, rng)
    batch = genome.to_batch(genome.values(genes))
    few = genome.to_batch(genome.values(genes[:50]))
    for m in (model, model.fit_overhead(few, 1.3 * model.predict_batch(few) + 2.0)):
        table = m.additive_cost()
        np.testing.assert_allclose(table.of_indices(genes), m.predict_batch(batch), rtol=1e-12)
        constraint = latency_constraint(m, 20.0)
        assert constraint.table is table and not constraint.probe  # used directly, no probe


def _imports(path: Path) -> set[str]:
    """Modules of ofabench a file imports at module level (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            name = f"{base}.{node.module}" if node.level and node.module else node.module or base
            out.add(name)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("ofabench")}


def test_no_search_import_cycle_and_predictor_does_not_import_search() -> None:
    search = {p.stem: _imports(p) for p in (PACKAGE / "search").glob("*.py")}
    assert "ofabench.search.evolution" not in search["additive"]
    assert "ofabench.search.additive" in search["evolution"]
    for path in (PACKAGE / "predictor").glob("*.py"):
        assert not any(m.startswith("ofabench.search") for m in _imports(path)), path
    assert not (PACKAGE / "search" / "blas.py").exists()


def test_pymoo_is_imported_only_when_nsga2_runs() -> None:
    code = (
        "import sys, ofabench.search, ofabench.baselines, ofabench.search.nsga2;"
        "from ofabench.baselines import get_baseline; get_baseline('nsga2');"
        "assert 'pymoo' not in sys.modules, 'pymoo imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

"""Constrained search over a space: OFA's evolutionary search, random search, regularized
evolution and local search (:mod:`.algorithms`), NSGA-II through pymoo (:mod:`.nsga2`),
constraints on MACs / parameters / latency (exact additive tables, :mod:`.additive`; latency's
comes from the ``LatencyModel``), the axes (:mod:`.axes`), budgets as users write them
(:mod:`.budgets`), the search problem behind ``ofabench search`` (:mod:`.problem`), budget
sweeps (:mod:`.sweep`) and Pareto utilities. Pure numpy (no torch import; pymoo only when
NSGA-II runs)."""

from .additive import AdditiveCost
from .algorithms import aging_evolution, local_search
from .budgets import parse_budget, parse_budgets
from .evolution import (
    Constraint,
    Genome,
    InfeasibleConstraintError,
    SearchResult,
    block_cost_fn,
    evolve,
    evolve_many,
    latency_constraint,
    macs_constraint,
    macs_fn,
    params_constraint,
    params_fn,
    random_search,
)
from .nsga2 import FrontResult, nsga2
from .pareto import hypervolume_2d, hypervolume_spread, pareto_front
from .points import ParetoPoint

__all__ = [
    "AdditiveCost",
    "Constraint",
    "FrontResult",
    "Genome",
    "InfeasibleConstraintError",
    "SearchResult",
    "block_cost_fn",
    "aging_evolution",
    "evolve",
    "evolve_many",
    "hypervolume_2d",
    "hypervolume_spread",
    "local_search",
    "latency_constraint",
    "macs_constraint",
    "macs_fn",
    "nsga2",
    "params_constraint",
    "ParetoPoint",
    "params_fn",
    "parse_budget",
    "parse_budgets",
    "pareto_front",
    "random_search",
]

"""Constrained search over a space: OFA's evolutionary search, random search, constraints on
MACs / parameters / latency (exact additive tables, :mod:`.additive`), budgets as users write
them (:mod:`.budgets`), the search problem behind ``ofabench search`` (:mod:`.problem`),
budget sweeps (:mod:`.sweep`) and Pareto utilities. Pure numpy (no torch import)."""

from .additive import AdditiveCost
from .budgets import parse_budget, parse_budgets
from .evolution import (
    Constraint,
    Genome,
    InfeasibleConstraintError,
    SearchResult,
    block_cost_fn,
    evolve,
    latency_constraint,
    macs_constraint,
    macs_fn,
    params_constraint,
    params_fn,
    random_search,
)
from .pareto import hypervolume_2d, pareto_front
from .points import ParetoPoint

__all__ = [
    "AdditiveCost",
    "Constraint",
    "Genome",
    "InfeasibleConstraintError",
    "SearchResult",
    "block_cost_fn",
    "evolve",
    "hypervolume_2d",
    "latency_constraint",
    "macs_constraint",
    "macs_fn",
    "params_constraint",
    "ParetoPoint",
    "params_fn",
    "parse_budget",
    "parse_budgets",
    "pareto_front",
    "random_search",
]

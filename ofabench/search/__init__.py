"""Constrained search over a space: OFA's evolutionary search, random search, constraints on
MACs / parameters / latency, and Pareto utilities. Pure numpy (no torch import)."""

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

__all__ = [
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
    "params_fn",
    "pareto_front",
    "random_search",
]

"""A search problem as a user states it: a space, an accuracy predictor, optionally a device's
latency table, and budgets; and the one-call search that the ``ofabench search`` command runs.

Latency tables are found by device name at ``latency_tables/<device>/<space>.json`` (where
``ofabench profile`` writes them), or given by path: an ofabench table (``.json``), one OFA
YAML LUT (``<r>_lookup_table.yaml``) or a folder of them. The search space is restricted to
the resolutions the table covers (OFA's Note10 tables cover 160-224 in steps of 16).

Predictors are ``ofa:PATH`` (OFA's published ``acc_predictor.pth``, trained on the
``ofa_mbv3_w1.2`` space) or a file written by ``ofabench fit-predictor``; a predictor trained
on another space than the one searched (and its latency table's) is refused unless
``allow_space_mismatch``, which the problem records in ``space_mismatch``. Importing this
module does not import torch; loading a predictor does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InfeasibleConstraintError, LatencyTableError
from ..space import ArchBatch, ArchConfig, SpaceSpec, get_space
from .axes import AXES
from .evolution import (
    Constraint,
    SearchResult,
    evolve,
    evolve_many,
    latency_constraint,
    macs_constraint,
    macs_fn,
    params_constraint,
    params_fn,
    random_search,
)
from .points import ParetoPoint

logger = logging.getLogger("ofabench")

TABLE_ROOT = Path("latency_tables")
RESULT_FORMAT = "ofabench.search_result"
SCHEMA_VERSION = 1
METHODS = ("evolution", "random")


# -- the problem -------------------------------------------------------------------------------
@dataclass
class SearchProblem:
    """Everything a search needs apart from the budgets. ``space`` is already restricted to
    the resolutions the latency model covers."""

    space: SpaceSpec
    predictor: Any
    latency_model: Any | None = None
    device: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    space_mismatch: str | None = None

    def constraints(self, budgets: Mapping[str, float | None]) -> list[Constraint]:
        """Constraints from budgets keyed by axis (``latency_ms``, ``mmacs``, ``mparams``)."""
        unknown = sorted(set(budgets) - set(AXES))
        if unknown:
            raise ConfigError(f"unknown budget axis {unknown}; allowed: latency_ms, mmacs, mparams")
        out = []
        if budgets.get("latency_ms") is not None:
            if self.latency_model is None:
                raise ConfigError(
                    "a latency budget needs a latency table: pass --device DEV or --latency-table PATH"
                )
            out.append(latency_constraint(self.latency_model, budgets["latency_ms"]))
        if budgets.get("mmacs") is not None:
            out.append(macs_constraint(self.space, budgets["mmacs"]))
        if budgets.get("mparams") is not None:
            out.append(params_constraint(self.space, budgets["mparams"]))
        return out

    def predict(self, batch: ArchBatch) -> np.ndarray:
        return self.predictor.predict(batch)

    def measure(self, archs: Sequence[ArchConfig] | ArchBatch) -> dict[str, np.ndarray]:
        """Predicted accuracy, latency (if a table is loaded), MMACs and M params of archs."""
        batch = archs if isinstance(archs, ArchBatch) else ArchBatch.from_archs(list(archs))
        out = {
            "accuracy": np.asarray(self.predictor.predict(batch), dtype=np.float64),
            "mmacs": macs_fn(self.space)(batch),
            "mparams": params_fn(self.space)(batch),
        }
        if self.latency_model is not None:
            out["latency_ms"] = np.asarray(self.latency_model.predict_batch(batch), np.float64)
        return out

    def describe(self, arch: ArchConfig) -> dict[str, Any]:
        """One arch with its predicted accuracy and costs, JSON-ready."""
        values = self.measure([arch])
        data: dict[str, Any] = {"arch": arch.to_dict()}
        data.update({k: float(v[0]) for k, v in values.items()})
        return data


# -- loading -----------------------------------------------------------------------------------
def load_problem(
    space: SpaceSpec | str,
    predictor: str | Path,
    device: str | None = None,
    latency_table: str | Path | None = None,
    table_root: str | Path = TABLE_ROOT,
    allow_space_mismatch: bool = False,
) -> SearchProblem:
    """Resolve the space, the latency table (by device or path) and the predictor; refuse a
    predictor trained on another space unless ``allow_space_mismatch``."""
    space = get_space(space)
    model, device_name, table_source = None, device, None
    if device is not None or latency_table is not None:
        model, device_name, table_source = load_latency_model(
            space, device, latency_table, table_root
        )
        space = _restrict_to_table(space, model.resolutions)
    from ..predictor.mlp import resolve_predictor

    acc = resolve_predictor(predictor, space, allow_space_mismatch)
    sources = {"predictor": str(predictor)}
    if table_source is not None:
        sources["latency_table"] = table_source
    return SearchProblem(space, acc, model, device_name, sources, acc.space_mismatch)


def load_latency_model(
    space: SpaceSpec,
    device: str | None = None,
    path: str | Path | None = None,
    table_root: str | Path = TABLE_ROOT,
) -> tuple[Any, str, str]:
    """``(LatencyModel, device name, source path)`` for ``space`` from a device name or a path."""
    from ..latency import LatencyModel

    source = Path(path) if path is not None else _device_table(device, space, table_root)
    table = _read_table(source, space, device)
    if device is not None and table.device not in ("unknown", device):
        raise LatencyTableError(
            f"latency table {source} was measured on device {table.device!r}, not {device!r}; "
            f"pass --device {table.device} (or leave out --device) or that device's table"
        )
    name = device or (table.device if table.device != "unknown" else source.stem)
    return LatencyModel(table, space), name, str(source)


def _device_table(device: str | None, space: SpaceSpec, root: str | Path) -> Path:
    assert device is not None
    path = Path(root) / device / f"{space.name}.json"
    if path.is_file():
        return path
    known = (
        sorted(p.name for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []
    )
    raise LatencyTableError(
        f"no latency table for device {device!r} and space {space.name!r} at {path} "
        f"(devices with tables under {root}/: {known or 'none'}); run "
        f"`ofabench profile --device {device} --space {space.name}` or pass --latency-table PATH"
    )


def _read_table(source: Path, space: SpaceSpec, device: str | None) -> Any:
    from ..latency import LatencyTable

    if not source.exists():
        raise LatencyTableError(f"latency table {source} does not exist")
    if source.is_dir() or source.suffix.lower() in (".yaml", ".yml"):
        name = device or source.name.removesuffix("_lut")
        return LatencyTable.from_ofa_yaml(source, space=space, device=name)
    return LatencyTable.load(source)


def _restrict_to_table(space: SpaceSpec, resolutions: Sequence[int]) -> SpaceSpec:
    covered = [r for r in space.resolutions if r in set(resolutions)]
    if len(covered) < len(space.resolutions):
        logger.info(
            "the latency table covers resolutions %s of space %r: searching those only",
            covered,
            space.name,
        )
    return space.restrict(resolutions=covered)


# -- searching ---------------------------------------------------------------------------------
def run_search(
    problem: SearchProblem,
    budgets: Mapping[str, float | None],
    method: str = "evolution",
    population: int = 100,
    generations: int = 500,
    seed: int = 0,
    n_evals: int | None = None,
    score_cache: dict[bytes, float] | None = None,
) -> SearchResult:
    """Evolutionary or random search (same number of evaluations by default) under budgets;
    ``score_cache`` is the evolution's predictor cache, shared by the budgets of a sweep."""
    if method not in METHODS:
        raise ConfigError(f"unknown search method {method!r}; allowed: {list(METHODS)}")
    constraints = problem.constraints(budgets)
    predict = problem.predictor.predict
    if method == "evolution":
        return evolve(
            problem.space,
            predict,
            constraints,
            population=population,
            generations=generations,
            seed=seed,
            score_cache=score_cache,
        )
    n = n_evals if n_evals is not None else population * (generations + 1)
    return random_search(problem.space, predict, constraints, n, seed=seed, batch_size=1000)


def run_searches(
    problem: SearchProblem,
    budgets: Sequence[Mapping[str, float | None]],
    population: int = 100,
    generations: int = 500,
    seed: int = 0,
) -> list[SearchResult | InfeasibleConstraintError]:
    """The evolutionary search under each of ``budgets`` (a sweep), in lockstep with one
    predictor cache (:func:`~.evolution.evolve_many`): a result, or why that budget cannot be met."""
    return evolve_many(
        problem.space,
        problem.predictor.predict,
        [problem.constraints(b) for b in budgets],
        population=population,
        generations=generations,
        seed=seed,
    )


def search_report(
    problem: SearchProblem, budgets: Mapping[str, float | None], result: SearchResult
) -> dict[str, Any]:
    """The JSON document ``ofabench search`` writes: best arch, its accuracy and costs, the
    search history and settings, sources and provenance."""
    from ..provenance import provenance

    return {
        "format": RESULT_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "method": result.method,
        "space": problem.space.name,
        "predictor_space": _predictor_space(problem),
        "space_mismatch": problem.space_mismatch,
        "device": problem.device,
        "budgets": {k: v for k, v in budgets.items() if v is not None},
        "best": problem.describe(result.best),
        "search": {
            "history": result.history,
            "n_evaluations": result.n_evaluations,
            "wall_time_s": result.wall_time_s,
            "settings": result.settings,
        },
        "sources": dict(problem.sources),
        "provenance": provenance(),
    }


def _predictor_space(problem: SearchProblem) -> str | None:
    trained = getattr(problem.predictor, "trained_space", None)
    return None if trained is None else trained.name


def result_point(
    problem: SearchProblem,
    result: SearchResult,
    method: str,
    axis: str | None = None,
    budget: float | None = None,
    kind: str = "search",
) -> ParetoPoint:
    """A search's best arch as a :class:`~.points.ParetoPoint` with predicted accuracy and all
    costs (not only the constrained ones)."""
    info = problem.describe(result.best)
    return ParetoPoint(
        method=method,
        accuracy=info["accuracy"],
        latency_ms=info.get("latency_ms"),
        mmacs=info["mmacs"],
        mparams=info["mparams"],
        device=problem.device if "latency_ms" in info else None,
        budget=budget,
        axis=axis,
        kind=kind,
        accuracy_kind="predicted",
        source=f"ofabench {result.method} search ({result.n_evaluations} evaluations)",
        arch=info["arch"],
    )

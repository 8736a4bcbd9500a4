"""Few-shot onboarding of a new device: measure ``K`` well-chosen ops and a few whole subnets on
it, and predict every other entry of its latency table from the tables of devices already
profiled (the *sources*, same search space).

    from ofabench.latency.transfer import profile_transfer
    result = profile_transfer("new-board", "ofa_mbv3_w1.0",
                              ["latency_tables/cpu-onnxruntime/ofa_mbv3_w1.0.json", ...], budget=50)

**Model.** The log latency of an op on the new device is a ridge regression on the log latencies
the sources measured for the same op and on the op's own features (kind, kernel, SE, h-swish,
stride, skip, expand ratio, log sizes and channels, and kernel/SE/activation x size
interactions), the ridge strength chosen by leave-one-out over the measured ops; its residuals
at the measured ops are then pooled per op family (kind, kernel, SE, h-swish, stride, expand
ratio) and per op group (everything but the feature-map size), each shrunk towards zero by
``n / (n + 1)``, and added. Measured ops keep their measurement.

**Which ops.** Greedy D-optimal design over the regression's standardised features, each op
weighted by how often random subnets run it times its latency as the sources see it: ops that
add information and matter for subnet sums, spread over op groups and resolutions.

**Whole subnets.** ``subnets`` random subnets are measured end to end and the table calibrated
on them (:func:`~ofabench.latency.profiler.fit_calibration`, method ``auto``), which absorbs a
bias the transfer shares across ops and the per-call overhead.

The table says what was measured: ``provenance["transfer"]`` holds the sources, the budget,
``measured_keys`` and ``transferred_keys``; transferred entries have ``count = 0``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..devices.base import MeasureSettings
from ..devices.profiles import DeviceProfile, load_profile
from ..errors import ConfigError, LatencyTableError
from ..provenance import provenance as make_provenance
from ..space import ArchConfig, SpaceSpec, as_rng, get_space
from .table import LatencyEntry, LatencyTable, OpSpec, arch_ops

log = logging.getLogger("ofabench")

TRANSFER = "transfer"
MIN_BUDGET = 10  # the regression has ~20 coefficients; below 10 ops its choice of ridge is noise
DEFAULT_SUBNETS = 10
RIDGE_STRENGTHS = (0.01, 0.1, 1.0, 3.0, 10.0, 30.0, 100.0)
METHOD = (
    "ridge regression of log latency on the sources' log latencies and op features (strength by "
    "leave-one-out), plus shrunk residual means per op family and per op group; measured ops "
    "chosen by weighted greedy D-optimal design; calibrated on whole subnets (auto)"
)


# -- features --------------------------------------------------------------------------------------
def op_features(op: OpSpec) -> np.ndarray:
    """What an op's latency depends on besides the sources' view of it."""
    k, lh = op.kernel, math.log(op.in_hw)
    expand = math.log(max(op.mid, 1) / max(op.in_c, 1)) if op.kind == "mbconv" else 0.0
    base = [
        op.kind == "mbconv", op.kind == "stem", op.kind not in ("mbconv", "stem"),
        k == 3, k == 5, k == 7, op.se, op.h_swish, op.stride == 2, op.residual, expand,
        lh, math.log(op.in_c), math.log(op.out_c),
    ]  # fmt: skip
    interactions = [
        (k == 5) * lh, (k == 7) * lh, op.se * math.log(op.in_c), op.se * lh,
        op.h_swish * lh, (op.stride == 2) * lh,
    ]  # fmt: skip
    return np.array([*base, *interactions], dtype=np.float64)


def op_family(op: OpSpec) -> Hashable:
    """Ops whose latency behaves alike on any device: kind, kernel, SE, activation, stride, expand."""
    expand = round(op.mid / max(op.in_c, 1)) if op.kind == "mbconv" else 0
    return (op.kind, op.kernel, op.se, op.h_swish, op.stride, expand)


def op_group(op: OpSpec) -> Hashable:
    """Everything in an op's key but the feature-map size."""
    return dataclasses.astuple(dataclasses.replace(op, in_hw=0, out_hw=0))


def design_matrix(ops: Sequence[OpSpec], sources: Sequence[LatencyTable]) -> np.ndarray:
    """One row per op: the sources' log latencies, then :func:`op_features`."""
    columns = [np.log([max(src[op.key].mean_ms, 1e-6) for op in ops]) for src in sources]
    features = np.array([op_features(op) for op in ops])
    return np.column_stack([*columns, features]) if columns else features


# -- checks ----------------------------------------------------------------------------------------
def load_sources(
    space: SpaceSpec, sources: Sequence[LatencyTable | str | Path], keys: Sequence[str]
) -> list[LatencyTable]:
    """The source tables, each checked to be of ``space`` and to hold every key of ``keys``."""
    if not sources:
        raise ConfigError("transfer needs at least one source table (--transfer-from A,B,...)")
    tables = []
    for source in sources:
        table = source if isinstance(source, LatencyTable) else _load_source(source)
        try:
            table.check_space(space)
        except LatencyTableError as exc:
            raise LatencyTableError(f"transfer source {source}: {exc}") from exc
        missing = [k for k in keys if k not in table]
        if missing:
            raise LatencyTableError(
                f"transfer source {source} lacks {len(missing)} of the {len(keys)} ops to predict "
                f"(first: {missing[0]}); profile it at the same resolutions"
            )
        tables.append(table)
    return tables


def _load_source(source: str | Path) -> LatencyTable:
    path = Path(source)
    if path.suffix == ".json" or path.is_file():
        return LatencyTable.load(path)
    raise LatencyTableError(
        f"transfer source {source} is not a table file; pass table paths or device names with "
        f"tables under latency_tables/"
    )


def check_budget(budget: int, n_ops: int) -> None:
    """``MIN_BUDGET <= budget <= n_ops``, else a :class:`ConfigError` saying the range."""
    if not MIN_BUDGET <= budget <= n_ops:
        raise ConfigError(
            f"budget {budget} is outside {MIN_BUDGET}..{n_ops}: the transfer needs at least "
            f"{MIN_BUDGET} measured ops and the table has {n_ops}"
        )


# -- choosing ops ----------------------------------------------------------------------------------
def op_usage(space: SpaceSpec, keys: Sequence[str], n: int = 300, seed: int = 0) -> np.ndarray:
    """How often a random subnet of ``space`` runs each op of ``keys`` (mean count)."""
    index = {k: i for i, k in enumerate(keys)}
    counts = np.zeros(len(keys))
    rng = as_rng(seed)
    for _ in range(n):
        for op in arch_ops(space, space.sample(rng)):
            if op.key in index:
                counts[index[op.key]] += 1
    return counts / n


def choose_ops(
    design: np.ndarray, weights: np.ndarray, k: int, candidates: Sequence[int]
) -> list[int]:
    """``k`` rows of ``design`` among ``candidates``: greedy D-optimal (each step adds the row
    with the largest weighted leverage under the rows chosen so far)."""
    z = _standardise(design)
    z = np.column_stack([np.ones(len(z)), z])
    inverse = np.eye(z.shape[1]) * 10.0  # (0.1 I)^-1: a weak prior keeps the first steps finite
    pool = list(candidates)
    chosen: list[int] = []
    for _ in range(min(k, len(pool))):
        rows = z[pool]
        gain = np.einsum("ij,jk,ik->i", rows, inverse, rows) * weights[pool]
        pick = pool.pop(int(np.argmax(gain)))
        chosen.append(pick)
        v = inverse @ z[pick]
        inverse -= np.outer(v, v) / (1.0 + z[pick] @ v)
    return chosen


def selection_weights(design: np.ndarray, usage: np.ndarray, n_sources: int) -> np.ndarray:
    """Usage times the sources' mean latency (square-rooted, floored): what matters for sums."""
    latency = np.exp(design[:, :n_sources].mean(axis=1)) if n_sources else np.ones(len(design))
    weight = usage * latency
    return np.sqrt(weight / max(weight.max(), 1e-12)) + 0.05


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)


# -- the regression ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TransferFit:
    """Predicted log latencies of every op, and how the fit went."""

    log_ms: np.ndarray
    ridge: float
    loo_rmse: float  # leave-one-out RMS error of the ridge part, in log units


def fit_transfer(
    design: np.ndarray, ops: Sequence[OpSpec], measured_rows: Sequence[int], log_ms: np.ndarray
) -> TransferFit:
    """The model of the module docstring, fitted on ``log_ms`` of ``measured_rows``."""
    rows = list(measured_rows)
    mean, std = design[rows].mean(axis=0), design[rows].std(axis=0) + 1e-9
    z = (design - mean) / std
    ridge, loo = _choose_ridge(z[rows], log_ms)
    coef = _ridge(z[rows], log_ms, ridge)
    predicted = log_ms.mean() + z @ coef
    for grouping in (op_family, op_group):
        predicted += _shrunk_effects(ops, rows, log_ms - predicted[rows], grouping)
    return TransferFit(predicted, ridge, loo)


def _ridge(z: np.ndarray, y: np.ndarray, strength: float) -> np.ndarray:
    return np.linalg.solve(z.T @ z + strength * np.eye(z.shape[1]), z.T @ (y - y.mean()))


def _choose_ridge(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The strength of :data:`RIDGE_STRENGTHS` with the smallest leave-one-out error (closed
    form: residual / (1 - leverage)), and that error (RMS)."""
    best = (math.inf, RIDGE_STRENGTHS[0])
    centred = y - y.mean()
    for strength in RIDGE_STRENGTHS:
        hat = z @ np.linalg.solve(z.T @ z + strength * np.eye(z.shape[1]), z.T)
        leverage = np.clip(np.diag(hat) + 1.0 / len(y), None, 0.999)
        loo = (centred - hat @ centred) / (1.0 - leverage)
        best = min(best, (float(np.sqrt(np.mean(loo**2))), strength))
    return best[1], best[0]


def _shrunk_effects(
    ops: Sequence[OpSpec], rows: Sequence[int], residuals: np.ndarray, grouping: Any
) -> np.ndarray:
    """Per group of ``grouping``, the measured residuals' sum over ``n + 1`` (a mean shrunk
    towards zero), for every op of the group."""
    sums: dict[Hashable, list[float]] = defaultdict(list)
    for row, residual in zip(rows, residuals):
        sums[grouping(ops[row])].append(float(residual))
    effect = {g: sum(v) / (len(v) + 1.0) for g, v in sums.items()}
    return np.array([effect.get(grouping(op), 0.0) for op in ops])


# -- a table from measurements and sources ------------------------------------------------------------
def predict_table_ms(
    ops: Sequence[OpSpec], sources: Sequence[LatencyTable], measured: Mapping[str, float]
) -> tuple[np.ndarray, TransferFit]:
    """Latency (ms) of every op of ``ops``: measured where ``measured`` has it, else predicted."""
    design = design_matrix(ops, sources)
    rows = [i for i, op in enumerate(ops) if op.key in measured]
    log_ms = np.log([measured[ops[i].key] for i in rows])
    fit = fit_transfer(design, ops, rows, log_ms)
    values = np.exp(fit.log_ms)
    values[rows] = np.exp(log_ms)
    return values, fit


def plan_measurements(
    space: SpaceSpec,
    ops: Sequence[OpSpec],
    sources: Sequence[LatencyTable],
    budget: int,
    candidates: Sequence[str] | None = None,
    seed: int = 0,
) -> list[OpSpec]:
    """The ``budget`` ops to measure (see the module docstring), among ``candidates`` (keys;
    default all)."""
    check_budget(budget, len(ops))
    design = design_matrix(ops, sources)
    weights = selection_weights(
        design, op_usage(space, [op.key for op in ops], seed=seed), len(sources)
    )
    allowed = set(candidates) if candidates is not None else None
    pool = [i for i, op in enumerate(ops) if allowed is None or op.key in allowed]
    return [ops[i] for i in choose_ops(design, weights, budget, pool)]


def transferred_keys(table: LatencyTable) -> set[str]:
    """Keys whose entries were transferred from other devices, not measured."""
    return set((table.provenance.get(TRANSFER) or {}).get("transferred_keys", []))


def fill_table(
    table: LatencyTable,
    ops: Sequence[OpSpec],
    sources: Sequence[LatencyTable],
    measured: Mapping[str, LatencyEntry],
    source_names: Sequence[str],
) -> dict[str, Any]:
    """Add every op of ``ops`` to ``table``: ``measured`` entries as they are, the others
    transferred; returns (and stores) ``provenance["transfer"]``."""
    values, fit = predict_table_ms(ops, sources, {k: e.mean_ms for k, e in measured.items()})
    transferred = []
    for op, value in zip(ops, values):
        if op.key in measured:
            table.add(op, measured[op.key])
        else:
            table.add(op, LatencyEntry(float(value), 0.0, 0, float(value)))
            transferred.append(op.key)
    info = {
        "method": METHOD,
        "sources": list(source_names),
        "budget": len(measured),
        "ridge": fit.ridge,
        "loo_rmse_log": round(fit.loo_rmse, 5),
        "measured_keys": sorted(measured),
        "transferred_keys": sorted(transferred),
    }
    table.provenance[TRANSFER] = info
    return info


# -- the live run ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TransferResult:
    """What a few-shot profiling run did."""

    path: str
    device: str
    space: str
    sources: tuple[str, ...]
    n_entries: int
    n_measured: int
    n_transferred: int
    n_subnets: int
    calibration: dict[str, Any]
    drift: dict[str, Any]
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["sources"] = list(self.sources)
        return data


def profile_transfer(
    profile: DeviceProfile | str | Path,
    space: SpaceSpec | str,
    sources: Sequence[LatencyTable | str | Path],
    budget: int,
    subnets: int = DEFAULT_SUBNETS,
    out_path: str | Path | None = None,
    settings: MeasureSettings | None = None,
    seed: int = 0,
    progress: Any = None,
    probe: Any = None,
) -> TransferResult:
    """Measure ``budget`` ops and ``subnets`` whole subnets on the device and write its table,
    the other entries transferred from ``sources`` (see the module docstring). Everything is
    checked before anything is measured: sources of another space or lacking ops, a budget
    outside ``MIN_BUDGET..ops``, an existing ``out_path`` (never overwritten) raise one-line
    errors."""
    from .profiler import default_table_path, ops_at

    start = time.perf_counter()
    profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
    space = get_space(space)
    ops = list(ops_at(space, space.resolutions).values())
    tables = load_sources(space, sources, [op.key for op in ops])
    check_budget(budget, len(ops))
    if subnets < 2:
        raise ConfigError(f"transfer needs at least 2 whole subnets to calibrate on, got {subnets}")
    path = Path(out_path) if out_path else default_table_path(profile.name, space.name)
    if path.exists():
        raise LatencyTableError(
            f"{path} exists; a transfer writes a new table: pass another --out or delete it"
        )
    chosen = plan_measurements(space, ops, tables, budget, seed=seed)
    names = [str(s) if not isinstance(s, LatencyTable) else s.device for s in sources]
    return _run_transfer(
        profile,
        space,
        ops,
        tables,
        names,
        chosen,
        subnets,
        path,
        settings,
        seed,
        progress,
        probe,
        start,
    )


def _run_transfer(
    profile: DeviceProfile,
    space: SpaceSpec,
    ops: Sequence[OpSpec],
    tables: Sequence[LatencyTable],
    names: Sequence[str],
    chosen: Sequence[OpSpec],
    subnets: int,
    path: Path,
    settings: MeasureSettings | None,
    seed: int,
    progress: Any,
    probe: Any,
    start: float,
) -> TransferResult:
    from .model import LatencyModel
    from .probe import DriftGuard, Probed, ProbeSettings, open_probe, record_reference
    from .profiler import (
        CALIBRATION,
        calibration_archs,
        entry_from,
        fit_calibration,
        measure_op,
        measure_subnet,
        open_backend,
    )

    settings = settings or MeasureSettings()
    probe = probe or ProbeSettings()
    backend = open_backend(profile)
    table = LatencyTable.for_space(
        space, device=profile.name, backend=profile.backend,
        provenance=make_provenance(device=profile.name, backend=profile.backend, space=space.name),
    )  # fmt: skip
    archs = calibration_archs(space, space.resolutions, subnets, seed + 1)
    total = {"n": len(chosen) + len(archs), "done": 0}

    def step(key: str) -> None:
        total["done"] += 1
        if progress is not None:
            progress(total["done"], total["n"], key)

    measured: dict[str, LatencyEntry] = {}
    points: list[tuple[ArchConfig, float]] = []
    reader = open_probe(backend, settings, probe)
    try:
        guard = DriftGuard(reader, probe, None, lambda n: total.__setitem__("n", total["n"] + n))
        guard.start()

        def record_op(p: Probed[OpSpec]) -> None:
            measured[p.item.key] = entry_from(p.measurement, p)
            step(p.item.key)

        def record_subnet(p: Probed[ArchConfig]) -> None:
            points.append((p.item, p.normalised_ms))
            step(f"subnet {len(points)}/{len(archs)}")

        guard.measure(chosen, lambda op: measure_op(backend, op, settings), record_op)
        guard.measure(
            archs, lambda a: measure_subnet(backend, space, a, settings), record_subnet, 2
        )
    finally:
        if reader is not None:
            reader.close()
    info = fill_table(table, ops, tables, measured, names)
    if guard.reference_ms is not None and reader is not None:
        record_reference(table, guard.reference_ms, guard.settings, reader.model_id)
        info["drift"] = guard.log.summary(guard.reference_ms)
    fitted, method = fit_calibration(
        LatencyModel(table, space), [a for a, _ in points], [m for _, m in points], "auto"
    )
    calibration = {
        "scale": fitted.scale, "overhead_ms": fitted.overhead_ms, "n": len(points),
        "seed": seed + 1, "method": method,
        "points": [{"arch": a.to_dict(), "measured_ms": m} for a, m in points],
    }  # fmt: skip
    table.provenance[CALIBRATION] = calibration
    table.save(path)
    log.info(
        "wrote %s: %d ops measured, %d transferred",
        path,
        len(measured),
        len(info["transferred_keys"]),
    )
    return TransferResult(
        str(path), profile.name, space.name, tuple(names), len(table), len(measured),
        len(info["transferred_keys"]), len(points),
        {k: v for k, v in calibration.items() if k != "points"},
        info.get("drift", {}), time.perf_counter() - start,
    )  # fmt: skip


def resolve_sources(names: str | Sequence[str], space: SpaceSpec) -> list[Path]:
    """``"A,B,..."`` (device names with tables under ``latency_tables/``, or table paths) as
    table paths; a missing one is a one-line error."""
    from .profiler import default_table_path

    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    paths = []
    for item in filter(None, items):
        path = Path(item) if Path(item).suffix == ".json" else default_table_path(item, space.name)
        if not path.is_file():
            raise LatencyTableError(
                f"transfer source {item!r}: no table at {path}; profile that device first or pass "
                f"a table path"
            )
        paths.append(path)
    if not paths:
        raise ConfigError("--transfer-from needs at least one device or table path")
    return paths

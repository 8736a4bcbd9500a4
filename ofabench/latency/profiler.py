"""Profile a device into a latency table: every distinct op of a search space, at every requested
resolution, measured by the device's backend and written atomically as the run goes.

    from ofabench.latency.profiler import profile_device
    result = profile_device("cpu-onnxruntime", "ofa_mbv3_w1.0", fit_resolutions="every:4")

**Resume.** The table is saved (temp file, fsync, rename) after every op while saving is cheap,
and at most every ``~20 x save time`` once the table is large (so saving costs <= 5% of the run),
on any error and at the end. A run started on an existing table checks that it belongs to the
same space, device and backend (else :class:`LatencyTableError`) and skips every op already
measured: a killed run resumes where it stopped.

**Cost saving** (``fit_resolutions``). Many ops repeat across resolutions (the head and deep
stages see the same feature-map sizes at neighbouring resolutions), and an op's latency at a
fixed channel configuration is close to linear in its feature-map area. With ``"every:4"`` only
every 4th resolution plus both ends is measured; an op needed only at the other resolutions gets
``latency = a * work + b``, least squares over the measured ops of its group (same kind, channels,
mid channels, kernel, stride, skip, SE, activation; different feature-map size). ``work`` is the
op's multiply-accumulates at that size (a fixed mix of input and output H*W: exactly linear in
H*W for stride-1 ops, and right about the rounding of odd sizes for stride-2 ones), or its input
H*W for the pooling op. An op outside its group's measured range, or whose group has fewer than
two measured sizes, is measured instead: nothing is extrapolated.

A group whose line misses its measured points by more than ``max_fit_rms`` (RMS residual over
mean latency, default 5%) is handled in three steps. *Spikes*: a measured point far above the
line (more than twice ``max_fit_rms``) is left out of it and kept as measured, one at a time
while at least three points and two thirds of them stay in the line and no two neighbouring
sizes are left out (untuned TVM runs the early
blocks 2-3x slower at feature maps of 64 and 96 px, i.e. 128 and 192 px inputs, than the sizes
either side: cache-set conflicts, not a trend). *Refinement*: a group that still misses gets
one op measured near the middle of each gap between its measured sizes, and is fitted again.
*Measured instead*: every op of a group that still misses is measured: where latency is not
linear in H*W, or the measurements were too noisy to tell, fitting would cost fidelity. A spike
at a size that is not measured cannot be seen: ``validate`` measures what such a table costs.

**Noise.** An op whose measurement rounds never agreed (:attr:`Measurement.stable` false) is
measured once more at the end of the pass and the faster median kept (transients on a shared
machine only ever add time); those still unsettled are listed in the provenance.

**Compiling ahead.** A backend with ``prebuild_ops(ops)`` and ``prebuild_subnets(space, archs)``
methods (TVM: a process pool and a library cache, :mod:`ofabench.devices.tvm_build`) compiles each
batch of ops (and the calibration subnets) before any is timed, so compiling never runs beside a
measurement and uses every core; the probe is read afresh after it. An op that fails to compile
is reported (with its reason, in ``runs[-1]["compile"]``) after the others are measured.

**Calibration** (``calibrate=K``). A sum of per-op latencies misses what happens between ops
(on ONNX Runtime, single-block models carry layout reorders a whole network does not, and every
op pays the per-call cost once). ``K`` random subnets are measured end to end and
``measured = scale * lut_sum + overhead_ms`` is fitted: by least squares
(``calibration_method="affine"``, :meth:`LatencyModel.fit_overhead`) or as the median ratio
(``"ratio"``, overhead 0: robust with few, noisy subnets); the default ``"auto"`` keeps whichever
of the plain sum, ``ratio`` and ``affine`` predicts each measured subnet best from the others
(leave-one-out), so a calibration never makes the table worse on its own evidence (on a machine
whose speed drifts, an affine fit to ten subnets can). :func:`latency_model` builds the
calibrated model from the table; a later run that re-measures entries re-fits it only when given
``calibrate`` again.

Every entry's ``mean_ms`` holds the *median* of the calmest measurement round (robust to this
machine's transients; ``median_ms`` the same, ``std_ms`` the spread, ``count`` the timed runs).
A fitted entry has ``count = 0`` and ``std_ms`` = its group's RMS fit residual. The table's
provenance says what was done::

    provenance["profiling"] = {
        "measure_settings": {...}, "backend_info": {...},     # from the first measurement
        "resolutions": [...], "measured_resolutions": [...], "fitted_resolutions": [...],
        "fitted_keys": [...],                                 # entries that were fitted, not measured
        "unstable_keys": [...],                               # measured, rounds never agreed
        "fit": {"method": ..., "groups": ..., "groups_rejected": ..., "ops_measured_instead": ...,
                "max_rel_rms": ..., "median_rel_rms": ..., "worst_groups": [...]},
        "runs": [{"started": ..., "command": ..., "measured": ..., "fitted": ..., "wall_s": ...}, ...],
    }
    provenance["calibration"] = {"scale": ..., "overhead_ms": ..., "n": K, "seed": ...,
                                 "method": "affine" | "ratio" | "auto: ...", "description": ...,
                                 "points": [{"arch": {...}, "measured_ms": ...}, ...]}
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..devices.base import PER_MEASUREMENT_INFO, Backend, Measurement, MeasureSettings
from ..devices.profiles import DeviceProfile, load_profile
from ..errors import BackendError, ConfigError, LatencyTableError
from ..provenance import atomic_open, command_line
from ..provenance import provenance as make_provenance
from ..space import ArchBatch, ArchConfig, SpaceSpec, as_rng, get_space
from .counting import layer_macs
from .model import LatencyModel
from .ops import build_op_module, build_subnet_module, op_geometry
from .probe import (
    PROBE_ID,
    DriftGuard,
    Probe,
    Probed,
    ProbeSettings,
    open_probe,
    record_reference,
)
from .probe import table_reference as probe_reference
from .table import LatencyEntry, LatencyTable, OpSpec, resolution_ops

log = logging.getLogger("ofabench")

ProgressCallback = Callable[[int, int, str], None]
"""``progress(done, total, key)``: called with ``done = 0`` before the first measurement and after
every measured op (or calibration subnet); ``key`` names what was just measured."""

TABLE_DIR = Path("latency_tables")
PROFILING = "profiling"
CALIBRATION = "calibration"
FIT_METHOD = (
    "least squares latency = a * work + b per op group (kind, channels, mid, kernel, stride, "
    "idskip, se, hs), work = the op's MACs at its feature-map size (input H*W for pooling), "
    "over the group's measured sizes; interpolation only; measured points more than 2x the "
    "allowed RMS share above the line left out (spikes), groups that still miss refined once "
    "with an op in the middle of each gap, then measured"
)
CALIBRATION_METHODS = {
    "affine": "least squares measured = scale * lut_sum + overhead_ms over random subnets "
    "measured end to end",
    "ratio": "scale = median(measured / lut_sum) over random subnets measured end to end, "
    "overhead_ms = 0",
    "auto": "whichever of plain sum, ratio and affine has the smallest leave-one-out error over "
    "the random subnets measured end to end",
}
SCALE_RANGE = (0.8, 1.25)  # plausible calibration scales; outside, the affine fit fitted noise
MAX_FIT_RMS = 0.05  # a group whose line misses its points by more (RMS / mean) is measured
SAVE_OVERHEAD = 0.05  # adaptive saving keeps the time spent saving below this share of the run


# -- plan ------------------------------------------------------------------------------------------
def default_table_path(device: str, space_name: str, root: str | Path = TABLE_DIR) -> Path:
    """Where ``ofabench profile`` writes a table: ``latency_tables/<device>/<space>.json``."""
    return Path(root) / device / f"{space_name}.json"


def select_resolutions(
    space: SpaceSpec, resolutions: Iterable[int] | str | None
) -> tuple[int, ...]:
    """The resolutions to profile: all of the space's (``None`` or ``"all"``) or a subset."""
    if resolutions is None or resolutions == "all":
        return space.resolutions
    if isinstance(resolutions, str):
        resolutions = parse_int_list(resolutions, "resolutions")
    values = tuple(sorted({int(r) for r in resolutions}))
    bad = [r for r in values if r not in space.resolutions]
    if bad or not values:
        raise ConfigError(
            f"resolutions {bad or 'none'} are not in space {space.name!r}; allowed: "
            f"{list(space.resolutions)} (or 'all')"
        )
    return values


def measured_resolutions(
    resolutions: Sequence[int], fit_resolutions: str | Sequence[int] | None
) -> tuple[int, ...]:
    """Which of ``resolutions`` to measure (the others are fitted).

    ``None``/``"none"``: all. ``"every:N"``: every Nth from the smallest, plus the largest.
    ``"measure:R1,R2,..."`` or a sequence of ints: those resolutions.
    """
    resolutions = tuple(sorted(resolutions))
    if fit_resolutions is None or fit_resolutions == "none":
        return resolutions
    if isinstance(fit_resolutions, str):
        kind, _, value = fit_resolutions.partition(":")
        if kind == "every":
            step = _positive_int(value, fit_resolutions)
            return tuple(sorted({*resolutions[::step], resolutions[-1]}))
        if kind != "measure":
            raise ConfigError(
                f"fit resolutions {fit_resolutions!r} not understood; use 'every:N' (measure every "
                f"Nth resolution plus both ends, fit the rest), 'measure:R1,R2,...' or 'none'"
            )
        fit_resolutions = parse_int_list(value, "fit resolutions")
    chosen = tuple(sorted({int(r) for r in fit_resolutions}))
    bad = [r for r in chosen if r not in resolutions]
    if bad or not chosen:
        raise ConfigError(
            f"resolutions to measure {bad or 'none'} are not among the profiled resolutions "
            f"{list(resolutions)}"
        )
    return chosen


def parse_int_list(text: str, what: str) -> list[int]:
    """``"160,176, 192"`` -> ``[160, 176, 192]``; anything else is a :class:`ConfigError`."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from exc


def _positive_int(text: str, spec: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"fit resolutions {spec!r}: N in 'every:N' must be an integer >= 1")
    return int(text)


@dataclass(frozen=True)
class ProfilePlan:
    """What a profiling run does: ``to_measure`` (in order), ``to_fit``, and the keys ``skipped``
    because the table already holds a measurement of them."""

    resolutions: tuple[int, ...]
    measured_resolutions: tuple[int, ...]
    to_measure: tuple[OpSpec, ...]
    to_fit: tuple[OpSpec, ...]
    skipped: tuple[str, ...]

    @property
    def fitted_resolutions(self) -> tuple[int, ...]:
        return tuple(r for r in self.resolutions if r not in self.measured_resolutions)


def ops_at(space: SpaceSpec, resolutions: Iterable[int]) -> dict[str, OpSpec]:
    """Every distinct op of ``space`` at ``resolutions``, in a stable order (key -> op)."""
    ops: dict[str, OpSpec] = {}
    for r in resolutions:
        for op in resolution_ops(space, r).all_ops():
            ops.setdefault(op.key, op)
    return ops


def plan_profile(
    space: SpaceSpec,
    resolutions: Sequence[int],
    measure_at: Sequence[int],
    measured_before: Iterable[str] = (),
) -> ProfilePlan:
    """Split the ops of ``resolutions`` into those to measure and those to fit (see the module
    docstring); keys in ``measured_before`` are skipped."""
    done = set(measured_before)
    anchors = ops_at(space, measure_at)
    others = {k: op for k, op in ops_at(space, resolutions).items() if k not in anchors}
    sizes = _sizes_by_group([*anchors.values(), *(OpSpec.parse(k, space.family) for k in done)])
    to_fit, extra = [], []
    for op in others.values():
        if op.key not in done:
            (to_fit if _can_interpolate(sizes, op) else extra).append(op)
    to_measure = [op for op in [*anchors.values(), *extra] if op.key not in done]
    skipped = [k for k in [*anchors, *others] if k in done]
    return ProfilePlan(
        tuple(resolutions), tuple(measure_at), tuple(to_measure), tuple(to_fit), tuple(skipped)
    )


# -- fitting -----------------------------------------------------------------------------------------
def op_group(op: OpSpec) -> tuple[Any, ...]:
    """What an op's latency-vs-size fit is shared by: everything in its key but the sizes."""
    strided = op.kind == "stem" and op.out_hw < op.in_hw
    return (*dataclasses.astuple(dataclasses.replace(op, in_hw=0, out_hw=0)), strided)


def op_work(op: OpSpec) -> float:
    """The size-dependent work the fit regresses on: MACs (input H*W for pooling)."""
    if op.kind == "mbconv":
        return float(layer_macs(op_geometry(op)))
    if op.kind == "stem":
        return float(op.out_hw * op.out_hw)
    return float(op.in_hw * op.in_hw)


def _sizes_by_group(ops: Iterable[OpSpec]) -> dict[tuple[Any, ...], set[int]]:
    sizes: dict[tuple[Any, ...], set[int]] = defaultdict(set)
    for op in ops:
        sizes[op_group(op)].add(op.in_hw)
    return sizes


def _can_interpolate(sizes: Mapping[tuple[Any, ...], set[int]], op: OpSpec) -> bool:
    known = sizes.get(op_group(op), set())
    return len(known) >= 2 and min(known) <= op.in_hw <= max(known)


@dataclass(frozen=True)
class LinearFit:
    """``latency = slope * work + intercept`` of one op group, with its RMS residual (ms) and
    relative RMS residual over the points in the line, the measured range of input sizes it may
    be used in, and the sizes of the measured points left out of it as spikes."""

    slope: float
    intercept: float
    rms_ms: float
    min_hw: int
    max_hw: int
    n: int
    rel_rms: float = 0.0
    spikes: tuple[int, ...] = ()

    def __call__(self, op: OpSpec) -> float:
        if not self.min_hw <= op.in_hw <= self.max_hw:
            raise LatencyTableError(
                f"op {op.key} lies outside the measured sizes {self.min_hw}..{self.max_hw} of "
                f"its group; refusing to extrapolate"
            )
        return self.slope * op_work(op) + self.intercept


SPIKE_FACTOR = 2.0  # a point left out of its group's line lies this many max_fit_rms above it
MIN_LINE_POINTS = 3  # a line with spikes left out still rests on this many points (and 2/3)


def fit_group(points: Sequence[tuple[OpSpec, float]], max_rel_rms: float = math.inf) -> LinearFit:
    """Least-squares line through ``(op, latency_ms)`` points of one group (>= 2 distinct sizes).

    When the line misses the points by more than ``max_rel_rms`` (RMS over mean), the point
    furthest above it is left out (a spike: kept as measured, not part of the line) and the line
    fitted again, while that point lies more than ``SPIKE_FACTOR * max_rel_rms`` above the line,
    is not next to a size already left out (a spike is one size; neighbours far above the line
    mean the line is wrong), and at least ``MIN_LINE_POINTS`` points and two thirds of them stay
    in."""
    x = np.array([op_work(op) for op, _ in points], dtype=np.float64)
    y = np.array([ms for _, ms in points], dtype=np.float64)
    sizes = [op.in_hw for op, _ in points]
    if len(set(sizes)) < 2:
        raise LatencyTableError("a latency fit needs measurements at two or more sizes")
    keep = np.ones(len(points), dtype=bool)
    least = max(MIN_LINE_POINTS, math.ceil(2 * len(points) / 3))
    while True:
        slope, intercept, rms, rel = _line(x, y, keep)
        if rel <= max_rel_rms or keep.sum() - 1 < least:
            break
        predicted = np.maximum(slope * x + intercept, 1e-12)
        excess = np.where(keep, y / predicted - 1.0, -np.inf)
        worst = int(np.argmax(excess))
        if excess[worst] <= SPIKE_FACTOR * max_rel_rms:
            break
        if _next_to_a_spike(sizes, keep, worst):
            break  # a spike is one size: neighbours far above the line mean the line is wrong
        keep[worst] = False
    if rel > max_rel_rms and not keep.all():  # still missing: reported on all its points
        keep[:] = True
        slope, intercept, rms, rel = _line(x, y, keep)
    spikes = tuple(sorted(s for s, k in zip(sizes, keep) if not k))
    return LinearFit(
        slope, intercept, rms, min(sizes), max(sizes), int(keep.sum()), rel, spikes
    )


def _next_to_a_spike(sizes: Sequence[int], keep: np.ndarray, i: int) -> bool:
    """Whether point ``i``'s size is next (among the group's measured sizes) to one left out."""
    order = sorted(set(sizes))
    at = order.index(sizes[i])
    near = {order[j] for j in (at - 1, at + 1) if 0 <= j < len(order)}
    return any(not k and s in near for s, k in zip(sizes, keep))


def _line(x: np.ndarray, y: np.ndarray, keep: np.ndarray) -> tuple[float, float, float, float]:
    """Slope, intercept, RMS residual (ms) and RMS over mean of the points ``keep`` selects."""
    design = np.stack([x[keep], np.ones(int(keep.sum()))], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(design, y[keep], rcond=None)
    rms = float(np.sqrt(np.mean((design @ np.array([slope, intercept]) - y[keep]) ** 2)))
    mean = float(np.mean(y[keep]))
    return float(slope), float(intercept), rms, rms / mean if mean > 0 else 0.0


def fit_entries(
    table: LatencyTable, ops: Sequence[OpSpec], max_rel_rms: float = math.inf
) -> tuple[dict[str, Any], list[OpSpec]]:
    """Add a fitted entry for every op of ``ops`` from the table's measured entries, except for
    ops whose group's line (spikes left out, see :func:`fit_group`) fits its points worse than
    ``max_rel_rms`` (RMS residual over the mean latency of the points in the line): those are
    returned, to be measured instead. Also returns a summary for the provenance (how many
    groups, how well the lines fit, which measured points were left out as spikes)."""
    points = _measured_points(table)
    fits = {
        group: fit_group(points[group], max_rel_rms) for group in {op_group(op) for op in ops}
    }
    rejected = []
    for op in ops:
        fit = fits[op_group(op)]
        if fit.rel_rms > max_rel_rms:
            rejected.append(op)
            continue
        value = max(fit(op), 0.0)
        table.add(op, LatencyEntry(value, fit.rms_ms, 0, value))
    return _fit_summary(fits, points, max_rel_rms, len(rejected)), rejected


def refinement_ops(table: LatencyTable, rejected: Sequence[OpSpec]) -> list[OpSpec]:
    """For each group among ``rejected`` (ops whose group's line missed), the op nearest the
    middle of each gap between the group's measured sizes: measured, they let :func:`fit_entries`
    try the group again with twice the points."""
    measured = {g: sorted({op.in_hw for op, _ in pts}) for g, pts in _measured_points(table).items()}
    by_group: dict[tuple[Any, ...], list[OpSpec]] = defaultdict(list)
    for op in rejected:
        by_group[op_group(op)].append(op)
    chosen: list[OpSpec] = []
    for group, ops in by_group.items():
        sizes = measured.get(group, [])
        for low, high in zip(sizes, sizes[1:]):
            inside = [op for op in ops if low < op.in_hw < high]
            if inside:
                middle = (low + high) / 2
                chosen.append(min(inside, key=lambda op: (abs(op.in_hw - middle), op.in_hw)))
    return chosen


def _measured_points(table: LatencyTable) -> dict[tuple[Any, ...], list[tuple[OpSpec, float]]]:
    points: dict[tuple[Any, ...], list[tuple[OpSpec, float]]] = defaultdict(list)
    for key in measured_keys(table):
        op = OpSpec.parse(key, table.family)
        points[op_group(op)].append((op, table[key].mean_ms))
    return points


def _fit_summary(
    fits: Mapping[tuple[Any, ...], LinearFit],
    points: Mapping[tuple[Any, ...], list[tuple[OpSpec, float]]],
    max_rel_rms: float,
    n_rejected: int,
) -> dict[str, Any]:
    worst = sorted(fits, key=lambda group: fits[group].rel_rms, reverse=True)
    rel = [fit.rel_rms for fit in fits.values()]
    spiked = [g for g in fits if fits[g].spikes and fits[g].rel_rms <= max_rel_rms]
    return {
        "method": FIT_METHOD,
        "groups": len(fits),
        "max_rel_rms_allowed": max_rel_rms if math.isfinite(max_rel_rms) else None,
        "groups_rejected": sum(r > max_rel_rms for r in rel),
        "ops_measured_instead": n_rejected,
        "max_rel_rms": round(fits[worst[0]].rel_rms, 5) if worst else 0.0,
        "median_rel_rms": round(float(np.median(rel)), 5) if rel else 0.0,
        "worst_groups": [
            {"rel_rms": round(fits[g].rel_rms, 5), "example": points[g][0][0].key,
             "points": len(points[g]), "spikes": list(fits[g].spikes)}
            for g in worst[:5]
        ],  # fmt: skip
        "groups_with_spikes": len(spiked),
        "spikes_left_out": sum(len(fits[g].spikes) for g in spiked),
        "spike_examples": [
            {"example": points[g][0][0].key, "spike_sizes": list(fits[g].spikes)}
            for g in spiked[:5]
        ],
    }


# -- the table on disk ----------------------------------------------------------------------------
def fitted_keys(table: LatencyTable) -> set[str]:
    """Keys whose entries were fitted, not measured (from the table's provenance)."""
    return set(table.provenance.get(PROFILING, {}).get("fitted_keys", []))


def measured_keys(table: LatencyTable) -> list[str]:
    """Keys whose entries were measured (every entry not listed as fitted or transferred from
    other devices, see :mod:`ofabench.latency.transfer`)."""
    from .transfer import transferred_keys

    estimated = fitted_keys(table) | transferred_keys(table)
    return [key for key in table if key not in estimated]


def open_table(path: Path, space: SpaceSpec, profile: DeviceProfile) -> LatencyTable:
    """The table at ``path`` to resume (checked: same space, device and backend), or a new one."""
    if not path.exists():
        info = make_provenance(device=profile.name, backend=profile.backend, space=space.name)
        return LatencyTable.for_space(
            space, device=profile.name, backend=profile.backend, provenance=info
        )
    table = LatencyTable.load(path)
    advice = "profile into another --out, or delete the file to start over"
    try:
        table.check_space(space)
    except LatencyTableError as exc:
        raise LatencyTableError(f"cannot resume {path}: {exc}; {advice}") from exc
    if (table.device, table.backend) != (profile.name, profile.backend):
        raise LatencyTableError(
            f"cannot resume {path}: it holds device {table.device!r} measured with backend "
            f"{table.backend!r}, not device {profile.name!r} with backend {profile.backend!r}; "
            f"{advice}"
        )
    log.info("resuming %s: %d entries already there", path, len(table))
    return table


class TableWriter:
    """The table being filled, saved atomically: after every change while saving is cheap, and
    never more often than keeps the time spent saving under ``SAVE_OVERHEAD`` of the run
    (``save_every_s`` sets a fixed minimum interval instead; 0 saves after every change)."""

    def __init__(self, table: LatencyTable, path: Path, save_every_s: float | None = None) -> None:
        self.table = table
        self.path = path
        self.save_every_s = save_every_s
        self._last_save = time.perf_counter()
        self._save_cost = 0.0
        self._dirty = False

    def changed(self) -> None:
        """Note a change; save if the interval has passed."""
        self._dirty = True
        interval = (
            self._save_cost / SAVE_OVERHEAD if self.save_every_s is None else self.save_every_s
        )
        if time.perf_counter() - self._last_save >= interval:
            self.save()

    def save(self) -> None:
        """Write the table now (temp file, fsync, rename): readers never see half a file."""
        start = time.perf_counter()
        with atomic_open(self.path) as handle:
            json.dump(self.table.to_dict(), handle, indent=1)
            handle.write("\n")
        self._last_save = time.perf_counter()
        self._save_cost = self._last_save - start
        self._dirty = False

    def flush(self) -> None:
        if self._dirty:
            self.save()


# -- measuring ---------------------------------------------------------------------------------------
def open_backend(profile: DeviceProfile) -> Backend:
    """The profile's backend, checked once to run here: :meth:`DeviceProfile.open` (else
    :class:`~ofabench.errors.DeviceError` naming the device and the reason)."""
    return profile.open()


def measure_op(backend: Backend, op: OpSpec, settings: MeasureSettings) -> Measurement:
    """Time one op alone; any failure becomes a :class:`BackendError` naming the op's key."""
    module, shape = build_op_module(op)
    try:
        return backend.measure(module, shape, settings)
    except Exception as exc:
        raise BackendError(f"backend {backend.name!r} failed on op {op.key}: {exc}") from exc


def measure_subnet(
    backend: Backend, space: SpaceSpec, arch: ArchConfig, settings: MeasureSettings
) -> Measurement:
    """Time a whole subnet end to end; failures become a :class:`BackendError` naming it."""
    module, shape = build_subnet_module(space, arch)
    try:
        return backend.measure(module, shape, settings)
    except Exception as exc:
        raise BackendError(
            f"backend {backend.name!r} failed on subnet {arch.to_json()}: {exc}"
        ) from exc


def subnet_timer(
    backend: Backend, space: SpaceSpec, archs: Sequence[ArchConfig], settings: MeasureSettings
) -> tuple[Callable[[ArchConfig], Measurement], Any]:
    """A function timing any of ``archs`` end to end, and what was compiled ahead for it. A
    backend that compiles ahead (``prebuild_subnets``: TVM's process pool and library cache)
    compiles them all now, before any is timed, so a subnet measured again (a round the probe
    rejected, a second pass) is loaded, not compiled again; the others, and what failed to
    compile ahead, go through :func:`measure_subnet`. The second value is the compile summary
    (``None`` when nothing was compiled ahead): the caller reads its probe afresh after it."""
    prebuild = getattr(backend, "prebuild_subnets", None)
    built = prebuild(space, list(archs)) if prebuild is not None and len(archs) else None

    def measure(arch: ArchConfig) -> Measurement:
        return time_compiled(
            [built] if built is not None else [], backend, arch.to_json(), "subnet", settings,
            lambda: measure_subnet(backend, space, arch, settings),
        )  # fmt: skip

    return measure, built


def entry_from(measurement: Measurement, probed: Probed[Any] | None = None) -> LatencyEntry:
    """A table entry from a measurement: its median as the value (``mean_ms`` and ``median_ms``),
    normalised to the reference speed with the probe reading of its moment when ``probed``."""
    if probed is None or probed.probe_ms is None:
        return LatencyEntry(
            measurement.median_ms, measurement.std_ms, measurement.n, measurement.median_ms
        )
    value = probed.normalised_ms
    factor = value / measurement.median_ms if measurement.median_ms > 0 else 1.0
    return LatencyEntry(value, measurement.std_ms * factor, measurement.n, value, probed.probe_ms)


@dataclass
class _Run:
    """State of one profiling run: where it writes, how it reports progress, what it counted."""

    writer: TableWriter
    backend: Backend
    settings: MeasureSettings
    progress: ProgressCallback | None
    total: int
    remeasure_unstable: bool = True
    max_fit_rms: float = math.inf
    passes: int = 1
    guard: DriftGuard | None = None
    done: int = 0
    prebuilt: list[Any] = dataclasses.field(default_factory=list)  # what prebuild_ops made

    @property
    def table(self) -> LatencyTable:
        return self.writer.table

    def step(self, key: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, key)

    def record_info(self, measurement: Measurement) -> None:
        meta = self.table.provenance.setdefault(PROFILING, {})
        shared = {k: v for k, v in measurement.info.items() if k not in PER_MEASUREMENT_INFO}
        info = json.loads(json.dumps(shared, default=str))
        previous = meta.get("backend_info")
        if previous is not None and previous != info:
            log.warning(
                "backend info differs from the run that started this table (%s vs %s); entries "
                "measured under both are mixed",
                previous,
                info,
            )
        meta["backend_info"] = info


def _measure_ops(run: _Run, ops: Sequence[OpSpec]) -> int:
    """Measure ``ops`` in probe rounds, ``run.passes`` sweeps over all of them (each op keeps its
    fastest normalised median: a machine that slows down for seconds at a time only ever adds
    time, and later sweeps meet each op at another moment); then, once more, those whose timing
    rounds never agreed. Returns how many were measured again. A backend that compiles ahead
    compiles ``ops`` first (:func:`_compile_ahead`); ops that failed to compile raise
    :class:`BackendError` once the others are measured."""
    failed = _compile_ahead(run, "prebuild_ops", ops)
    todo = [op for op in ops if op.key not in failed]
    unsettled = _measure_rounds(run, todo)
    for _ in range(run.passes - 1):
        run.total += len(todo)
        settled = {op.key for op in todo} - {op.key for op in unsettled}
        still = _measure_rounds(run, todo, again=True)
        unsettled = [op for op in still if op.key not in settled]
    again = (run.passes - 1) * len(todo)
    if unsettled and run.remeasure_unstable:
        log.info("measuring again %d ops whose rounds did not agree", len(unsettled))
        run.total += len(unsettled)
        _measure_rounds(run, unsettled, again=True)
        again += len(unsettled)
    if failed:
        raise BackendError(_compile_failures(run.backend, failed))
    return again


def _compile_ahead(run: _Run, hook: str, *args: Any) -> dict[str, str]:
    """Let a backend that compiles ahead of timing (its ``hook``: ``prebuild_ops(ops)`` or
    ``prebuild_subnets(space, archs)``) compile now, while nothing is timed, then read the probe
    afresh. Returns what failed to compile (name -> reason)."""
    prebuild = getattr(run.backend, hook, None)
    built = prebuild(*args) if prebuild is not None and len(args[-1]) else None
    if built is None:
        return {}
    run.prebuilt.append(built)
    runs = run.table.provenance[PROFILING].setdefault("runs", [{}])
    runs[-1].setdefault("compile", []).append(built.summary())
    run.writer.changed()
    if run.guard is not None:
        run.guard.start()
    return dict(built.failures)


def _compile_failures(backend: Backend, failed: Mapping[str, str]) -> str:
    key, reason = next(iter(failed.items()))
    more = f" (and {len(failed) - 1} more ops, reasons in the table's provenance)"
    return (
        f"backend {backend.name!r} failed to compile op {key}: {reason}"
        f"{more if len(failed) > 1 else ''}; the other ops were measured"
    )


def _timed(run: _Run, name: str, what: str, in_line: Callable[[], Measurement]) -> Measurement:
    """:func:`time_compiled` from what this run compiled ahead."""
    return time_compiled(run.prebuilt, run.backend, name, what, run.settings, in_line)


def time_compiled(
    prebuilt: Sequence[Any],
    backend: Backend,
    name: str,
    what: str,
    settings: MeasureSettings,
    in_line: Callable[[], Measurement],
) -> Measurement:
    """Time ``name`` (an op's key, a subnet's JSON) from a library of ``prebuilt`` (what a
    backend's ``prebuild_*`` compiled ahead) when one holds it, else by ``in_line()`` (convert
    and time)."""
    built = next((b for b in prebuilt if name in b), None)
    if built is None:
        return in_line()
    try:
        return built.measure(name, settings)
    except Exception as exc:
        raise BackendError(f"backend {backend.name!r} failed on {what} {name}: {exc}") from exc


def _measure_rounds(run: _Run, ops: Sequence[OpSpec], again: bool = False) -> list[OpSpec]:
    """Measure ``ops`` into the table round by round; return those whose timing never settled."""
    assert run.guard is not None
    unstable: list[OpSpec] = []

    def record(probed: Probed[OpSpec]) -> None:
        if not _record_op(run, probed, again):
            unstable.append(probed.item)

    def measure(op: OpSpec) -> Measurement:
        return _timed(run, op.key, "op", lambda: measure_op(run.backend, op, run.settings))

    run.guard.measure(ops, measure, record)
    return unstable


def _record_op(run: _Run, probed: Probed[OpSpec], again: bool = False) -> bool:
    """Put one measured op into the table (on a second try only if faster); return its
    stability."""
    op, measurement = probed.item, probed.measurement
    if run.done == 0:
        run.record_info(measurement)
    previous = run.table.get(op) if again else None
    if previous is None or probed.normalised_ms < previous.mean_ms:
        run.table.add(op, entry_from(measurement, probed))
    profiling = run.table.provenance[PROFILING]
    _flag(profiling, "fitted_keys", op.key, False)
    _flag(profiling, "unstable_keys", op.key, not measurement.stable)
    run.writer.changed()
    run.step(f"{op.key} (again)" if again else op.key)
    return measurement.stable


def _flag(profiling: dict[str, Any], name: str, key: str, on: bool) -> None:
    """Add ``key`` to (or remove it from) the sorted key list ``profiling[name]``."""
    keys = set(profiling.get(name, []))
    (keys.add if on else keys.discard)(key)
    profiling[name] = sorted(keys)


# -- calibration -------------------------------------------------------------------------------------
def calibration_archs(
    space: SpaceSpec, resolutions: Sequence[int], n: int, seed: int
) -> list[ArchConfig]:
    """``n`` random subnets at ``resolutions`` (the same list for the same seed: a prefix of a
    longer one, so a resumed calibration reuses what it measured)."""
    sub = space.restrict(resolutions=resolutions)
    rng = as_rng(seed)
    return [sub.sample(rng) for _ in range(n)]


def fit_calibration(
    model: LatencyModel,
    archs: Sequence[ArchConfig],
    measured_ms: Sequence[float] | np.ndarray,
    method: str = "affine",
) -> tuple[LatencyModel, str]:
    """A calibrated copy of ``model`` from end-to-end measurements of ``archs``, and the method
    that made it.

    ``affine``: least squares ``measured = scale * lut_sum + overhead_ms``
    (:meth:`LatencyModel.fit_overhead`). ``ratio``: ``scale = median(measured / lut_sum)``, no
    overhead -- one robust parameter, for few or noisy measurements spanning a narrow range of
    sums, where the affine fit's slope and intercept trade off. An affine fit whose scale falls
    outside ``SCALE_RANGE`` (noise, not a device effect: it can even be negative) is replaced by
    the ratio fit, with a warning, and the method returned says so. ``auto``: the one of the
    plain sum (scale 1, no overhead), ``ratio`` and ``affine`` whose leave-one-out predictions
    of the measured subnets have the smallest mean relative error (:func:`loo_errors`); the
    method returned names the choice and the errors."""
    if method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"unknown calibration method {method!r}; allowed: {list(CALIBRATION_METHODS)}"
        )
    if method == "auto":
        return _fit_auto(model, archs, measured_ms)
    sums = model.lut_sum_batch(ArchBatch.from_archs(list(archs)))
    measured = np.asarray(measured_ms, dtype=np.float64)
    if measured.shape != sums.shape:
        raise LatencyTableError(
            f"calibration got {len(sums)} archs but {measured.size} measurements"
        )
    scale, overhead, used = _fit_sums(sums, measured, method)
    if used != method:
        log.warning(
            "%s calibration fell back to the median ratio: %s (the measurements are too noisy "
            "or too few; plausible scales lie in %s)",
            method,
            used,
            SCALE_RANGE,
        )
    return LatencyModel(model.table, model.space, overhead_ms=overhead, scale=scale), used


def _fit_sums(sums: np.ndarray, measured: np.ndarray, method: str) -> tuple[float, float, str]:
    """``(scale, overhead_ms, method used)`` of ``measured ~ scale * sums + overhead``: least
    squares for ``affine`` when its scale is plausible, else (and for ``ratio``) the median
    ratio with no overhead."""
    used = method
    if method == "affine":
        if len(sums) >= 2 and np.ptp(sums) > 0:
            design = np.stack([sums, np.ones_like(sums)], axis=1)
            (scale, overhead), *_ = np.linalg.lstsq(design, measured, rcond=None)
            low, high = SCALE_RANGE
            if low <= scale <= high:
                return float(scale), float(overhead), used
            used = f"ratio (affine scale {scale:.3g} rejected)"
        else:
            used = "ratio (affine needs two different sums)"
    return float(np.median(measured / sums)), 0.0, used


def loo_errors(sums: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Mean relative error of each calibration method's leave-one-out prediction of every
    measured subnet from the others (``plain``: the sum itself, nothing fitted)."""
    sums = np.asarray(sums, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    errors: dict[str, list[float]] = {"plain": [], "ratio": [], "affine": []}
    for i in range(len(sums)):
        rest = np.arange(len(sums)) != i
        for name in errors:
            if name == "plain":
                scale, overhead = 1.0, 0.0
            else:
                scale, overhead, _ = _fit_sums(sums[rest], measured[rest], name)
            errors[name].append(abs((scale * sums[i] + overhead) / measured[i] - 1.0))
    return {name: float(np.mean(v)) for name, v in errors.items()}


def _fit_auto(
    model: LatencyModel, archs: Sequence[ArchConfig], measured_ms: Sequence[float] | np.ndarray
) -> tuple[LatencyModel, str]:
    measured = np.asarray(measured_ms, dtype=np.float64)
    if len(measured) < 3:  # leaving one out of two leaves nothing to fit on
        fitted, used = fit_calibration(model, archs, measured, "affine")
        return fitted, f"auto: {used} (fewer than 3 subnets: no leave-one-out choice)"
    sums = model.lut_sum_batch(ArchBatch.from_archs(list(archs)))
    errors = loo_errors(sums, measured)
    choice = min(errors, key=lambda name: (errors[name], name != "plain"))
    detail = ", ".join(f"{name} {100 * err:.2f}%" for name, err in errors.items())
    if choice == "plain":
        fitted, used = LatencyModel(model.table, model.space), "plain"
    else:
        fitted, used = fit_calibration(model, archs, measured, choice)
    return fitted, f"auto: {used} (leave-one-out mean error {detail})"


def _calibrate(
    run: _Run, space: SpaceSpec, archs: Sequence[ArchConfig], seed: int, method: str
) -> dict[str, Any]:
    calib = run.table.provenance.setdefault(CALIBRATION, {})
    if calib.get("seed") != seed:
        calib.clear()
    calib["seed"] = seed
    points = calib.setdefault("points", [])
    done = {_arch_id(p["arch"]) for p in points}
    todo = [arch for arch in archs if _arch_id(arch.to_dict()) not in done]
    assert run.guard is not None
    every = max(1, run.guard.settings.every // 4)  # a subnet takes as long as several ops

    def record(probed: Probed[ArchConfig]) -> None:
        points.append(_calibration_point(probed))
        run.writer.changed()
        run.step(f"calibration subnet {len(points)}/{len(archs)}")

    _compile_ahead(run, "prebuild_subnets", space, todo)  # what fails is compiled in-line
    run.guard.measure(todo, lambda a: _measure_calm(run, space, a), record, every)
    return _fit_calibration(run.table, space, calib, archs, method)


def _calibration_point(probed: Probed[ArchConfig]) -> dict[str, Any]:
    point = {"arch": probed.item.to_dict(), "measured_ms": probed.normalised_ms}
    if probed.probe_ms is not None:
        point.update(raw_ms=probed.measurement.median_ms, probe_ms=probed.probe_ms)
    return point


def _measure_calm(run: _Run, space: SpaceSpec, arch: ArchConfig) -> Measurement:
    """A subnet's measurement, taken again (the faster kept) if its rounds did not agree."""

    def measure() -> Measurement:
        return _timed(
            run,
            arch.to_json(),
            "subnet",
            lambda: measure_subnet(run.backend, space, arch, run.settings),
        )

    measurement = measure()
    if measurement.stable or not run.remeasure_unstable:
        return measurement
    again = measure()
    return min(measurement, again, key=lambda m: m.median_ms)


def _arch_id(arch: Mapping[str, Any]) -> str:
    return json.dumps(dict(arch), sort_keys=True)


def _fit_calibration(
    table: LatencyTable,
    space: SpaceSpec,
    calib: dict[str, Any],
    archs: Sequence[ArchConfig],
    method: str,
) -> dict[str, Any]:
    wanted = {_arch_id(a.to_dict()) for a in archs}
    used = [p for p in calib["points"] if _arch_id(p["arch"]) in wanted]
    fitted, used_method = fit_calibration(
        LatencyModel(table, space),
        [ArchConfig.from_dict(p["arch"]) for p in used],
        [p["measured_ms"] for p in used],
        method,
    )
    summary = {"scale": fitted.scale, "overhead_ms": fitted.overhead_ms, "n": len(used)}
    description = CALIBRATION_METHODS[used_method.split()[0].rstrip(":")]
    calib.update(summary, method=used_method, description=description, points=used)
    log.info(
        "calibration (%s) on %d subnets: measured = %.4f * lut_sum %+.4f ms",
        used_method,
        len(used),
        fitted.scale,
        fitted.overhead_ms,
    )
    return {**summary, "method": used_method}


def table_calibration(table: LatencyTable) -> tuple[float, float] | None:
    """``(scale, overhead_ms)`` stored by a calibrated profiling run, else None."""
    calib = table.provenance.get(CALIBRATION) or {}
    if "scale" not in calib or "overhead_ms" not in calib:
        return None
    return float(calib["scale"]), float(calib["overhead_ms"])


def latency_model(table: LatencyTable, space: SpaceSpec, calibrated: bool = True) -> LatencyModel:
    """The :class:`LatencyModel` of ``table``, with its stored calibration when ``calibrated``
    and the table has one (else the plain LUT sum)."""
    calibration = table_calibration(table) if calibrated else None
    if calibration is None:
        return LatencyModel(table, space)
    scale, overhead = calibration
    return LatencyModel(table, space, overhead_ms=overhead, scale=scale)


# -- the whole run -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProfileResult:
    """What a profiling run did and where the table is."""

    path: str
    device: str
    backend: str
    space: str
    resolutions: tuple[int, ...]
    measured_resolutions: tuple[int, ...]
    fitted_resolutions: tuple[int, ...]
    n_entries: int
    n_measured: int
    n_fitted: int
    n_skipped: int
    n_unstable: int
    n_measured_again: int
    n_calibration_measured: int
    wall_s: float
    calibration: dict[str, Any] | None = None
    fit: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("resolutions", "measured_resolutions", "fitted_resolutions"):
            data[key] = list(data[key])
        return data


def profile_device(
    profile: DeviceProfile | str | Path,
    space: SpaceSpec | str = "ofa_mbv3_w1.0",
    resolutions: Iterable[int] | str | None = None,
    out_path: str | Path | None = None,
    settings: MeasureSettings | None = None,
    fit_resolutions: str | Sequence[int] | None = None,
    progress: ProgressCallback | None = None,
    calibrate: int = 0,
    seed: int = 0,
    save_every_s: float | None = None,
    calibration_method: str = "auto",
    remeasure_unstable: bool = True,
    max_fit_rms: float = MAX_FIT_RMS,
    probe: ProbeSettings | None = None,
    passes: int = 1,
) -> ProfileResult:
    """Measure every distinct op of ``space`` at ``resolutions`` (default: all) on the device
    ``profile`` into the latency table at ``out_path`` (default
    ``latency_tables/<device>/<space>.json``), resuming it if it exists.

    ``fit_resolutions`` picks the resolutions to measure, the others' ops being fitted (see
    :func:`measured_resolutions`); ``calibrate=K`` measures K random subnets (drawn with ``seed``)
    end to end and stores the scale and overhead fitted by ``calibration_method`` (see
    :func:`fit_calibration`, :func:`latency_model`). ``progress(done, total, key)`` is told of
    every measurement (``total`` grows when unstable ops are measured again, see
    ``remeasure_unstable``, or badly fitting groups measured, see ``max_fit_rms``).
    ``passes``: sweeps over the ops to measure, each op keeping its fastest (see
    :func:`_measure_ops`). ``save_every_s``: see :class:`TableWriter`. ``probe`` (default
    :class:`ProbeSettings`) times
    the reference probe between rounds of ops and normalises every entry to the table's
    reference speed (see :mod:`ofabench.latency.probe`; ``ProbeSettings(enabled=False)``: off).
    Raises :class:`BackendError`
    (device unavailable, an op failing: its key named, the table so far saved) and
    :class:`LatencyTableError` (``out_path`` holds another space's or device's table)."""
    start = time.perf_counter()
    _check_calibration_args(calibrate, calibration_method)
    if passes < 1:
        raise ConfigError(f"passes must be at least 1, got {passes}")
    profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
    backend = open_backend(profile)
    space = get_space(space)
    resolutions = select_resolutions(space, resolutions)
    measure_at = measured_resolutions(resolutions, fit_resolutions)
    path = Path(out_path) if out_path else default_table_path(profile.name, space.name)
    table = open_table(path, space, profile)
    plan = plan_profile(space, resolutions, measure_at, measured_keys(table))
    archs = calibration_archs(space, resolutions, calibrate, seed) if calibrate else []
    settings = settings or MeasureSettings()
    _record_plan(table, plan, settings)
    total = len(plan.to_measure) + _pending_calibration(table, archs, seed)
    writer = TableWriter(table, path, save_every_s)
    run = _Run(writer, backend, settings, progress, total, remeasure_unstable, max_fit_rms,
               passes)
    probe = ProbeSettings() if probe is None else probe
    reader = open_probe(backend, settings, probe)
    run.guard = _start_guard(run, reader, probe)
    log.info(
        "profiling %s on %s: %d ops to measure, %d to fit, %d already measured",
        space.name,
        profile.name,
        len(plan.to_measure),
        len(plan.to_fit),
        len(plan.skipped),
    )
    if progress is not None:
        progress(0, run.total, "")
    try:
        return _execute(run, space, plan, (archs, seed, calibration_method), start)
    except BackendError as exc:
        run.writer.flush()
        saved = (
            f"the {len(table)} entries so far are saved in {path}: fix the cause and rerun to "
            "resume"
            if len(table) and path.is_file()
            else "no entry was measured yet: fix the cause and rerun"
        )
        raise BackendError(f"{exc}; {saved}") from exc
    finally:
        if reader is not None:
            reader.close()
        run.writer.flush()


def _start_guard(run: _Run, reader: Probe | None, probe: ProbeSettings) -> DriftGuard:
    """The run's drift guard, its first probe reading taken and the table's reference kept (or
    set, for a new table or one made before probes existed)."""

    def on_retry(n: int) -> None:
        run.total += n

    model = reader.model_id if reader is not None else PROBE_ID
    reference = probe_reference(run.table, model)
    guard = DriftGuard(reader, probe, reference, on_retry)
    first = guard.start()
    if first is None:
        return guard
    if reference is None and len(run.table):
        log.warning(
            "this table has entries but no reference of this device's probe (%s; made before "
            "probes existed, or with another probe): its older entries are normalised to "
            "another moment's speed",
            model,
        )
    assert guard.reference_ms is not None
    record_reference(run.table, guard.reference_ms, guard.settings, model)
    log.info("probe: %.4f ms now, table reference %.4f ms", first, guard.reference_ms)
    return guard


def _execute(
    run: _Run,
    space: SpaceSpec,
    plan: ProfilePlan,
    calibration_plan: tuple[Sequence[ArchConfig], int, str],
    start: float,
) -> ProfileResult:
    run_info: dict[str, Any] = {
        "started": _now(), "command": command_line(), "measured": 0, "fitted": 0,
        "passes": run.passes,
    }  # fmt: skip  (a resumed table keeps the command of every run that added to it)
    run.table.provenance[PROFILING].setdefault("runs", []).append(run_info)
    try:
        return _execute_steps(run, space, plan, calibration_plan, start, run_info)
    finally:
        assert run.guard is not None
        if run.guard.probe is not None:
            run_info["drift"] = run.guard.log.summary(run.guard.reference_ms)
            run.writer.changed()  # saved by profile_device's final flush


def _execute_steps(
    run: _Run,
    space: SpaceSpec,
    plan: ProfilePlan,
    calibration_plan: tuple[Sequence[ArchConfig], int, str],
    start: float,
    run_info: dict[str, Any],
) -> ProfileResult:
    _measure_ops(run, plan.to_measure)
    fit, n_rejected = _fill_fitted(run, plan)
    n_ops_done = run.done
    archs, seed, method = calibration_plan
    calibration = _calibrate(run, space, archs, seed, method) if archs else None
    n_measured = len(plan.to_measure) + n_rejected
    run_info.update(
        measured=n_measured,
        fitted=len(plan.to_fit) - n_rejected,
        wall_s=round(time.perf_counter() - start, 2),
    )
    run.writer.save()
    profiling = run.table.provenance[PROFILING]
    return ProfileResult(
        path=str(run.writer.path),
        device=run.table.device,
        backend=run.table.backend,
        space=space.name,
        resolutions=plan.resolutions,
        measured_resolutions=plan.measured_resolutions,
        fitted_resolutions=plan.fitted_resolutions,
        n_entries=len(run.table),
        n_measured=n_measured,
        n_fitted=len(plan.to_fit) - n_rejected,
        n_skipped=len(plan.skipped),
        n_unstable=len(profiling.get("unstable_keys", [])),
        n_measured_again=n_ops_done - n_measured,
        n_calibration_measured=run.done - n_ops_done,
        wall_s=time.perf_counter() - start,
        calibration=calibration,
        fit=fit,
    )


def _fill_fitted(run: _Run, plan: ProfilePlan) -> tuple[dict[str, Any] | None, int]:
    """Fit ``plan.to_fit``; for groups that fit too badly, measure an op in the middle of each
    gap and fit again (:func:`refinement_ops`), then measure the ops of groups that still miss.
    Returns the fit summary and how many ops were measured instead of fitted."""
    if not plan.to_fit:
        return None, 0
    profiling = run.table.provenance[PROFILING]
    to_fit = list(plan.to_fit)

    def fit(ops: list[OpSpec]) -> tuple[dict[str, Any], list[OpSpec], set[str]]:
        """Fit ``ops`` and list what was fitted in the provenance at once: the table is saved
        while refining, and a resumed run must not read fitted entries as measured points."""
        summary, rejected = fit_entries(run.table, ops, run.max_fit_rms)
        fitted = {op.key for op in ops} - {op.key for op in rejected}
        profiling["fitted_keys"] = sorted({*profiling.get("fitted_keys", []), *fitted})
        return summary, rejected, fitted

    summary, rejected, fitted = fit(to_fit)
    refined: list[OpSpec] = refinement_ops(run.table, rejected) if rejected else []
    if refined:
        log.info(
            "%d groups fit worse than %.1f%%: measuring %d ops in the middle of their gaps, "
            "then fitting them again",
            summary["groups_rejected"],
            100 * run.max_fit_rms,
            len(refined),
        )
        run.total += len(refined)
        _measure_ops(run, refined)
        done = {op.key for op in refined}
        to_fit = [op for op in to_fit if op.key not in done]
        summary, rejected, fitted = fit(to_fit)  # the lines of the groups fitted above: unchanged
    summary["refined_ops"] = len(refined)
    profiling["fit"] = summary
    run.writer.changed()
    log.info(
        "fitted %d ops from %d groups (median relative RMS residual %.2f%%, max %.2f%%; "
        "%d measured points left out as spikes)",
        len(fitted),
        summary["groups"],
        100 * summary["median_rel_rms"],
        100 * summary["max_rel_rms"],
        summary["spikes_left_out"],
    )
    if rejected:
        log.info(
            "measuring %d ops of %d groups whose lines fit worse than %.1f%% instead",
            len(rejected),
            summary["groups_rejected"],
            100 * run.max_fit_rms,
        )
        run.total += len(rejected)
        _measure_ops(run, rejected)
    return summary, len(rejected) + len(refined)


def _check_calibration_args(calibrate: int, method: str) -> None:
    if method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"unknown calibration method {method!r}; allowed: {list(CALIBRATION_METHODS)}"
        )
    if calibrate < 0 or calibrate == 1:
        raise ConfigError(f"calibrate needs 0 (off) or at least 2 subnets, got {calibrate}")


def _pending_calibration(table: LatencyTable, archs: Sequence[ArchConfig], seed: int) -> int:
    calib = table.provenance.get(CALIBRATION) or {}
    if calib.get("seed") != seed:
        return len(archs)
    done = {json.dumps(p["arch"], sort_keys=True) for p in calib.get("points", [])}
    return sum(json.dumps(a.to_dict(), sort_keys=True) not in done for a in archs)


def _record_plan(table: LatencyTable, plan: ProfilePlan, settings: MeasureSettings) -> None:
    profiling = table.provenance.setdefault(PROFILING, {})
    previous = profiling.get("measure_settings")
    current = dataclasses.asdict(settings)
    if previous is not None and previous != current:
        log.warning("measure settings differ from the earlier run (%s vs %s)", previous, current)
    profiling["measure_settings"] = current
    profiling["resolutions"] = sorted({*profiling.get("resolutions", []), *plan.resolutions})
    measured = set(profiling.get("measured_resolutions", [])) | set(plan.measured_resolutions)
    profiling["measured_resolutions"] = sorted(measured)
    profiling["fitted_resolutions"] = [r for r in profiling["resolutions"] if r not in measured]
    profiling.setdefault("fitted_keys", [])
    profiling.setdefault("unstable_keys", [])


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

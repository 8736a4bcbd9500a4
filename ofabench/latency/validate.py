"""Check a latency table against end-to-end measurements: random subnets are measured whole on
the device and compared with the table's predictions.

    from ofabench.latency.validate import validate_device
    result = validate_device("cpu-onnxruntime", "ofa_mbv3_w1.0", n=100)
    result.metrics["plain"].within_10      # share of subnets predicted within +-10%

Subnets are sampled (seeded) from the resolutions the table covers and built as static networks
straight from :meth:`SpaceSpec.layers` (weights do not change latency). Each one is measured
``passes`` times, in separate sweeps over all subnets, keeping the fastest median: a transient of
this shared machine only ever adds time, and separate sweeps do not share one.

**Drift** (:mod:`ofabench.latency.probe`). The reference probe is timed before the sweep and
between rounds of subnets; each measurement is normalised to the table's reference speed
(``normalised_ms``), and a round whose probe moved more than the tolerance is measured again.
The first reading is the *speed check*: this machine's probe against the table's reference
(``speed`` in the result: the ratio, and whether the comparison was rescaled or refused). The
metrics compare predictions with the normalised measurements (``plain_raw``: with the raw ones).
A table made before probes existed is normalised to the sweep's first reading (drift within the
run is still removed) and its speed is reported unchecked.

Written to ``out_dir`` (default ``reports/validation/<device>/``), each with its provenance:

- ``<space>_subnets.csv`` -- one row per subnet and pass (arch, measured, predicted); appended
  (and fsynced) as each subnet is measured, so a killed run resumes where it stopped. Its first
  line is ``# {json}``: the run's identity (device, space, seed) and provenance;
- ``<space>_validation.json`` -- the metrics: MAPE, share within +-5% and +-10%, Kendall tau,
  for the plain LUT sum, the table's stored calibration (``profile --calibrate``) if any, and
  with ``calibrate_split`` a calibration fitted on part of the subnets and evaluated on the rest;
- ``<space>_scatter.png`` -- predicted vs measured with y = x and +-10% lines.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..devices.base import Backend, MeasureSettings
from ..devices.profiles import DeviceProfile, load_profile
from ..errors import ConfigError, LatencyTableError
from ..provenance import atomic_open, write_json
from ..provenance import provenance as make_provenance
from ..space import ArchConfig, SpaceSpec, as_rng, get_space
from .model import LatencyModel
from .probe import (
    PROBE_ID,
    DriftGuard,
    Probe,
    Probed,
    ProbeSettings,
    SpeedCheck,
    check_policy,
    judge_speed,
    open_probe,
    speed_summary,
    table_reference,
    unchecked,
)
from .profiler import (
    CALIBRATION_METHODS,
    ProgressCallback,
    default_table_path,
    fit_calibration,
    latency_model,
    open_backend,
    subnet_timer,
)
from .table import LatencyTable

log = logging.getLogger("ofabench")

REPORT_DIR = Path("reports") / "validation"
FORMAT_NAME = "ofabench-latency-validation"
SCHEMA_VERSION = 1
CSV_FIELDS = (
    "index", "pass", "r", "measured_ms", "std_ms", "stable", "predicted_ms", "probe_ms",
    "normalised_ms", "arch",
)  # fmt: skip  (arch last: a row cut short by a kill breaks its JSON and is dropped)


# -- metrics ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FidelityMetrics:
    """How well predictions match measurements: MAPE (%), shares within +-5% / +-10% (0..1),
    Kendall's tau-b of the two rankings, the worst error (%) and the mean measured/predicted."""

    n: int
    mape: float
    within_5: float
    within_10: float
    kendall_tau: float
    max_ape: float
    mean_ratio: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (scipy when installed, else the same statistic in numpy)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 2:
        return math.nan
    try:
        from scipy.stats import kendalltau
    except ImportError:
        return _kendall_tau_b(x, y)
    return float(kendalltau(x, y).statistic)


def _kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    upper = np.triu_indices(x.size, 1)
    dx = np.sign(x[:, None] - x[None, :])[upper]
    dy = np.sign(y[:, None] - y[None, :])[upper]
    denominator = math.sqrt(float(np.count_nonzero(dx)) * float(np.count_nonzero(dy)))
    return float((dx * dy).sum() / denominator) if denominator else math.nan


def fidelity(predicted: Sequence[float], measured: Sequence[float]) -> FidelityMetrics:
    """Compare predictions with measurements (both in ms, same order)."""
    pred, meas = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if pred.shape != meas.shape or pred.size == 0:
        raise ConfigError(
            f"need as many predictions as measurements (> 0), got {pred.size}/{meas.size}"
        )
    ape = np.abs(pred - meas) / meas
    return FidelityMetrics(
        n=int(pred.size),
        mape=float(100 * ape.mean()),
        within_5=float(np.mean(ape <= 0.05)),
        within_10=float(np.mean(ape <= 0.10)),
        kendall_tau=kendall_tau(pred, meas),
        max_ape=float(100 * ape.max()),
        mean_ratio=float(np.mean(meas / pred)),
    )


# -- the run's subnets and the CSV -----------------------------------------------------------------
def validation_archs(
    space: SpaceSpec, resolutions: Sequence[int], n: int, seed: int
) -> list[ArchConfig]:
    """``n`` seeded random subnets at ``resolutions`` (a prefix of a longer list, same seed)."""
    sub = space.restrict(resolutions=resolutions)
    rng = as_rng(seed)
    return [sub.sample(rng) for _ in range(n)]


def _csv_header(identity: Mapping[str, Any]) -> str:
    return "# " + json.dumps(identity, sort_keys=True) + "\n" + ",".join(CSV_FIELDS) + "\n"


def read_rows(path: Path, identity: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The complete rows of an earlier run's CSV (a line cut short by a kill is dropped); refuses
    a CSV of another device, space or seed."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ConfigError(f"{path} is not an ofabench validation CSV; pass another --out")
    stored = json.loads(lines[0][2:])
    mismatch = {k: (stored.get(k), v) for k, v in identity.items() if stored.get(k) != v}
    if mismatch:
        raise ConfigError(
            f"{path} holds another validation run ({', '.join(f'{k}: {a!r} != {b!r}' for k, (a, b) in mismatch.items())}); "
            f"pass another --out or delete it to start over"
        )
    rows = []
    for record in csv.DictReader(io.StringIO("\n".join(lines[1:]) + "\n")):
        row = _parse_row(record)
        if row is not None:
            rows.append(row)
    return rows


def _parse_row(record: Mapping[str, str | None]) -> dict[str, Any] | None:
    try:
        measured = float(record["measured_ms"])  # type: ignore[arg-type]
        probe = record.get("probe_ms") or None  # absent in CSVs written before probes
        return {
            "probe_ms": None if probe is None else float(probe),
            "normalised_ms": float(record.get("normalised_ms") or measured),
            "index": int(record["index"]),
            "pass": int(record["pass"]),
            "r": int(record["r"]),
            "measured_ms": float(record["measured_ms"]),
            "std_ms": float(record["std_ms"]),
            "stable": record["stable"] == "1",
            "predicted_ms": float(record["predicted_ms"]),
            "arch": ArchConfig.from_json(record["arch"]),
        }
    except (TypeError, ValueError, KeyError):
        return None


class RowWriter:
    """Appends rows to the CSV, each flushed and fsynced (a kill loses at most the row being
    written, which the next run drops and measures again)."""

    def __init__(
        self, path: Path, identity: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        with atomic_open(path) as handle:  # rewrite cleanly: header + the complete rows
            handle.write(_csv_header(identity))
            writer = csv.writer(handle, lineterminator="\n")
            for row in rows:
                writer.writerow(_row_values(row))
        self.path = path

    def append(self, row: Mapping[str, Any]) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerow(_row_values(row))
            handle.flush()
            os.fsync(handle.fileno())


def _row_values(row: Mapping[str, Any]) -> list[Any]:
    values = {**row, "stable": int(bool(row["stable"])), "arch": row["arch"].to_json()}
    values["probe_ms"] = "" if row.get("probe_ms") is None else row["probe_ms"]
    values.setdefault("normalised_ms", row["measured_ms"])
    return [values[name] for name in CSV_FIELDS]


# -- the run ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ValidationResult:
    """Metrics of one validation (plain LUT sum, and calibrated where a calibration exists) and
    the files written."""

    device: str
    backend: str
    space: str
    table: str
    n: int
    passes: int
    n_measured_now: int
    wall_s: float
    metrics: Mapping[str, FidelityMetrics]
    calibration: Mapping[str, Any]
    files: Mapping[str, str]
    speed: Mapping[str, Any] = field(default_factory=dict)
    drift: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "backend": self.backend,
            "space": self.space,
            "table": self.table,
            "n": self.n,
            "passes": self.passes,
            "n_measured_now": self.n_measured_now,
            "wall_s": self.wall_s,
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "calibration": dict(self.calibration),
            "files": dict(self.files),
            "speed": dict(self.speed),
            "drift": dict(self.drift),
        }


def default_report_dir(device: str, root: str | Path = REPORT_DIR) -> Path:
    return Path(root) / device


def validate_device(
    profile: DeviceProfile | str | Path,
    space: SpaceSpec | str = "ofa_mbv3_w1.0",
    table: LatencyTable | str | Path | None = None,
    n: int = 100,
    seed: int = 0,
    out_dir: str | Path | None = None,
    settings: MeasureSettings | None = None,
    calibrate_split: float | None = None,
    passes: int = 1,
    progress: ProgressCallback | None = None,
    calibration_method: str = "auto",
    probe: ProbeSettings | None = None,
    speed_check: str = "auto",
    anchor: int = 0,
) -> ValidationResult:
    """Measure ``n`` random subnets end to end on the device and compare them with the table's
    predictions (see the module docstring); resumes an interrupted run in ``out_dir``.
    ``speed_check`` (see :data:`~ofabench.latency.probe.SPEED_POLICIES`) judges this machine's
    probe against the table's reference; ``off`` also turns the probe off. ``anchor`` > 0
    measures that many of the table's calibration subnets here first (:func:`anchor_level`) and
    adds the metrics of the table scaled by their level (``table_anchored``)."""
    start = time.perf_counter()
    _check_args(n, passes, calibrate_split, calibration_method)
    if anchor < 0:
        raise ConfigError(f"anchor must be >= 0 subnets, got {anchor}")
    check_policy(speed_check)
    profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
    backend = open_backend(profile)
    space = get_space(space)
    table, table_path = _load_table(table, profile, space)
    probe = ProbeSettings(enabled=False) if speed_check == "off" else (probe or ProbeSettings())
    settings = settings or MeasureSettings()
    with contextlib.ExitStack() as stack:
        reader = open_probe(backend, settings, probe)
        if reader is not None:
            stack.callback(reader.close)
        guard, speed = _speed_guard(table, table_path, reader, probe, speed_check)
        anchored = (
            anchor_level(backend, space, table, anchor, settings, guard) if anchor else None
        )
        return _validate(
            profile, backend, space, (table, table_path), n, seed, out_dir, settings,
            (calibrate_split, calibration_method), passes, progress, guard, speed, start,
            anchored,
        )  # fmt: skip


def anchor_level(
    backend: Backend,
    space: SpaceSpec,
    table: LatencyTable,
    k: int,
    settings: MeasureSettings,
    guard: DriftGuard,
) -> dict[str, Any]:
    """Measure the first ``k`` of the table's calibration subnets here, as they were measured
    at the end of profiling (normalised by the same guard), and return their level: the median
    of measured here / measured then, with the ratios.

    Why: on this machine the drift probe and the subnets did not move together between the end
    of profiling and a validation minutes later (paired probe readings 5-25% slower, the
    subnets' raw timings -5% to +19%; ``benchmarks/results/latency_calibration_paired.json``),
    so the calibration subnets sat 8-14% above an affine fit to the validation's. Subnets
    measured in the same process as the ones predicted, minutes apart at most, carry no such
    offset."""
    points = (table.provenance.get("calibration") or {}).get("points") or []
    if len(points) < k:
        raise ConfigError(
            f"anchoring on {k} subnets needs the table's calibration subnets, and it records "
            f"{len(points)}; profile with `--calibrate {k}` or more, or lower --anchor"
        )
    chosen = points[:k]
    archs = [ArchConfig.from_dict(p["arch"]) for p in chosen]
    probed: list[Probed[ArchConfig]] = []
    measure, built = subnet_timer(backend, space, archs, settings)
    if built is not None:
        guard.start()  # the probe read afresh after compiling
    guard.measure(archs, measure, probed.append)
    ratios = [p.normalised_ms / float(q["measured_ms"]) for p, q in zip(probed, chosen)]
    level = float(np.median(ratios))
    log.info("anchor: %d calibration subnets measured here at %.4fx their profile time", k, level)
    return {"n": k, "level": level, "ratios": [round(r, 5) for r in ratios]}


def _speed_guard(
    table: LatencyTable,
    table_path: str,
    reader: Probe | None,
    probe: ProbeSettings,
    policy: str,
) -> tuple[DriftGuard, SpeedCheck]:
    """The sweep's drift guard, normalising to the table's reference (else to its own first
    reading), and the speed check of that first reading (raises when the policy refuses)."""
    model = reader.model_id if reader is not None else PROBE_ID
    guard = DriftGuard(reader, probe, table_reference(table, model))
    first = guard.start()
    if first is None:
        return guard, unchecked("speed check off")
    speed = judge_speed(table, first, policy, where=table_path, model=model)
    log.info("%s", speed.message)
    return guard, speed


def _validate(
    profile: DeviceProfile,
    backend: Backend,
    space: SpaceSpec,
    table_and_path: tuple[LatencyTable, str],
    n: int,
    seed: int,
    out_dir: str | Path | None,
    settings: MeasureSettings,
    calibrate: tuple[float | None, str],
    passes: int,
    progress: ProgressCallback | None,
    guard: DriftGuard,
    speed: SpeedCheck,
    start: float,
    anchored: dict[str, Any] | None = None,
) -> ValidationResult:
    table, table_path = table_and_path
    calibrate_split, calibration_method = calibrate
    model = LatencyModel(table, space)
    archs = validation_archs(space, model.resolutions, n, seed)
    out = Path(out_dir) if out_dir else default_report_dir(profile.name)
    files = {kind: out / f"{space.name}_{name}" for kind, name in _FILES.items()}
    identity = {"device": profile.name, "space": space.fingerprint(), "seed": seed}
    rows = _resumable_rows(files["csv"], identity, archs)
    writer = RowWriter(files["csv"], {**identity, "provenance": make_provenance()}, rows)
    sweep = _Sweep(
        backend, space, archs, model.predict_batch(archs), settings, writer, progress, guard
    )
    n_now = sweep.run(rows, passes)
    measured = fastest_by_index(rows, n)
    split = None if calibrate_split is None else (calibrate_split, calibration_method)
    metrics, calibration, series = evaluate(
        model, table, space, archs, measured, split, seed, anchored
    )
    if guard.probe is not None:
        metrics["plain_raw"] = fidelity(
            model.predict_batch(archs), fastest_by_index(rows, n, "measured_ms")
        )
    result = ValidationResult(
        device=profile.name,
        backend=profile.backend,
        space=space.name,
        table=table_path,
        n=n,
        passes=passes,
        n_measured_now=n_now,
        wall_s=time.perf_counter() - start,
        metrics=metrics,
        calibration=calibration,
        files={k: str(v) for k, v in files.items()},
        speed=speed_summary(speed),
        drift=guard.log.summary(guard.reference_ms) if guard.probe is not None else {},
    )
    _write_reports(result, files, measured, series, seed)
    return result


_FILES = {"csv": "subnets.csv", "json": "validation.json", "png": "scatter.png"}


@dataclass
class _Sweep:
    """Measures the subnets not yet in the CSV, pass by pass, appending a row for each."""

    backend: Backend
    space: SpaceSpec
    archs: Sequence[ArchConfig]
    predicted: np.ndarray
    settings: MeasureSettings
    writer: RowWriter
    progress: ProgressCallback | None
    guard: DriftGuard

    def run(self, rows: list[dict[str, Any]], passes: int) -> int:
        """Measure what ``rows`` lacks (appending to it), in probe rounds of subnets; return how
        many were measured."""
        have = {(row["index"], row["pass"]) for row in rows}
        todo = [(i, p) for p in range(passes) for i in range(len(self.archs)) if (i, p) not in have]
        count = {"done": 0, "total": len(todo)}

        def retried(n: int) -> None:
            count["total"] += n

        def record(probed: Probed[tuple[int, int]]) -> None:
            rows.append(self.row(probed))
            self.writer.append(rows[-1])
            count["done"] += 1
            if self.progress is not None:
                i, p = probed.item
                key = f"subnet {i + 1}/{len(self.archs)} (pass {p + 1})"
                self.progress(count["done"], count["total"], key)

        needed = [self.archs[i] for i in sorted({i for i, _ in todo})]
        timer, built = subnet_timer(self.backend, self.space, needed, self.settings)
        if built is not None:
            self.guard.start()  # the probe read afresh after compiling
        if self.progress is not None:
            self.progress(0, len(todo), "")
        self.guard.on_retry = retried
        every = max(1, self.guard.settings.every // 4)  # a subnet takes as long as several ops
        self.guard.measure(todo, lambda item: timer(self.archs[item[0]]), record, every)
        return len(todo)

    def row(self, probed: Probed[tuple[int, int]]) -> dict[str, Any]:
        (i, p), measurement = probed.item, probed.measurement
        return {
            "index": i,
            "pass": p,
            "r": self.archs[i].r,
            "measured_ms": measurement.median_ms,
            "std_ms": measurement.std_ms,
            "stable": measurement.stable,
            "predicted_ms": float(self.predicted[i]),
            "arch": self.archs[i],
            "probe_ms": probed.probe_ms,
            "normalised_ms": probed.normalised_ms,
        }


def _check_args(n: int, passes: int, calibrate_split: float | None, method: str) -> None:
    if method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"unknown calibration method {method!r}; allowed: {list(CALIBRATION_METHODS)}"
        )
    if n < 2:
        raise ConfigError(f"validation needs n >= 2 subnets, got {n}")
    if passes < 1:
        raise ConfigError(f"passes must be >= 1, got {passes}")
    if calibrate_split is not None and not 0 < calibrate_split < 1:
        raise ConfigError(
            f"calibrate split must lie strictly between 0 and 1, got {calibrate_split}"
        )


def _load_table(
    table: LatencyTable | str | Path | None, profile: DeviceProfile, space: SpaceSpec
) -> tuple[LatencyTable, str]:
    if isinstance(table, LatencyTable):
        loaded, path = table, "<in memory>"
    else:
        path = str(table or default_table_path(profile.name, space.name))
        loaded = LatencyTable.load(path)
    loaded.check_space(space)
    if loaded.device != profile.name:
        raise LatencyTableError(
            f"latency table {path} was measured on device {loaded.device!r}, not {profile.name!r}; "
            f"pass --table with this device's table (or profile it first)"
        )
    return loaded, path


def _resumable_rows(
    path: Path, identity: Mapping[str, Any], archs: Sequence[ArchConfig]
) -> list[dict[str, Any]]:
    rows = [r for r in read_rows(path, identity) if r["index"] < len(archs)]
    for row in rows:
        if row["arch"] != archs[row["index"]]:
            raise ConfigError(
                f"{path}: subnet {row['index']} differs from this run's (the table now covers other "
                f"resolutions?); pass another --out or delete it to start over"
            )
    if rows:
        log.info("resuming %s: %d measurements already there", path, len(rows))
    return rows


def fastest_by_index(
    rows: Sequence[Mapping[str, Any]], n: int, column: str = "normalised_ms"
) -> np.ndarray:
    """Per subnet, the fastest median over its passes (transients only add time), normalised to
    the reference speed (``column="measured_ms"``: raw; rows without the column give raw)."""
    measured = np.full(n, np.inf)
    for row in rows:
        value = row.get(column, row["measured_ms"])
        measured[row["index"]] = min(measured[row["index"]], value)
    return measured


Series = tuple[str, np.ndarray, np.ndarray]
"""``(label, subnet indices, predicted ms)`` of one kind of prediction, for the scatter plot."""


def evaluate(
    model: LatencyModel,
    table: LatencyTable,
    space: SpaceSpec,
    archs: Sequence[ArchConfig],
    measured: np.ndarray,
    split: tuple[float, str] | None,
    seed: int,
    anchored: Mapping[str, Any] | None = None,
) -> tuple[dict[str, FidelityMetrics], dict[str, Any], list[Series]]:
    """Metrics of the plain sum on all subnets; of the table's stored calibration, if any; and
    with ``split = (fraction, method)``, of the plain sum and of a calibration fitted (see
    :func:`~ofabench.latency.profiler.fit_calibration`) on that fraction of the subnets, both
    on the held-out rest. Also returns the predictions to plot."""
    everyone = np.arange(len(archs))
    plain = model.predict_batch(archs)
    metrics = {"plain": fidelity(plain, measured)}
    series: list[Series] = [("LUT sum", everyone, plain)]
    calibration: dict[str, Any] = {}
    stored = latency_model(table, space, calibrated=True)
    if stored.scale != 1.0 or stored.overhead_ms != 0.0:
        predicted = stored.predict_batch(archs)
        metrics["table_calibrated"] = fidelity(predicted, measured)
        calibration["table"] = {"scale": stored.scale, "overhead_ms": stored.overhead_ms}
        series.append(("calibrated (table)", everyone, predicted))
    if anchored is not None:
        predicted = anchored["level"] * stored.predict_batch(archs)
        metrics["table_anchored"] = fidelity(predicted, measured)
        calibration["anchor"] = dict(anchored)
        series.append(("table x anchor level", everyone, predicted))
    if split is not None:
        fraction, method = split
        fit_idx, eval_idx = split_indices(len(archs), fraction, seed)
        fit_archs = [archs[i] for i in fit_idx]
        fitted, method = fit_calibration(model, fit_archs, measured[fit_idx], method)
        predicted = fitted.predict_batch([archs[i] for i in eval_idx])
        metrics["split_plain"] = fidelity(plain[eval_idx], measured[eval_idx])
        metrics["split_calibrated"] = fidelity(predicted, measured[eval_idx])
        calibration["split"] = {
            "fraction": fraction,
            "method": method,
            "n_fit": len(fit_idx),
            "n_eval": len(eval_idx),
            "scale": fitted.scale,
            "overhead_ms": fitted.overhead_ms,
            "fit_indices": fit_idx.tolist(),
        }
        series.append(("calibrated (split, held out)", eval_idx, predicted))
    return metrics, calibration, series


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``range(n)``: ``round(fraction * n)`` (at least 2) to fit, the rest to
    evaluate (at least 1)."""
    n_fit = min(max(2, round(fraction * n)), n - 1)
    if n_fit < 2:
        raise ConfigError(f"a calibration split needs at least 3 subnets, got {n}")
    order = np.random.default_rng(seed + 1).permutation(n)
    return np.sort(order[:n_fit]), np.sort(order[n_fit:])


# -- reports ------------------------------------------------------------------------------------------
def _write_reports(
    result: ValidationResult,
    files: Mapping[str, Path],
    measured: np.ndarray,
    series: Sequence[Series],
    seed: int,
) -> None:
    info = make_provenance(
        device=result.device, backend=result.backend, space=result.space, seed=seed
    )
    report = {"format": FORMAT_NAME, "schema_version": SCHEMA_VERSION, **result.to_dict()}
    write_json(files["json"], {**report, "provenance": info})
    title = f"{result.device} / {result.space}: {result.n} subnets"
    plot_validation(files["png"], measured, series, title=title, metadata=info)
    log.info("wrote %s, %s and %s", files["json"], files["csv"], files["png"])


def plot_validation(
    path: str | Path,
    measured: np.ndarray,
    series: Sequence[Series],
    title: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Scatter of predicted vs measured latency (one marker per series) with y = x and +-10%
    lines, as a PNG. Agg without pyplot: no global matplotlib state changes. ``metadata`` goes
    into the PNG's ``Description`` text."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    values = np.concatenate([measured, *(predicted for _, _, predicted in series)])
    line = np.array([0.9 * float(values.min()), 1.1 * float(values.max())])
    ax.plot(line, line, "k-", lw=1, label="y = x")
    ax.plot(line, 1.1 * line, "k--", lw=0.8, label="±10%")
    ax.plot(line, 0.9 * line, "k--", lw=0.8)
    for (label, index, predicted), marker in zip(series, "oxs^"):
        m = fidelity(predicted, measured[index])
        text = f"{label}: MAPE {m.mape:.1f}%, {100 * m.within_10:.0f}% within ±10%"
        ax.scatter(measured[index], predicted, s=14, marker=marker, alpha=0.8, label=text)
    ax.set(xlim=tuple(line), ylim=tuple(line), xlabel="measured (ms)", ylabel="predicted (ms)")
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        fig.savefig(
            handle, format="png", metadata={"Description": json.dumps(dict(metadata or {}))}
        )
    return path

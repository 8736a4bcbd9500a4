"""Drift-robust measurement: a fixed reference model (the *probe*) timed between rounds of ops or
subnets on the same backend, so every measurement carries the machine's speed at its moment.

A shared machine, a throttling phone or a busy board changes speed by several percent over
minutes. The probe (the minimal subnet of OFA's w1.0 space at 128 px, random weights: every kind
of layer a table holds) is converted once and timed through the generic :class:`Backend` API,
so this works the same for local, RPC, SSH and adb devices. A device whose probe is slow next to
the blocks it measures (untuned TVM runs it in 35 ms, its blocks in 3-15 ms) can feed it a
smaller input (``probe_resolution:`` in the device profile; 64 px: 9 ms there): paired timing
spends about as long on the probe as on the item, so the probe's time sets the profile's. The
probe's identity (:func:`probe_id`) records the input size, and a table's reference only
counts for the same probe.

**Rounds.** :class:`DriftGuard` measures items (ops, subnets) ``every`` at a time and reads the
probe after each round. An item's probe reading is interpolated between the readings before and
after its round, and its latency is normalised to the reference speed::

    normalised_ms = median_ms * reference_ms / probe_ms

A round whose probe moved by more than ``tolerance`` (relative) is measured again, at most
``max_retries`` times; the attempt whose probe moved least is kept, and the count of rounds that
never settled is recorded. A table records its reference (``provenance["probe"]``: the probe's
identity, ``reference_ms``, the drift seen per run), so its entries mean "latency on a machine
whose probe runs ``reference_ms``".

**Speed check.** :func:`check_device_speed` times the probe on the machine a table is used on and
compares it with the table's reference (:class:`SpeedCheck`): within ``tolerance`` nothing
changes; otherwise predictions are rescaled by the ratio (policy ``auto`` up to ``max_ratio``,
``rescale`` always) or refused with one line saying what to do (``refuse``, or ``auto`` beyond
``max_ratio``). A table made before probes existed has no reference: the check says so.
:func:`recalibrate_table` gives a table a reference on this machine from a few subnets measured
end to end (``ofabench profile --recalibrate N``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from ..devices.base import Backend, Measurement, MeasureSettings
from ..errors import BackendError, ConfigError, LatencyTableError
from .table import LatencyTable

log = logging.getLogger("ofabench")

T = TypeVar("T")

PROBE = "probe"  # the table provenance key
PROBE_SPACE = "ofa_mbv3_w1.0"
PROBE_RESOLUTION = 128

def probe_id(resolution: int = PROBE_RESOLUTION) -> str:
    """The probe's identity, as tables record it: which model, at which input size."""
    return f"{PROBE_SPACE} min subnet at {resolution} px, seed 0"


PROBE_ID = probe_id()
SPEED_POLICIES = {
    "auto": "rescale predictions by the probe's speed ratio up to max_ratio, refuse beyond",
    "rescale": "rescale predictions by the probe's speed ratio, however large",
    "refuse": "refuse when the probe's speed differs by more than the tolerance",
    "off": "do not time the probe",
}
SPEED_TOLERANCE = 0.05
MAX_RATIO = 1.5
STEADY_READINGS = 9


PROBE_MODES = {
    "paired": "the probe timed alternately with every op or subnet, block by block (default)",
    "rounds": "the probe read between rounds of items, interpolated",
}


@dataclass(frozen=True)
class ProbeSettings:
    """How the probe is used. ``mode="paired"`` (where the backend can: see
    :meth:`Backend.pair_with`) times it alternately with every item; ``"rounds"`` reads it after
    every ``every`` items, and a round whose probe moved more than ``tolerance`` is measured
    again, at most ``max_retries`` times; ``None``: the device profile's ``probe_mode``
    (``paired`` unless it says otherwise). ``enabled=False`` measures as before (no probe, no
    normalisation)."""

    enabled: bool = True
    every: int = 8
    tolerance: float = 0.03
    max_retries: int = 2
    mode: str | None = None

    def __post_init__(self) -> None:
        if self.every < 1 or self.tolerance <= 0 or self.max_retries < 0:
            raise ConfigError(
                f"probe settings need every >= 1, tolerance > 0, max_retries >= 0; got {self}"
            )
        if self.mode is not None and self.mode not in PROBE_MODES:
            raise ConfigError(
                f"unknown probe mode {self.mode!r}; valid: "
                + "; ".join(f"{k} ({v})" for k, v in PROBE_MODES.items())
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the probe ---------------------------------------------------------------------------------------
def probe_module(resolution: int = PROBE_RESOLUTION) -> tuple[Any, tuple[int, ...]]:
    """The reference model (see the module docstring) and its input shape at ``resolution``
    (the network is built at 128 px, the space's smallest; its global pooling takes any size)."""
    from ..space import get_space
    from .ops import build_subnet_module

    space = get_space(PROBE_SPACE)
    arch = dataclasses.replace(space.min_arch(), r=PROBE_RESOLUTION)
    module, shape = build_subnet_module(space, arch, seed=0)
    return module, (*shape[:-2], resolution, resolution)


def backend_probe_id(backend: Backend) -> str:
    """The identity of the probe ``backend`` times (its device's ``probe_resolution``)."""
    return probe_id(backend.probe_resolution)


class Probe:
    """The probe converted once on ``backend``; :meth:`read` times it (median ms)."""

    def __init__(self, backend: Backend, settings: MeasureSettings) -> None:
        self.model_id = backend_probe_id(backend)
        module, shape = probe_module(backend.probe_resolution)
        try:
            self.prepared = backend.prepare(module, shape)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(
                f"backend {backend.name!r} could not convert the probe: {exc}"
            ) from exc
        self.backend = backend
        self.settings = settings
        self.readings: list[float] = []

    def read(self) -> float:
        """Time the probe now; the reading is also appended to :attr:`readings`."""
        reading = self.backend.measure_prepared(self.prepared, self.settings).median_ms
        self.readings.append(reading)
        return reading

    def read_steady(self, readings: int | None = None) -> float:
        """The median of ``readings`` readings in a row (default :data:`STEADY_READINGS`): the
        machine's speed over a few seconds rather than at one moment, for a table's reference
        and the speed check (on a machine whose probe swings 1.6x within seconds, one reading
        refused or rescaled a table for nothing)."""
        return float(np.median([self.read() for _ in range(readings or STEADY_READINGS)]))

    def pair(self) -> bool:
        """Have the backend time the probe alternately with every model it measures (see
        :meth:`Backend.pair_with`); False when it cannot."""
        if not self.backend.can_pair:
            return False
        self.backend.pair_with(self.prepared)
        return True

    def close(self) -> None:
        if self.backend.paired_reference is self.prepared:
            self.backend.pair_with(None)
        self.backend.close(self.prepared)

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_probe(
    backend: Backend, settings: MeasureSettings, probe: ProbeSettings | None
) -> Probe | None:
    """A :class:`Probe` on ``backend``, or ``None`` when ``probe`` is disabled."""
    if probe is None or not probe.enabled:
        return None
    return Probe(backend, settings)


# -- rounds ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Probed(Generic[T]):
    """One item's measurement with the probe reading of its moment and its latency at the
    reference speed (``normalised_ms``; the raw median when no probe ran)."""

    item: T
    measurement: Measurement
    probe_ms: float | None
    normalised_ms: float


@dataclass
class DriftLog:
    """What the probe saw during one run."""

    readings: list[float] = field(default_factory=list)
    mode: str = "rounds"
    rounds: int = 0
    measured_again: int = 0
    unsettled: int = 0
    max_move: float = 0.0

    def summary(self, reference_ms: float | None) -> dict[str, Any]:
        """For provenance: probe readings' range and spread, rounds, rounds measured again."""
        if not self.readings:
            return {"readings": 0}
        values = np.asarray(self.readings)
        median = float(np.median(values))
        return {
            "mode": self.mode,
            "readings": len(values),
            "min_ms": round(float(values.min()), 5),
            "median_ms": round(median, 5),
            "max_ms": round(float(values.max()), 5),
            "spread": round(float(np.ptp(values)) / median, 5),
            "median_vs_reference": round(median / reference_ms, 5) if reference_ms else None,
            "rounds": self.rounds,
            "rounds_measured_again": self.measured_again,
            "rounds_unsettled": self.unsettled,
            "max_round_move": round(self.max_move, 5),
        }


class _RoundInterrupted(Exception):
    """A measurement failed mid-round: ``done`` holds the round's items measured before it."""

    def __init__(self, done: list[Probed[Any]], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.done = done
        self.cause = cause


class DriftGuard:
    """Measures items in probe rounds (see the module docstring). Without a probe, items are
    measured once each and not normalised. ``on_retry(n)`` is told when a round of ``n`` items
    is measured again (a progress bar's total grows)."""

    def __init__(
        self,
        probe: Probe | None,
        settings: ProbeSettings,
        reference_ms: float | None = None,
        on_retry: Callable[[int], None] | None = None,
    ) -> None:
        if settings.mode is None:  # the device's own mode (its profile's probe_mode)
            mode = probe.backend.probe_mode if probe is not None else "paired"
            settings = dataclasses.replace(settings, mode=mode)
        self.probe = probe
        self.settings = settings
        self.reference_ms = reference_ms
        self.on_retry = on_retry
        self.log = DriftLog()
        self.last: float | None = None
        self.paired = False

    def start(self) -> float | None:
        """Read the probe (the first reading); it sets the reference if there is none yet. In
        ``paired`` mode the backend then times the probe alongside every item."""
        if self.probe is None:
            return None
        if self.paired:
            self.probe.backend.pair_with(None)
        if self.settings.mode == "paired":  # the reference and speed check: a steady reading
            self.last = self.probe.read_steady()
            self.log.readings.append(self.last)
        else:
            self.last = self._read()
        if self.reference_ms is None:
            self.reference_ms = self.last
        if self.settings.mode == "paired":
            self.paired = self.probe.pair()
            if not self.paired:
                log.info(
                    "backend %r cannot time the probe alternately; reading it between rounds",
                    self.probe.backend.name,
                )
        self.log.mode = "paired" if self.paired else "rounds"
        return self.last

    def measure(
        self,
        items: Sequence[T],
        measure_one: Callable[[T], Measurement],
        record: Callable[[Probed[T]], None],
        every: int | None = None,
    ) -> None:
        """Measure ``items`` round by round, passing each (normalised) to ``record`` once its
        round is accepted. If a measurement fails, the items its round measured before it are
        recorded (with the probe reading before the round) and the error is raised: nothing
        measured is lost."""
        size = every or self.settings.every
        for begin in range(0, len(items), size):
            try:
                accepted = self._round(items[begin : begin + size], measure_one)
            except _RoundInterrupted as stop:
                for probed in stop.done:
                    record(probed)
                raise stop.cause from None
            for probed in accepted:
                record(probed)

    def _round(
        self, chunk: Sequence[T], measure_one: Callable[[T], Measurement]
    ) -> list[Probed[T]]:
        if self.probe is None:
            return [Probed(item, m, None, m.median_ms) for item, m in self._measure(chunk, measure_one)]
        if self.last is None:
            self.start()
        if self.paired:
            return self._paired(self._measure(chunk, measure_one))
        best: tuple[float, float, float, list[tuple[T, Measurement]]] | None = None
        for attempt in range(self.settings.max_retries + 1):
            before, results = self.last, self._measure(chunk, measure_one)
            after = self._read()
            assert before is not None
            move = abs(after - before) / min(after, before)
            if best is None or move < best[0]:
                best = (move, before, after, results)
            if move <= self.settings.tolerance:
                break
            if attempt < self.settings.max_retries:
                self._note_retry(len(chunk), move)
        assert best is not None
        self._note_round(best[0])
        return self._normalised(*best[1:])

    def _measure(
        self, chunk: Sequence[T], measure_one: Callable[[T], Measurement]
    ) -> list[tuple[T, Measurement]]:
        results: list[tuple[T, Measurement]] = []
        try:
            for item in chunk:
                results.append((item, measure_one(item)))
        except BaseException as exc:
            raise _RoundInterrupted(self._partial(results), exc) from exc
        return results

    def _paired(self, results: list[tuple[T, Measurement]]) -> list[Probed[T]]:
        """Items timed alternately with the probe: each is its ratio to the probe at the
        reference speed."""
        assert self.reference_ms is not None
        out = []
        for item, m in results:
            if m.probe_ratio is None or m.probe_ms is None:  # a compiled-ahead path did not pair
                raise BackendError(f"{item!r} was measured without the paired probe")
            self.log.readings.append(m.probe_ms)
            self.log.rounds += 1
            out.append(Probed(item, m, m.probe_ms, m.probe_ratio * self.reference_ms))
        return out

    def _partial(self, results: list[tuple[T, Measurement]]) -> list[Probed[T]]:
        if self.probe is None:
            return [Probed(item, m, None, m.median_ms) for item, m in results]
        if self.paired:
            return self._paired(results)
        assert self.last is not None
        return self._normalised(self.last, self.last, results)

    def _read(self) -> float:
        assert self.probe is not None
        self.last = self.probe.read()
        self.log.readings.append(self.last)
        return self.last

    def _note_retry(self, n: int, move: float) -> None:
        self.log.measured_again += 1
        log.info("probe moved %.1f%% during a round of %d; measuring it again", 100 * move, n)
        if self.on_retry is not None:
            self.on_retry(n)

    def _note_round(self, move: float) -> None:
        self.log.rounds += 1
        self.log.max_move = max(self.log.max_move, move)
        if move > self.settings.tolerance:
            self.log.unsettled += 1

    def _normalised(
        self, before: float, after: float, results: list[tuple[T, Measurement]]
    ) -> list[Probed[T]]:
        assert self.reference_ms is not None
        out = []
        for i, (item, m) in enumerate(results):
            probe_ms = before + (after - before) * (i + 0.5) / len(results)
            out.append(Probed(item, m, probe_ms, m.median_ms * self.reference_ms / probe_ms))
        return out


# -- the table's reference -----------------------------------------------------------------------------
def table_reference(table: LatencyTable, model: str = PROBE_ID) -> float | None:
    """The probe reading the table's entries are normalised to, if it has one of probe
    ``model`` (:func:`probe_id`)."""
    meta = table.provenance.get(PROBE) or {}
    if meta.get("model") != model or not meta.get("reference_ms"):
        return None
    return float(meta["reference_ms"])


def record_reference(
    table: LatencyTable,
    reference_ms: float,
    settings: ProbeSettings | None = None,
    model: str = PROBE_ID,
) -> dict[str, Any]:
    """Store (or keep) the table's reference for probe ``model``; returns its
    ``provenance["probe"]``."""
    meta = table.provenance.setdefault(PROBE, {})
    if meta.get("model") != model:
        meta.clear()
    meta.setdefault("model", model)
    meta.setdefault("reference_ms", reference_ms)
    meta["normalisation"] = "entry = median * reference_ms / probe reading of its moment"
    if settings is not None and settings.mode == "paired":
        meta["normalisation"] = (
            "entry = reference_ms * median over blocks of (op runs' median / mean of the probe "
            "runs either side), op and probe timed alternately; reference_ms = median of "
            f"{STEADY_READINGS} probe readings"
        )
    if settings is not None:
        meta["settings"] = settings.to_dict()
    return meta


# -- the speed check ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpeedCheck:
    """The probe here vs the table's reference: ``ratio = probe_ms / table_probe_ms``, the
    ``scale`` predictions get (1 unless rescaled), what was done and the one line that says so."""

    table_probe_ms: float | None
    probe_ms: float | None
    ratio: float | None
    scale: float
    action: str  # "same speed", "rescaled", "unchecked"
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unchecked(reason: str) -> SpeedCheck:
    return SpeedCheck(None, None, None, 1.0, "unchecked", f"machine speed not checked: {reason}")


def judge_speed(
    table: LatencyTable,
    probe_ms: float,
    policy: str = "auto",
    tolerance: float = SPEED_TOLERANCE,
    max_ratio: float = MAX_RATIO,
    where: str = "",
    model: str = PROBE_ID,
) -> SpeedCheck:
    """Compare a reading of probe ``model`` taken here with ``table``'s reference (see
    :class:`SpeedCheck`); raises :class:`LatencyTableError` (one line: what to do) when
    ``policy`` refuses."""
    check_policy(policy)
    reference = table_reference(table, model)
    if reference is None:
        return unchecked(_no_reference(table, where, model))
    ratio = probe_ms / reference
    if abs(ratio - 1.0) <= tolerance:
        message = f"machine speed as when the table was made (probe ratio {ratio:.3f})"
        return SpeedCheck(reference, probe_ms, ratio, 1.0, "same speed", message)
    beyond = policy == "refuse" or (policy == "auto" and not 1 / max_ratio <= ratio <= max_ratio)
    if beyond:
        raise LatencyTableError(_refusal(table, reference, probe_ms, ratio, where))
    message = (
        f"this machine runs the probe {ratio:.3f}x as long as when the table{_named(where)} was made "
        f"({probe_ms:.3f} vs {reference:.3f} ms): predictions rescaled by {ratio:.3f}"
    )
    log.warning(message)
    return SpeedCheck(reference, probe_ms, ratio, ratio, "rescaled", message)


def check_policy(policy: str) -> None:
    if policy not in SPEED_POLICIES:
        raise ConfigError(f"unknown speed check {policy!r}; allowed: {list(SPEED_POLICIES)}")


def _named(where: str) -> str:
    return f" {where}" if where else ""


def _no_reference(table: LatencyTable, where: str, model: str = PROBE_ID) -> str:
    recorded = (table.provenance.get(PROBE) or {}).get("model")
    why = (
        f"its probe is another ({recorded!r}; this device times {model!r})"
        if recorded and recorded != model
        else "made before ofabench recorded one"
    )
    return (
        f"the table{_named(where)} for {table.device!r} records no probe speed of this device's "
        f"probe ({why}); re-profile it, or give it one with `ofabench profile --device "
        f"{table.device} --recalibrate 5`"
    )


def _refusal(
    table: LatencyTable, reference: float, probe_ms: float, ratio: float, where: str
) -> str:
    return (
        f"the probe runs {ratio:.2f}x as long here as when the table{_named(where)} for device "
        f"{table.device!r} was made ({probe_ms:.3f} vs {reference:.3f} ms): its predictions would "
        f"be off by that much; re-profile the device here (`ofabench profile --device "
        f"{table.device}`), or recalibrate with a few subnets (`ofabench profile --device "
        f"{table.device} --recalibrate 5`), or accept a rescale (speed check 'rescale')"
    )


def read_probe(
    backend: Backend, settings: MeasureSettings | None = None, readings: int | None = None
) -> float:
    """The probe's steady reading here (:meth:`Probe.read_steady`)."""
    with Probe(backend, settings or MeasureSettings()) as probe:
        return probe.read_steady(readings)


def check_device_speed(
    device: Any,
    table: LatencyTable,
    policy: str = "auto",
    tolerance: float = SPEED_TOLERANCE,
    max_ratio: float = MAX_RATIO,
    where: str = "",
) -> SpeedCheck:
    """Time the probe on ``device`` (a :class:`DeviceProfile`, or a name or path of one) and
    judge ``table`` by it (:func:`judge_speed`). A device that cannot run here, a table without
    a reference or policy ``off``: an ``unchecked`` result saying why, nothing raised."""
    check_policy(policy)
    if policy == "off":
        return unchecked("speed check off")
    if not (table.provenance.get(PROBE) or {}).get("reference_ms"):
        return unchecked(_no_reference(table, where))
    from ..devices.profiles import DeviceProfile, load_profile
    from .profiler import open_backend

    try:
        profile = device if isinstance(device, DeviceProfile) else load_profile(device)
        backend = open_backend(profile)
    except (BackendError, ConfigError) as exc:
        return unchecked(f"device {device!r} cannot be measured here ({exc})")
    model = backend_probe_id(backend)
    if table_reference(table, model) is None:
        return unchecked(_no_reference(table, where, model))
    reading = read_probe(backend)
    return judge_speed(table, reading, policy, tolerance, max_ratio, where, model)


def rescaled_model(model: Any, check: SpeedCheck) -> Any:
    """``model`` (a :class:`LatencyModel`) with its predictions multiplied by ``check.scale``."""
    if check.scale == 1.0:
        return model
    from .model import LatencyModel

    return LatencyModel(
        model.table,
        model.space,
        overhead_ms=model.overhead_ms * check.scale,
        scale=model.scale * check.scale,
    )


# -- recalibration ------------------------------------------------------------------------------------
def recalibrate_table(
    backend: Backend,
    table: LatencyTable,
    space: Any,
    n: int = 5,
    seed: int = 12345,
    settings: MeasureSettings | None = None,
) -> dict[str, Any]:
    """Give ``table`` a probe reference on this machine from ``n`` random subnets measured end to
    end here: ``reference_ms = probe_ms / median(measured / predicted)`` (its predictions hold
    when the probe runs that long). Works for tables made before probes existed. Returns the
    record stored in ``provenance["probe"]["recalibration"]``; the caller saves the table."""
    from .model import LatencyModel
    from .profiler import calibration_archs, subnet_timer

    if n < 1:
        raise ConfigError(f"recalibration needs at least 1 subnet, got {n}")
    settings = settings or MeasureSettings()
    model = LatencyModel(table, space)
    archs = calibration_archs(space, model.resolutions, n, seed)
    probed: list[Probed[Any]] = []
    with Probe(backend, settings) as probe:
        measure, _ = subnet_timer(backend, space, archs, settings)  # compiled ahead if it can
        guard = DriftGuard(probe, ProbeSettings(every=1), reference_ms=None)
        guard.start()
        guard.measure(archs, measure, probed.append)
    ratios = [p.measurement.median_ms / model.predict(p.item) for p in probed]
    ratio = float(np.median(ratios))
    assert guard.reference_ms is not None
    record = {
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "subnets": n,
        "seed": seed,
        "probe_ms": guard.reference_ms,
        "measured_over_predicted": round(ratio, 5),
        "ratios": [round(r, 5) for r in ratios],
        "previous_reference_ms": table_reference(table, probe.model_id),
    }
    meta = table.provenance.setdefault(PROBE, {})
    if meta.get("model") != probe.model_id:
        meta.clear()
    meta.update(model=probe.model_id, reference_ms=guard.reference_ms / ratio, recalibration=record)
    log.info("recalibrated: predictions hold when the probe runs %.4f ms", meta["reference_ms"])
    return record


def speed_summary(check: SpeedCheck) -> Mapping[str, Any]:
    """For reports: the check as a dict, the ratio rounded."""
    data = check.to_dict()
    if data["ratio"] is not None and math.isfinite(data["ratio"]):
        data["ratio"] = round(data["ratio"], 5)
    return data


def recalibrate_device(
    device: Any,
    space: Any,
    table_path: str | None = None,
    n: int = 5,
    settings: MeasureSettings | None = None,
) -> dict[str, Any]:
    """:func:`recalibrate_table` on the device's table (default
    ``latency_tables/<device>/<space>.json``), saved in place; returns the record with the path."""
    from ..devices.profiles import DeviceProfile, load_profile
    from ..space import get_space
    from .profiler import default_table_path, open_backend

    profile = device if isinstance(device, DeviceProfile) else load_profile(device)
    space = get_space(space)
    path = table_path or str(default_table_path(profile.name, space.name))
    table = LatencyTable.load(path)
    table.check_space(space)
    record = recalibrate_table(open_backend(profile), table, space, n, settings=settings)
    table.save(path)
    return {"path": path, "reference_ms": table.provenance[PROBE]["reference_ms"], **record}

"""The backend interface: a backend converts a model and times one run; :class:`Backend` owns
warm-up, repeats, outlier removal, the stability check and the statistics.

A backend implements :meth:`Backend.prepare` (conversion: a PyTorch module to whatever it runs)
and :meth:`Backend.run_once` (one timed inference, seconds) or :meth:`Backend.run_many`. A
backend whose runner reports a round's statistics rather than samples (a phone's
``benchmark_model``) or warms up on every call (a remote runner started per round) overrides
:meth:`Backend.measure_round`, the one per-round hook; the base class still runs the rounds.
"""

from __future__ import annotations

import functools
import logging
import time
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from ..errors import BackendError, ConfigError

log = logging.getLogger("ofabench")

PAIRED_BLOCK_RUNS = "paired_block_runs"  # runs of the item per block of a paired measurement
PER_MEASUREMENT_INFO = frozenset({PAIRED_BLOCK_RUNS})  # info keys that differ item to item


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here, and why not when it cannot."""

    ok: bool
    reason: str = ""
    missing_library: bool = False  # True: installing the backend's pip extra would fix it

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class MeasureSettings:
    """How to time a model: ``warmup`` untimed runs, then rounds of ``repeats`` timed runs until
    two rounds agree within ``tolerance`` (relative, on their medians) or ``max_rounds`` is hit."""

    warmup: int = 10
    repeats: int = 30
    max_rounds: int = 4
    tolerance: float = 0.03
    outlier_iqr: float = 3.0

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.repeats < 1 or self.max_rounds < 1 or self.tolerance <= 0:
            raise ConfigError(
                "measure settings need warmup >= 0, repeats >= 1, max_rounds >= 1, tolerance > 0; "
                f"got {self}"
            )


@dataclass(frozen=True)
class Measurement:
    """Latency statistics of one model on one backend, in milliseconds, with provenance."""

    median_ms: float
    mean_ms: float
    std_ms: float
    iqr_ms: float
    n: int
    rounds: int = 1
    stable: bool = True
    backend: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)
    #: paired timing (:meth:`Backend.pair_with`): median of the per-block ratios of this model's
    #: time to the reference's, and the reference's median time in the same blocks
    probe_ratio: float | None = None
    probe_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["info"] = dict(self.info)
        return data

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], **kwargs: Any) -> Measurement:
        values = np.asarray(samples_ms, dtype=np.float64)
        if values.size == 0:
            raise BackendError("no timing samples to summarise")
        q1, q3 = np.percentile(values, [25, 75])
        return cls(
            median_ms=float(np.median(values)),
            mean_ms=float(values.mean()),
            std_ms=float(values.std()),
            iqr_ms=float(q3 - q1),
            n=int(values.size),
            **kwargs,
        )


def drop_outliers(samples: np.ndarray, k: float) -> np.ndarray:
    """Samples within ``k`` interquartile ranges above the third quartile (slow transients go;
    nothing can be faster than the hardware, so the low side is kept)."""
    if samples.size < 4:
        return samples
    q1, q3 = np.percentile(samples, [25, 75])
    kept = samples[samples <= q3 + k * max(q3 - q1, 1e-12)]
    return kept if kept.size else samples


class class_or_instance_method:
    """A method bound to the instance when called on one, else to the class.

    Availability can depend on settings (``device: cuda`` needs a GPU; an adb ``serial`` needs
    that phone) while the registry asks the class: ``Backend.is_available()`` answers for the
    library, ``Backend(**settings).is_available()`` for the configured device.
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        functools.update_wrapper(self, func)

    def __get__(self, obj: Any, owner: type | None = None) -> Callable[..., Any]:
        return types.MethodType(self.func, owner if obj is None else obj)


class Backend(ABC):
    """A way to run a model on some hardware and time it.

    Subclasses set ``name`` (the registry key), ``extra`` (the pip extra that installs what they
    need, for error messages) and ``settings_keys`` (the device-profile settings they accept).
    """

    name: ClassVar[str] = ""
    extra: ClassVar[str | None] = None
    settings_keys: ClassVar[frozenset[str]] = frozenset()
    #: the device profile this instance measures (set by ``DeviceProfile.open``), for messages
    device_name: str = ""
    #: input size of the drift probe on this device (the profile's ``probe_resolution``)
    probe_resolution: int = 128
    #: how the drift probe is timed on this device by default (the profile's ``probe_mode``)
    probe_mode: str = "paired"
    _checked: bool = False  # availability confirmed once: measure() does not ask again
    _pair: Any = None  # the reference model timed alternately with every measurement, if any
    #: items longer than this many reference runs are not split further (blocks of 1 run)
    MAX_BLOCK_RUNS: ClassVar[int] = 256
    #: every :meth:`run_many` call runs the model once untimed before its timed runs (TVM's
    #: ``time_evaluator`` does): paired blocks then need no untimed run of their own
    RUN_MANY_WARMS_UP: ClassVar[bool] = False

    def __init__(self, **settings: Any) -> None:
        unknown = sorted(set(settings) - self.settings_keys)
        if unknown:
            raise ConfigError(
                f"backend {self.name!r} does not take setting(s) {unknown}; "
                f"allowed: {sorted(self.settings_keys) or 'none'}"
            )
        self.settings = dict(settings)

    # -- what a backend implements -----------------------------------------------------------------
    @classmethod
    @abstractmethod
    def availability(cls) -> Availability:
        """Whether this backend can run on this machine (libraries, hardware), with the reason.

        A backend whose availability depends on its settings (a phone's serial, a board's host)
        defines it with :class:`class_or_instance_method`: the class answers for the library, an
        instance for the configured device."""

    @abstractmethod
    def prepare(self, model: Any, input_shape: tuple[int, ...]) -> Any:
        """Convert ``model`` (a PyTorch module in eval mode) to what this backend runs."""

    def prepare_many(self, model: Any, input_shape: tuple[int, ...], n: int) -> list[Any]:
        """``n`` independent instances of ``model`` (sessions, interpreters, virtual machines),
        each to be closed. The default prepares it ``n`` times; a backend that compiles may
        compile once and load the result ``n`` times."""
        out: list[Any] = []
        try:
            for _ in range(n):
                out.append(self.prepare(model, input_shape))
        except BaseException:
            for prepared in out:
                self.close(prepared)
            raise
        return out

    def run_once(self, prepared: Any) -> float:
        """Run the prepared model once; return the elapsed seconds."""
        raise NotImplementedError(f"backend {self.name!r} implements neither run_once nor run_many")

    def run_many(self, prepared: Any, n: int) -> list[float]:
        """``n`` timed runs in seconds. The default calls :meth:`run_once` ``n`` times."""
        return [self.run_once(prepared) for _ in range(n)]

    def measure_round(self, prepared: Any, settings: MeasureSettings, warmup: int) -> Measurement:
        """One round: ``warmup`` untimed runs (``settings.warmup`` before the first round, 0
        after), then ``settings.repeats`` timed runs summarised. Rounds are compared, and the
        calmest kept, by ``median_ms``; the base class fills in ``rounds``, ``stable``,
        ``backend`` and merges :meth:`info` into the round's ``info``.

        The default times :meth:`run_many` samples and drops slow outliers. Override it when
        the runner reports statistics (``benchmark_model``) or must warm up on every call."""
        if warmup:
            self.run_many(prepared, warmup)
        samples = np.asarray(self.run_many(prepared, settings.repeats), dtype=np.float64) * 1e3
        return Measurement.from_samples(drop_outliers(samples, settings.outlier_iqr).tolist())

    def info(self) -> dict[str, Any]:
        """Provenance of measurements: library versions, threads, device or CPU name."""
        return {"backend": self.name, **self.settings}

    def close(self, prepared: Any) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`prepare` made (temporary files, sessions)."""

    @property
    def can_pair(self) -> bool:
        """Whether this backend can time a reference model alternately with the model measured
        (:meth:`pair_with`): it times samples locally (:meth:`run_many`), one call per block.
        A backend whose runner reports statistics or starts per round (it overrides
        :meth:`measure_round`) cannot; a remote one may say no for its round-trip cost."""
        return type(self).measure_round is Backend.measure_round

    # -- what the base class owns ----------------------------------------------------------------
    @property
    def paired_reference(self) -> Any | None:
        """The reference :meth:`pair_with` set, if any."""
        return self._pair

    def pair_with(self, reference: Any | None) -> None:
        """Time ``reference`` (a model :meth:`prepare` converted: the drift probe) alternately
        with every model this backend measures from now on (``None``: stop).

        Each round is ``repeats`` *blocks*: a run of the reference, then one untimed run of the
        model (the reference left the caches cold; timed, it inflated large ops by ~5%), then
        as many timed runs as last about one reference run; a block's ratio is the model's median over the
        mean of the reference runs on either side. A machine that switches speed every few
        tens of milliseconds slows both alike, so the median ratio (``Measurement.probe_ratio``)
        holds where the raw times do not. Rounds repeat until two rounds' median ratios agree
        within ``tolerance``; the ratio reported pools every round's blocks."""
        if reference is not None and not self.can_pair:
            raise BackendError(f"backend {self.name!r} cannot time a reference alternately")
        self._pair = reference

    @class_or_instance_method
    def is_available(target: Any) -> Availability:  # noqa: N805 - class or instance
        """:meth:`availability`, with any exception read as "unavailable" and its cause."""
        try:
            return target.availability()
        except Exception as exc:  # a broken install should read as unavailable, with the cause
            return Availability(False, f"{type(exc).__name__}: {exc}", isinstance(exc, ImportError))

    def available_once(self) -> Availability:
        """:meth:`is_available`, a positive answer remembered: a run asks a remote device once,
        not before every measurement."""
        if self._checked:
            return Availability(True)
        status = self.is_available()
        self._checked = status.ok
        return status

    def unavailable_message(self, status: Availability) -> str:
        """What to say when this backend cannot run: the reason, and the pip extra if it helps."""
        hint = ""
        if self.extra and status.missing_library:
            hint = f"; install it with: pip install 'ofabench[{self.extra}]'"
        return f"backend {self.name!r} is not available here: {status.reason}{hint}"

    def check_available(self) -> None:
        """:class:`BackendError` with the reason when this backend cannot run (asked once)."""
        status = self.available_once()
        if not status:
            raise BackendError(self.unavailable_message(status))

    def measure(
        self, model: Any, input_shape: tuple[int, ...], settings: MeasureSettings | None = None
    ) -> Measurement:
        """Median latency of ``model`` at ``input_shape``, re-measured until stable."""
        settings = settings or MeasureSettings()
        self.check_available()
        try:
            prepared = self.prepare(model, tuple(input_shape))
        except BackendError:
            raise
        except Exception as exc:  # conversion failures of any kind become one clear error
            raise BackendError(f"backend {self.name!r} could not convert the model: {exc}") from exc
        try:
            return self._timed_rounds(prepared, settings)
        finally:
            self.close(prepared)

    def measure_prepared(
        self, prepared: Any, settings: MeasureSettings | None = None
    ) -> Measurement:
        """Time a model :meth:`prepare` already converted, with the same rounds as
        :meth:`measure` (a reference probe timed many times in one run is converted once); the
        caller releases it with :meth:`close`."""
        return self._timed_rounds(prepared, settings or MeasureSettings())

    def _timed_rounds(self, prepared: Any, settings: MeasureSettings) -> Measurement:
        """Rounds of :meth:`measure_round` until two agree within ``tolerance`` (at most
        ``max_rounds``); the calmest is kept, since transients only ever add time. With a
        reference paired (:meth:`pair_with`), rounds of paired blocks instead."""
        if self._pair is not None and prepared is not self._pair:
            return self._paired_rounds(prepared, self._pair, settings)
        rounds: list[Measurement] = []
        stable = settings.max_rounds == 1
        while len(rounds) < settings.max_rounds:
            warmup = 0 if rounds else settings.warmup
            rounds.append(self.measure_round(prepared, settings, warmup))
            best_two = sorted(r.median_ms for r in rounds)[:2]
            if len(best_two) == 2 and best_two[1] - best_two[0] <= settings.tolerance * best_two[0]:
                stable = True
                break
        calmest = min(rounds, key=lambda r: r.median_ms)
        if not stable:
            log.debug(
                "%s: %d rounds did not agree within %.0f%%",
                self.name,
                len(rounds),
                100 * settings.tolerance,
            )
        info = {**self.info(), **calmest.info}
        return replace(calmest, rounds=len(rounds), stable=stable, backend=self.name, info=info)


    def _paired_rounds(self, prepared: Any, reference: Any, settings: MeasureSettings) -> Measurement:
        """Rounds of paired blocks (see :meth:`pair_with`)."""
        if settings.warmup:
            self.run_many(prepared, settings.warmup)
            self.run_many(reference, max(1, settings.warmup // 2))
        item_s = float(np.median(self.run_many(prepared, 3)))
        ref_s = float(np.median(self.run_many(reference, 3)))
        block = int(min(self.MAX_BLOCK_RUNS, max(1, round(ref_s / max(item_s, 1e-9)))))
        samples: list[float] = []
        refs: list[float] = []
        ratios: list[np.ndarray] = []
        before = self.run_many(reference, 1)[0]
        stable = settings.max_rounds == 1
        while len(ratios) < settings.max_rounds:
            round_ratios = np.empty(settings.repeats)
            for b in range(settings.repeats):
                if not self.RUN_MANY_WARMS_UP:
                    self.run_many(prepared, 1)  # untimed: the reference left the caches cold
                runs = self.run_many(prepared, block)
                after = self.run_many(reference, 1)[0]
                round_ratios[b] = float(np.median(runs)) / (0.5 * (before + after))
                samples.extend(runs)
                refs.append(after)
                before = after
            ratios.append(round_ratios)
            best_two = sorted(float(np.median(r)) for r in ratios)[:2]
            if len(best_two) == 2 and best_two[1] - best_two[0] <= settings.tolerance * best_two[0]:
                stable = True
                break
        kept = drop_outliers(np.asarray(samples, dtype=np.float64) * 1e3, settings.outlier_iqr)
        info = {**self.info(), PAIRED_BLOCK_RUNS: block}
        return replace(
            Measurement.from_samples(kept.tolist()),
            rounds=len(ratios),
            stable=stable,
            backend=self.name,
            info=info,
            probe_ratio=float(np.median(np.concatenate(ratios))),
            probe_ms=float(np.median(refs)) * 1e3,
        )


def wall_clock(fn: Any, *args: Any) -> float:
    """Seconds one call of ``fn(*args)`` takes (perf_counter)."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start

"""The backend interface: a backend converts a model and times one run; :class:`Backend` owns
warm-up, repeats, outlier removal, the stability check and the statistics.

A backend implements :meth:`Backend.prepare` (conversion: a PyTorch module to whatever it runs)
and :meth:`Backend.run_once` (one timed inference, seconds). Backends that time many runs
themselves (a phone's ``benchmark_model``) override :meth:`Backend.run_many` instead.
"""

from __future__ import annotations

import functools
import logging
import time
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import BackendError, ConfigError

log = logging.getLogger("ofabench")


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
        """Whether this backend can run on this machine (libraries, hardware), with the reason."""

    @abstractmethod
    def prepare(self, model: Any, input_shape: tuple[int, ...]) -> Any:
        """Convert ``model`` (a PyTorch module in eval mode) to what this backend runs."""

    def run_once(self, prepared: Any) -> float:
        """Run the prepared model once; return the elapsed seconds."""
        raise NotImplementedError(f"backend {self.name!r} implements neither run_once nor run_many")

    def run_many(self, prepared: Any, n: int) -> list[float]:
        """``n`` timed runs in seconds. The default calls :meth:`run_once` ``n`` times."""
        return [self.run_once(prepared) for _ in range(n)]

    def info(self) -> dict[str, Any]:
        """Provenance of measurements: library versions, threads, device or CPU name."""
        return {"backend": self.name, **self.settings}

    def close(self, prepared: Any) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`prepare` made (temporary files, sessions)."""

    # -- what the base class owns ----------------------------------------------------------------
    @class_or_instance_method
    def is_available(target: Any) -> Availability:  # noqa: N805 - class or instance
        """:meth:`availability`, with any exception read as "unavailable" and its cause."""
        try:
            return target.availability()
        except Exception as exc:  # a broken install should read as unavailable, with the cause
            return Availability(False, f"{type(exc).__name__}: {exc}", isinstance(exc, ImportError))

    def check_available(self) -> None:
        status = self.is_available()
        if not status:
            hint = ""
            if self.extra and status.missing_library:
                hint = f"; install it with: pip install 'ofabench[{self.extra}]'"
            raise BackendError(
                f"backend {self.name!r} is not available here: {status.reason}{hint}"
            )

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
        if settings.warmup:
            self.run_many(prepared, settings.warmup)
        rounds: list[np.ndarray] = []
        stable = False
        while len(rounds) < settings.max_rounds:
            samples = np.asarray(self.run_many(prepared, settings.repeats), dtype=np.float64) * 1e3
            rounds.append(drop_outliers(samples, settings.outlier_iqr))
            best_two = sorted(float(np.median(r)) for r in rounds)[:2]
            if len(best_two) == 2 and best_two[1] - best_two[0] <= settings.tolerance * best_two[0]:
                stable = True
                break
        if settings.max_rounds == 1:
            stable = True
        # transients only ever add time: keep the calmest round
        calmest = min(rounds, key=lambda r: float(np.median(r)))
        if not stable:
            log.debug(
                "%s: %d rounds did not agree within %.0f%%",
                self.name,
                len(rounds),
                100 * settings.tolerance,
            )
        return Measurement.from_samples(
            calmest.tolist(), rounds=len(rounds), stable=stable, backend=self.name, info=self.info()
        )


def wall_clock(fn: Any, *args: Any) -> float:
    """Seconds one call of ``fn(*args)`` takes (perf_counter)."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start

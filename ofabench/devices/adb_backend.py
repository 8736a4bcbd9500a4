"""An Android phone over adb: LiteRT's ``benchmark_model`` times a pushed ``.tflite`` on the phone.

Three parts kept apart (nn-Meter's good idea): :func:`parse_benchmark_output` reads what
``benchmark_model`` prints, :class:`AdbRunner` builds adb command lines and runs them with time-outs,
and :class:`AdbBackend` ties them to the :class:`~ofabench.devices.base.Backend` interface.

``benchmark_model`` reports summary statistics, not samples: one invocation runs ``warmup_runs``
then ``num_runs`` (at least; it also runs for at least one second) inferences and prints
``count first curr min max avg std`` (newer LiteRT also ``p5 median p95``). So
:meth:`AdbBackend.measure_round` (the base class's per-round hook) makes one invocation one round:
the base class repeats rounds (with ``cooldown_s`` between invocations) until two agree within
the tolerance and keeps the calmest, whose ``median`` is reported when printed, else its ``avg``
(``info["statistic"]`` says which). ``iqr_ms`` is not printed by ``benchmark_model``; it is
estimated as 1.349 x std (exact for a normal distribution) and flagged in ``info``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigError
from .base import Availability, Backend, Measurement, MeasureSettings, class_or_instance_method
from .registry import register_backend

log = logging.getLogger("ofabench")

DEFAULT_BINARY = "/data/local/tmp/benchmark_model"
DEFAULT_REMOTE_DIR = "/data/local/tmp/ofabench"
IQR_PER_STD = 1.349  # interquartile range of a normal distribution, in standard deviations
NO_DEVICE = (
    "no adb device is connected (adb devices lists none); connect a phone with USB debugging "
    "enabled, or set serial in devices/pixel.yaml"
)
NO_ADB = "adb is not installed (apt-get install adb)"


# -- the parser -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchmarkStats:
    """What one ``benchmark_model`` invocation reports about its timed runs (microseconds)."""

    count: int
    avg_us: float
    std_us: float = 0.0
    min_us: float | None = None
    max_us: float | None = None
    first_us: float | None = None
    median_us: float | None = None
    p5_us: float | None = None
    p95_us: float | None = None
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None

    @property
    def center_us(self) -> float:
        """The median when ``benchmark_model`` printed it (LiteRT, TF >= 2.13), else the mean."""
        return self.median_us if self.median_us is not None else self.avg_us

    @property
    def statistic(self) -> str:
        return "median" if self.median_us is not None else "avg"

    def to_measurement(self, **kwargs: Any) -> Measurement:
        """A :class:`Measurement` in milliseconds; ``iqr_ms`` estimated from ``std``."""
        return Measurement(
            median_ms=self.center_us / 1e3,
            mean_ms=self.avg_us / 1e3,
            std_ms=self.std_us / 1e3,
            iqr_ms=IQR_PER_STD * self.std_us / 1e3,
            n=self.count,
            **kwargs,
        )

    def summary(self) -> dict[str, float]:
        """The reported extras, in ms, for a measurement's ``info``."""
        names = ("min", "max", "first", "p5", "p95", "init", "first_inference", "warmup_avg")
        values = {n: getattr(self, f"{n}_us") for n in names}
        return {f"{n}_ms": v / 1e3 for n, v in values.items() if v is not None}


_STAT = re.compile(r"count=(\d+)(.*)")
_PAIR = re.compile(r"(\w+)=([-+]?[0-9.]+(?:[eE][-+]?\d+)?)")
_RUN_MARKER = re.compile(r"Running benchmark for (at least )?\d+ iterations")
_SUMMARY = re.compile(r"(?:Average )?[Ii]nference timings in us: (.*)")
_SUMMARY_KEYS = {
    "Init": "init_us",
    "First inference": "first_inference_us",
    "Warmup (avg)": "warmup_avg_us",
    "Warmup": "warmup_avg_us",
    "Inference (avg)": "avg_us",
    "Inference": "avg_us",
    "no stats": "avg_us",
}


def parse_stat_line(line: str) -> dict[str, float] | None:
    """``count=50 first=.. curr=.. min=.. max=.. avg=.. std=..`` (and ``p5 median p95``, or
    ``count=3 curr=100(all same)``) as a dict, or ``None`` when the line has no ``count=``."""
    match = _STAT.search(line)
    if match is None:
        return None
    values = {key: float(value) for key, value in _PAIR.findall(match.group(2))}
    values["count"] = float(match.group(1))
    if "avg" not in values and "curr" in values:  # all runs took the same time
        values.update(avg=values["curr"], min=values["curr"], max=values["curr"], std=0.0)
    return values


def parse_summary_line(text: str) -> dict[str, float]:
    """``Inference timings in us: Init: .., First inference: .., Warmup (avg): .., Inference
    (avg): ..`` (or the older ``Average inference timings in us: Warmup: .., Init: ..,
    Inference: ..``) as ``BenchmarkStats`` field names."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = _SUMMARY.search(line)
        if match is None:
            continue
        for part in match.group(1).split(","):
            key, _, value = part.partition(":")
            name = _SUMMARY_KEYS.get(key.strip())
            if name is not None:
                with contextlib.suppress(ValueError):
                    found[name] = float(value.strip())
    return found


def _timed_run_stats(lines: list[str]) -> dict[str, float] | None:
    """The statistics of the timed runs: the first ``count=`` line after the last "Running
    benchmark" marker; without markers, the op profiler's ``Timings (microseconds)`` line with the
    most runs."""
    last_marker = max((i for i, line in enumerate(lines) if _RUN_MARKER.search(line)), default=None)
    if last_marker is not None:
        for line in lines[last_marker + 1 :]:
            if "Memory (bytes)" in line:
                continue
            stats = parse_stat_line(line)
            if stats is not None:
                return stats
    candidates = [parse_stat_line(line) for line in lines if "Timings (microseconds)" in line]
    candidates = [c for c in candidates if c is not None]
    return max(candidates, key=lambda c: c["count"], default=None)


def parse_benchmark_output(text: str) -> BenchmarkStats:
    """The timed-run statistics ``benchmark_model`` printed; :class:`BackendError` (with its error
    lines) when it printed none."""
    lines = text.splitlines()
    stats = _timed_run_stats(lines)
    summary = parse_summary_line(text)
    if stats is None and "avg_us" not in summary:
        raise BackendError(f"benchmark_model printed no timings: {_error_excerpt(lines)}")
    fields: dict[str, Any] = {k: v for k, v in summary.items() if k != "avg_us"}
    if stats is None:
        return BenchmarkStats(count=0, avg_us=summary["avg_us"], **fields)
    for key in ("min", "max", "first", "median", "p5", "p95"):
        if key in stats:
            fields[f"{key}_us"] = stats[key]
    return BenchmarkStats(
        count=int(stats["count"]), avg_us=stats["avg"], std_us=stats.get("std", 0.0), **fields
    )


def _error_excerpt(lines: list[str], keep: int = 5) -> str:
    errors = [line.strip() for line in lines if "ERROR" in line or "rror:" in line]
    chosen = errors[-keep:] or [line.strip() for line in lines if line.strip()][-keep:]
    return " | ".join(chosen) if chosen else "(no output)"


# -- the runner ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdbSettings:
    """The adb backend's settings, validated (see :class:`AdbBackend`)."""

    serial: str | None = None
    adb: str = "adb"
    benchmark_binary: str = DEFAULT_BINARY
    remote_dir: str = DEFAULT_REMOTE_DIR
    threads: int = 1
    warmup_runs: int | None = None
    num_runs: int | None = None
    use_xnnpack: bool = True
    use_gpu: bool = False
    taskset: str | None = None
    timeout_s: float = 300.0
    cooldown_s: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if self.threads < 1 and self.threads != -1:
            problems.append(
                f"threads must be >= 1 (or -1 for benchmark_model's default); got {self.threads}"
            )
        if self.num_runs is not None and self.num_runs < 1:
            problems.append(f"num_runs must be >= 1; got {self.num_runs}")
        if self.warmup_runs is not None and self.warmup_runs < 0:
            problems.append(f"warmup_runs must be >= 0; got {self.warmup_runs}")
        if self.taskset is not None and not re.fullmatch(r"[0-9a-fA-F]+", self.taskset):
            problems.append(
                f"taskset must be a hexadecimal CPU mask like 'f0'; got {self.taskset!r}"
            )
        if self.timeout_s <= 0 or self.cooldown_s < 0:
            problems.append(
                f"timeout_s must be > 0 and cooldown_s >= 0; got {self.timeout_s}, {self.cooldown_s}"
            )
        if not self.remote_dir.startswith("/") or not self.benchmark_binary.startswith("/"):
            problems.append("remote_dir and benchmark_binary must be absolute paths on the device")
        if problems:
            raise ConfigError("adb settings: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, settings: dict[str, Any]) -> AdbSettings:
        try:
            values = {k: _coerce(k, v) for k, v in settings.items()}
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"adb settings: {exc}") from exc
        return cls(**values)


_INT_KEYS = frozenset({"threads", "warmup_runs", "num_runs"})
_FLOAT_KEYS = frozenset({"timeout_s", "cooldown_s"})
_BOOL_KEYS = frozenset({"use_xnnpack", "use_gpu"})


def _coerce(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise TypeError(f"{key} must be true or false; got {value!r}")
        return value
    if key in _INT_KEYS:
        if isinstance(value, bool) or int(value) != value:
            raise TypeError(f"{key} must be an integer; got {value!r}")
        return int(value)
    if key in _FLOAT_KEYS:
        return float(value)
    return str(value)


def benchmark_argv(settings: AdbSettings, graph: str, num_runs: int, warmup_runs: int) -> list[str]:
    """The command run on the phone (after ``adb shell``):
    ``[taskset MASK] BINARY --graph=.. --num_threads=.. --warmup_runs=.. --num_runs=..
    --use_xnnpack=true|false [--use_gpu=true]``."""
    argv = ["taskset", settings.taskset] if settings.taskset else []
    argv += [
        settings.benchmark_binary,
        f"--graph={shlex.quote(graph)}",
        f"--num_threads={settings.threads}",
        f"--warmup_runs={warmup_runs}",
        f"--num_runs={num_runs}",
        f"--use_xnnpack={'true' if settings.use_xnnpack else 'false'}",
    ]
    if settings.use_gpu:
        argv.append("--use_gpu=true")
    return argv


@dataclass(frozen=True)
class AdbRunner:
    """adb command lines (``adb [-s SERIAL] ...``) run with a time-out; failures and time-outs
    become :class:`BackendError` naming the command."""

    adb: str = "adb"
    serial: str | None = None
    timeout_s: float = 300.0

    def command(self, *args: str) -> list[str]:
        """``[adb, -s, serial, *args]`` (no ``-s`` without a serial)."""
        return [self.adb, *(["-s", self.serial] if self.serial else []), *args]

    def executable(self) -> str | None:
        """The adb binary's full path, or ``None`` when it is not installed."""
        return shutil.which(self.adb)

    def run(self, *args: str, timeout_s: float | None = None, check: bool = True) -> str:
        """Run ``adb ARGS``; its standard output (stderr merged)."""
        argv = self.command(*args)
        limit = self.timeout_s if timeout_s is None else timeout_s
        code, output = run_with_timeout(argv, limit)
        if check and code != 0:
            raise BackendError(
                f"`{shlex.join(argv)}` failed with exit code {code}: {_error_excerpt(output.splitlines())}"
            )
        return output

    def devices(self, timeout_s: float = 15.0) -> list[tuple[str, str]]:
        """``(serial, state)`` of every device ``adb devices`` lists (any state)."""
        output = AdbRunner(self.adb, None, self.timeout_s).run("devices", timeout_s=timeout_s)
        return parse_devices(output)

    def push(self, local: str | Path, remote: str) -> None:
        self.run("push", str(local), remote)

    def shell(self, *args: str, check: bool = True) -> str:
        return self.run("shell", *args, check=check)


def parse_devices(output: str) -> list[tuple[str, str]]:
    """``adb devices`` output as ``(serial, state)`` pairs (``device``, ``unauthorized``,
    ``offline``...)."""
    found = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
            found.append((parts[0], parts[1]))
    return found


HEARTBEAT_S = 15.0  # how often a running adb command says it is still being waited for


def run_with_timeout(
    argv: list[str], timeout_s: float, heartbeat_s: float = HEARTBEAT_S
) -> tuple[int, str]:
    """Run ``argv``; its exit code and output. While it runs, every ``heartbeat_s`` a log line
    says what is being waited for and for how long; on time-out its whole process group is
    killed (adb may leave children that hold the pipe open) and :class:`BackendError` names the
    command."""
    try:
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise BackendError(f"`{argv[0]}` not found: {NO_ADB}") from exc
    start = time.monotonic()
    while True:
        left = timeout_s - (time.monotonic() - start)
        try:
            output, _ = process.communicate(timeout=max(0.0, min(heartbeat_s, left)))
            return process.returncode, output
        except subprocess.TimeoutExpired as exc:
            waited = time.monotonic() - start
            if waited >= timeout_s:
                _kill_group(process)
                raise BackendError(
                    f"`{shlex.join(argv)}` timed out after {timeout_s:g} s: is the device "
                    "connected, unlocked and responding? (timeout_s in the device profile)"
                ) from exc
            log.info(
                "waiting for `%s` (%.0f s so far, time-out %g s)",
                shlex.join(argv),
                waited,
                timeout_s,
            )


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(OSError):
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.communicate(timeout=5)


# -- the backend --------------------------------------------------------------------------------------
@dataclass
class PushedModel:
    """A model on the phone: where it is there, and the local copy (removed by ``close``)."""

    remote_path: str
    local_path: str
    local_dir: str | None = None
    runs: list[BenchmarkStats] = field(default_factory=list)


@register_backend
class AdbBackend(Backend):
    """A phone over adb running LiteRT's ``benchmark_model`` (see the module docstring).

    Settings: ``serial`` (``adb -s``), ``adb`` (binary), ``benchmark_binary`` and ``remote_dir``
    (paths on the phone), ``threads``, ``warmup_runs``, ``num_runs`` (default: the measure
    settings' ``warmup`` and ``repeats``), ``use_xnnpack``, ``use_gpu`` (GPU delegate),
    ``taskset`` (CPU mask such as ``"f0"``: the big cores of many phones), ``timeout_s`` (per adb
    command), ``cooldown_s`` (pause before each invocation, so the phone does not throttle).
    """

    name = "adb"
    extra = "tflite"
    settings_keys = frozenset(AdbSettings.__dataclass_fields__)

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.config = AdbSettings.from_mapping(self.settings)
        self.runner = AdbRunner(self.config.adb, self.config.serial, self.config.timeout_s)
        self._last_run_end: float | None = None
        self._device_name: str | None = None

    # -- availability ------------------------------------------------------------------------------
    @class_or_instance_method
    def availability(owner: Any) -> Availability:  # noqa: N805 - the instance or the class
        """adb installed and a device in state ``device`` (the configured serial, if any)."""
        return adb_availability(_config_of(owner))

    # -- conversion -----------------------------------------------------------------------------------
    def prepare(self, model: Any, input_shape: tuple[int, ...]) -> PushedModel:
        """Write ``model`` as ``.tflite`` (or take a path to one) and push it to ``remote_dir``."""
        local_dir = None
        if isinstance(model, (str, Path)):
            local = Path(model)
            if local.suffix != ".tflite" or not local.is_file():
                raise BackendError(f"adb: {local} is not an existing .tflite file")
        else:
            local_dir = tempfile.mkdtemp(prefix="ofabench-adb-")
            local = Path(local_dir) / "model.tflite"
            local.write_bytes(_tflite_bytes(model, input_shape))
        remote = f"{self.config.remote_dir}/ofabench_{uuid.uuid4().hex[:8]}.tflite"
        try:
            self.runner.shell("mkdir", "-p", shlex.quote(self.config.remote_dir))
            self.runner.push(local, remote)
        except BaseException:
            if local_dir:
                shutil.rmtree(local_dir, ignore_errors=True)
            raise
        self._describe_device()
        return PushedModel(remote, str(local), local_dir)

    # -- timing ------------------------------------------------------------------------------------------
    def run_benchmark(
        self, prepared: PushedModel, num_runs: int, warmup_runs: int
    ) -> BenchmarkStats:
        """One ``benchmark_model`` invocation (after the cool-down), parsed."""
        self._cool_down()
        argv = benchmark_argv(self.config, prepared.remote_path, num_runs, warmup_runs)
        try:
            output = self.runner.shell(*argv)
        finally:
            self._last_run_end = time.monotonic()
        stats = parse_benchmark_output(output)
        if stats.count == 0:
            stats = replace(stats, count=num_runs)
        prepared.runs.append(stats)
        return stats

    def measure_round(
        self, prepared: PushedModel, settings: MeasureSettings, warmup: int
    ) -> Measurement:
        """One ``benchmark_model`` invocation (it warms up itself, every time: ``warmup_runs``,
        default ``settings.warmup``; ``num_runs``, default ``settings.repeats``), its printed
        statistics as the round's measurement."""
        num_runs = self.config.num_runs or settings.repeats
        warmup_runs = self.config.warmup_runs
        stats = self.run_benchmark(
            prepared, num_runs, settings.warmup if warmup_runs is None else warmup_runs
        )
        info = {"statistic": stats.statistic, **stats.summary()}
        return stats.to_measurement(backend=self.name, info=info)

    def _cool_down(self) -> None:
        if self._last_run_end is None or not self.config.cooldown_s:
            return
        wait = self.config.cooldown_s - (time.monotonic() - self._last_run_end)
        if wait > 0:
            time.sleep(wait)

    def close(self, prepared: PushedModel) -> None:
        """Remove the model from the phone and the local copy."""
        try:
            self.runner.shell("rm", "-f", shlex.quote(prepared.remote_path))
        except BackendError as exc:  # do not hide the measurement's own error behind this one
            log.warning("adb: could not remove %s from the device: %s", prepared.remote_path, exc)
        if prepared.local_dir:
            shutil.rmtree(prepared.local_dir, ignore_errors=True)

    def info(self) -> dict[str, Any]:
        c = self.config
        return {
            "backend": self.name,
            "device": self._device_name or c.serial or "",
            "serial": c.serial,
            "runtime": "LiteRT benchmark_model",
            "benchmark_binary": c.benchmark_binary,
            "threads": c.threads,
            "use_xnnpack": c.use_xnnpack,
            "use_gpu": c.use_gpu,
            "taskset": c.taskset,
            "cooldown_s": c.cooldown_s,
            "statistic": "median printed by benchmark_model, else its avg",
            "iqr": f"estimated as {IQR_PER_STD} x std (benchmark_model prints no quartiles)",
        }

    def _describe_device(self) -> None:
        """Remember the phone's model and Android version for :meth:`info` (best effort)."""
        if self._device_name is not None:
            return
        try:
            model = self.runner.shell("getprop", "ro.product.model", check=False).strip()
            release = self.runner.shell("getprop", "ro.build.version.release", check=False).strip()
        except BackendError:
            model, release = "", ""
        self._device_name = " ".join(
            p for p in (model, f"Android {release}" if release else "") if p
        )


def _config_of(owner: Any) -> AdbSettings:
    config = getattr(owner, "config", None)
    return config if isinstance(config, AdbSettings) else AdbSettings()


def adb_availability(config: AdbSettings) -> Availability:
    """Whether ``config``'s adb binary exists and lists a ready device (its serial, if set)."""
    runner = AdbRunner(config.adb, config.serial, config.timeout_s)
    if runner.executable() is None:
        reason = NO_ADB if config.adb == "adb" else f"adb binary {config.adb!r} not found"
        return Availability(False, reason)
    try:
        listed = runner.devices()
    except BackendError as exc:
        return Availability(False, f"`adb devices` failed: {exc}")
    return _device_availability(listed, config.serial)


def _device_availability(listed: list[tuple[str, str]], serial: str | None) -> Availability:
    ready = [s for s, state in listed if state == "device"]
    if serial is not None:
        if serial in ready:
            return Availability(True)
        states = dict(listed)
        if serial in states:
            return Availability(
                False, f"adb device {serial!r} is {states[serial]}{_state_hint(states[serial])}"
            )
        return Availability(
            False, f"adb device {serial!r} is not connected (adb devices lists {ready or 'none'})"
        )
    if ready:
        return Availability(True)
    if listed:
        serial, state = listed[0]
        return Availability(False, f"adb device {serial!r} is {state}{_state_hint(state)}")
    return Availability(False, NO_DEVICE)


def _state_hint(state: str) -> str:
    if state == "unauthorized":
        return "; accept the USB debugging prompt on the phone"
    return "; reconnect it or run `adb kill-server`"


def _tflite_bytes(model: Any, input_shape: tuple[int, ...]) -> bytes:
    from .tflite_writer import module_to_tflite  # written for LiteRT; imported only when needed

    return module_to_tflite(model, tuple(input_shape))

"""A Linux board over SSH (Raspberry Pi, Jetson, any Linux box): the model is copied there with
the system ``scp`` and timed by a small runner (:mod:`ofabench.devices.ssh_runner`, copied beside
it) with the board's own ONNX Runtime or LiteRT.

The system ``ssh``/``scp`` run in batch mode, so the user's keys, agent and ``~/.ssh/config`` apply
and nothing ever waits for a password. Each measurement copies a folder
``<remote_dir>/ofabench-<random>`` holding the runner and the model (ONNX, or TFLite written by
:mod:`ofabench.devices.tflite_writer`), runs one runner invocation per round (the base class's
per-round hook: the runner loads the model, warms up and times ``repeats`` runs with its threads
and CPUs pinned), and removes the folder. Every command has a time limit (``connect_timeout_s``
for the connection, ``timeout_s`` for the whole command); a failure becomes one
:class:`~ofabench.errors.DeviceError` line naming the device and what to fix.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ..errors import ConfigError, DeviceError
from .base import (
    Availability,
    Backend,
    Measurement,
    MeasureSettings,
    class_or_instance_method,
    drop_outliers,
)
from .registry import register_backend

log = logging.getLogger("ofabench")

RUNTIMES = {"onnxruntime": ".onnx", "litert": ".tflite"}
RUNNER = Path(__file__).with_name("ssh_runner.py")
EXIT_SSH = 255  # ssh's own failure (connection, authentication)
EXIT_NOT_FOUND = 127  # the remote shell found no such program
EXIT_NOT_EXECUTABLE = 126
EXIT_NO_RUNTIME = 3  # ssh_runner: the runtime cannot be imported
RUNTIME_PACKAGES = {"onnxruntime": "onnxruntime", "litert": "ai-edge-litert"}
# What ssh prints when it cannot connect or log in, and what to do about it.
SSH_PROBLEMS = (
    ("Connection refused", "nothing accepts SSH connections there: check host and port in the "
     "device profile and that sshd runs on the board"),
    ("Could not resolve hostname", "the host name cannot be resolved: fix host in the device "
     "profile (or add it to ~/.ssh/config)"),
    ("timed out", "no answer within connect_timeout_s: check the board is on and reachable"),
    ("No route to host", "no route to the board: check the network and the address"),
    ("Network is unreachable", "the network is unreachable: check the address"),
    ("Permission denied", "the board refused the key: set identity_file to a key listed in the "
     "board's ~/.ssh/authorized_keys (ssh-copy-id installs one), or user"),
    ("No such file or directory", "a path on the board does not exist: check remote_dir in the "
     "device profile"),
    ("Host key verification failed", "the board's host key is unknown or changed: connect once "
     "with ssh to accept it, or fix ~/.ssh/known_hosts"),
)  # fmt: skip


# -- settings -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SshSettings:
    """The SSH backend's settings, validated (see :class:`SshBackend`)."""

    host: str
    port: int
    user: str | None = None
    identity_file: str | None = None
    python: str = "python3"
    runtime: str = "onnxruntime"
    threads: int = 1
    cpus: tuple[int, ...] = ()
    remote_dir: str = "/tmp"
    connect_timeout_s: float = 10.0
    timeout_s: float = 300.0
    ssh_options: tuple[str, ...] = ()
    ssh: str = "ssh"
    scp: str = "scp"

    @property
    def destination(self) -> str:
        """``user@host`` (just ``host`` without a user: ``~/.ssh/config`` or the login name)."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def address(self) -> str:
        return f"{self.destination}:{self.port}"

    @classmethod
    def from_mapping(cls, settings: dict[str, Any]) -> SshSettings:
        problems = _missing(settings)
        values: dict[str, Any] = {}
        for key, value in settings.items():
            try:
                values[key] = _coerce(key, value)
            except (TypeError, ValueError) as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("ssh settings: " + "; ".join(problems))
        return cls(**values)

    def __post_init__(self) -> None:
        problems = []
        if self.runtime not in RUNTIMES:
            problems.append(f"runtime must be one of {sorted(RUNTIMES)}; got {self.runtime!r}")
        if self.threads < 1:
            problems.append(f"threads must be >= 1; got {self.threads}")
        if not 0 < self.port < 65536:
            problems.append(f"port must be 1..65535; got {self.port}")
        if self.connect_timeout_s <= 0 or self.timeout_s <= 0:
            problems.append("connect_timeout_s and timeout_s must be > 0")
        if not self.remote_dir.startswith("/"):
            problems.append(f"remote_dir must be an absolute path; got {self.remote_dir!r}")
        if problems:
            raise ConfigError("ssh settings: " + "; ".join(problems))


_INT_KEYS = frozenset({"port", "threads"})
_FLOAT_KEYS = frozenset({"connect_timeout_s", "timeout_s"})
_LIST_KEYS = frozenset({"cpus", "ssh_options"})


def _missing(settings: dict[str, Any]) -> list[str]:
    problems = []
    if not settings.get("host"):
        problems.append("host is missing (the board's name or address, as ssh takes it)")
    if settings.get("port") is None:
        problems.append("port is missing (22 for a standard sshd)")
    return problems


def _coerce(key: str, value: Any) -> Any:
    if key in _INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{key} must be an integer; got {value!r}")
        return value
    if key in _FLOAT_KEYS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{key} must be a number of seconds; got {value!r}")
        return float(value)
    if key in _LIST_KEYS:
        return _list_setting(key, value)
    if not isinstance(value, str) or not value:
        raise TypeError(f"{key} must be a non-empty string; got {value!r}")
    return value


def _list_setting(key: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, str) and key == "cpus":  # "2,3" as well as [2, 3]
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{key} must be a list; got {value!r}")
    if key == "cpus":
        try:
            return tuple(int(cpu) for cpu in value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"cpus must be CPU numbers like [2, 3]; got {value!r}") from exc
    if not all(isinstance(option, str) and "=" in option for option in value):
        raise TypeError(f"ssh_options must be ssh -o options like 'Key=value'; got {value!r}")
    return tuple(value)


# -- commands ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommandResult:
    code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class SshRunner:
    """``ssh``/``scp`` command lines for one board, run with time limits. ``label`` names the
    device in messages."""

    config: SshSettings
    label: str

    def options(self) -> list[str]:
        """Options ssh and scp share: batch mode, time limits, the key, the user's ``-o``s."""
        c = self.config
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={math.ceil(c.connect_timeout_s)}"]
        opts += ["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if c.identity_file:
            opts += ["-i", os.path.expanduser(c.identity_file), "-o", "IdentitiesOnly=yes"]
        for option in c.ssh_options:
            opts += ["-o", option]
        return opts

    def ssh_argv(self, command: str) -> list[str]:
        """``ssh OPTIONS -p PORT DESTINATION COMMAND`` (COMMAND: one shell string)."""
        c = self.config
        return [c.ssh, *self.options(), "-p", str(c.port), c.destination, command]

    def scp_argv(self, local: str, remote: str) -> list[str]:
        """``scp -q -r OPTIONS -P PORT LOCAL DESTINATION:REMOTE``."""
        c = self.config
        return [c.scp, "-q", "-r", *self.options(), "-P", str(c.port), local,
                f"{c.destination}:{remote}"]  # fmt: skip

    def run(self, argv: list[str], doing: str, stdin: str | None = None) -> CommandResult:
        """Run ``argv`` within ``timeout_s``; :class:`DeviceError` on a time-out, a missing
        binary or a failure of ssh itself (exit 255)."""

        def fail(problem: str) -> NoReturn:
            self.fail(f"{doing}: {problem}")

        result = run_bounded(argv, self.config.timeout_s, stdin, fail)
        if result.code == EXIT_SSH or _scp_failed(argv, self.config, result):
            self.fail(f"{doing} failed: {ssh_problem(result.stderr)}")
        return result

    def ssh(self, command: str, doing: str, stdin: str | None = None) -> CommandResult:
        return self.run(self.ssh_argv(command), doing, stdin)

    def fail(self, problem: str) -> NoReturn:
        """Raise the one-line :class:`DeviceError` naming the device."""
        raise DeviceError(f"device {self.label!r} ({self.config.address}): {_one_line(problem)}")


def _scp_failed(argv: list[str], config: SshSettings, result: CommandResult) -> bool:
    return argv[0] == config.scp and result.code != 0


def run_bounded(
    argv: list[str], timeout_s: float, stdin: str | None, fail: Callable[[str], NoReturn]
) -> CommandResult:
    """Run ``argv``; on a time-out kill its process group and call ``fail`` with the reason."""
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError:
        fail(f"`{argv[0]}` is not installed here (apt-get install openssh-client)")
    try:
        out, err = process.communicate(stdin, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        fail(
            f"no answer within timeout_s={timeout_s:g} s: the board may hang or be overloaded; "
            "check it, or raise timeout_s in the device profile"
        )
    return CommandResult(process.returncode, out, err)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.communicate(timeout=5)


def ssh_problem(stderr: str) -> str:
    """What went wrong in ssh's own words (last lines), with the fix when it is a known case."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Warning: Permanently added")]
    said = " | ".join(lines[-2:]) or "no message"
    for needle, fix in SSH_PROBLEMS:
        if needle in stderr:
            return f"{fix} (ssh: {said})"
    return f"ssh: {said}"


def remote_program(path: str) -> str:
    """``path`` quoted for the board's shell; a leading ``~/`` still means its home folder."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def parse_runner_output(stdout: str) -> dict[str, Any] | None:
    """The runner's JSON line (the last line that is a JSON object), or ``None``."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                payload = json.loads(line)
                if isinstance(payload, dict):
                    return payload
    return None


# -- the backend ------------------------------------------------------------------------------------
@dataclass
class RemoteModel:
    """A model copied to the board: its folder there, and the local folder (removed by close)."""

    remote_dir: str
    model_name: str
    local_dir: str

    @property
    def runner(self) -> str:
        return f"{self.remote_dir}/{RUNNER.name}"

    @property
    def model(self) -> str:
        return f"{self.remote_dir}/{self.model_name}"


@register_backend
class SshBackend(Backend):
    """A Linux board over SSH, timed by its own ONNX Runtime or LiteRT (see the module docstring).

    Settings: ``host`` and ``port`` (required), ``user``, ``identity_file``, ``python`` (the
    board's interpreter, default ``python3``), ``runtime`` (``onnxruntime`` or ``litert``),
    ``threads``, ``cpus`` (CPU numbers the runner is pinned to, e.g. ``[2, 3]``), ``remote_dir``
    (where the temporary folders go, default ``/tmp``), ``connect_timeout_s``, ``timeout_s`` (per
    command), ``ssh_options`` (extra ``-o Key=value``), ``ssh`` and ``scp`` (the binaries).
    """

    name = "ssh"
    extra = None
    settings_keys = frozenset(SshSettings.__dataclass_fields__)

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.config = SshSettings.from_mapping(self.settings)
        self.remote: dict[str, Any] = {}  # what the board said when probed

    @property
    def runner(self) -> SshRunner:
        return SshRunner(self.config, self.device_name or self.config.host)

    # -- availability ---------------------------------------------------------------------------
    @class_or_instance_method
    def availability(owner: Any) -> Availability:  # noqa: N805 - the instance or the class
        """The class: ``ssh`` and ``scp`` installed. An instance: the board answers, accepts the
        key, and its Python imports the runtime."""
        config = getattr(owner, "config", None)
        for binary in (config.ssh, config.scp) if config else ("ssh", "scp"):
            if shutil.which(binary) is None:
                return Availability(False, f"`{binary}` is not installed (apt-get install "
                                           "openssh-client)")  # fmt: skip
        if config is None:
            return Availability(True)
        try:
            owner.remote = owner.probe()
        except DeviceError as exc:
            return Availability(False, str(exc))
        return Availability(True)

    def probe(self) -> dict[str, Any]:
        """Ask the board's Python (the runner, sent on standard input) for its runtime."""
        c = self.config
        command = f"{remote_program(c.python)} - --probe {c.runtime}"
        result = self.runner.ssh(command, "probing the board", stdin=RUNNER.read_text())
        return self._runner_payload(result, "probing the board")

    def _runner_payload(self, result: CommandResult, doing: str) -> dict[str, Any]:
        """The runner's answer; a missing Python or runtime or a runner error named clearly."""
        c = self.config
        payload = parse_runner_output(result.stdout)
        if result.code == EXIT_NOT_FOUND:
            self.runner.fail(
                f"the board has no Python at {c.python!r} (remote shell: "
                f"{_one_line(result.stderr)[-120:]}); set python in the device profile to its "
                "interpreter, e.g. /usr/bin/python3"
            )
        if result.code == EXIT_NOT_EXECUTABLE:
            self.runner.fail(f"{c.python!r} is not executable on the board; fix python")
        if result.code == EXIT_NO_RUNTIME:
            reason = payload["error"] if payload else _one_line(result.stderr)[-160:]
            self.runner.fail(
                f"the board's Python {c.python!r} cannot import {c.runtime} ({reason}); install "
                f"it there: {c.python} -m pip install {RUNTIME_PACKAGES[c.runtime]}"
            )
        if result.code != 0 or payload is None or "error" in payload:
            said = (payload or {}).get("error") or _one_line(result.stderr)[-200:] or "no output"
            self.runner.fail(f"{doing}: the runner failed (exit {result.code}): {said}")
        assert payload is not None
        return payload

    # -- conversion and copying ---------------------------------------------------------------------
    def prepare(self, model: Any, input_shape: tuple[int, ...]) -> RemoteModel:
        """Write the model (or take an existing ``.onnx``/``.tflite`` path) into a local folder
        with the runner and copy the folder to ``remote_dir/ofabench-<random>``."""
        local_dir = tempfile.mkdtemp(prefix="ofabench-ssh-")
        try:
            name = self._write_model(model, tuple(input_shape), Path(local_dir))
            shutil.copyfile(RUNNER, Path(local_dir) / RUNNER.name)
            remote = f"{self.config.remote_dir.rstrip('/')}/ofabench-{uuid.uuid4().hex[:12]}"
            self.runner.run(self.runner.scp_argv(local_dir, remote), "copying the model")
        except BaseException:
            shutil.rmtree(local_dir, ignore_errors=True)
            raise
        return RemoteModel(remote, name, local_dir)

    def _write_model(self, model: Any, input_shape: tuple[int, ...], folder: Path) -> str:
        suffix = RUNTIMES[self.config.runtime]
        target = folder / f"model{suffix}"
        if isinstance(model, (str, Path)):
            source = Path(model)
            if source.suffix != suffix or not source.is_file():
                raise ConfigError(
                    f"ssh ({self.config.runtime}): {source} is not an existing {suffix} file"
                )
            shutil.copyfile(source, target)
        elif self.config.runtime == "onnxruntime":
            from ..export import export_onnx

            export_onnx(model, input_shape, target, check=False)
        else:
            from .tflite_writer import module_to_tflite

            target.write_bytes(module_to_tflite(model, input_shape))
        return target.name

    # -- timing -------------------------------------------------------------------------------------
    def measure_round(
        self, prepared: RemoteModel, settings: MeasureSettings, warmup: int
    ) -> Measurement:
        """One runner invocation: it loads the model, warms up (``settings.warmup`` runs, every
        round: a fresh process is cold) and times ``settings.repeats`` runs."""
        c = self.config
        argv = [c.python, prepared.runner, "--model", prepared.model, "--runtime", c.runtime,
                "--threads", str(c.threads), "--warmup", str(max(warmup, settings.warmup)),
                "--repeats", str(settings.repeats)]  # fmt: skip
        if c.cpus:
            argv += ["--cpus", ",".join(map(str, c.cpus))]
        command = " ".join([remote_program(c.python), shlex.join(argv[1:])])
        result = self.runner.ssh(command, "timing the model")
        payload = self._runner_payload(result, "timing the model")
        samples = np.asarray(payload["samples_ms"], dtype=np.float64)
        kept = drop_outliers(samples, settings.outlier_iqr)
        return Measurement.from_samples(kept.tolist(), info={"cpus": payload.get("cpus", [])})

    def close(self, prepared: RemoteModel) -> None:
        """Remove the board's folder (a warning if that fails) and the local one."""
        try:
            self.runner.ssh(f"rm -rf -- {shlex.quote(prepared.remote_dir)}", "cleaning up")
        except DeviceError as exc:  # do not hide the measurement's own error behind this one
            log.warning("ssh: could not remove %s on the board: %s", prepared.remote_dir, exc)
        shutil.rmtree(prepared.local_dir, ignore_errors=True)

    def info(self) -> dict[str, Any]:
        c = self.config
        return {
            "backend": self.name,
            "host": c.host,
            "port": c.port,
            "user": c.user,
            "device": self.remote.get("device", ""),
            "python": self.remote.get("python", ""),
            "runtime": c.runtime,
            "runtime_version": self.remote.get("runtime_version", ""),
            "threads": c.threads,
            "cpus": list(c.cpus),
        }

"""Apache TVM: a Relax module compiled for ``llvm`` (or a remote target), run on its
VirtualMachine, optionally tuned with MetaSchedule.

Pipeline: PyTorch → ONNX (:func:`ofabench.export.export_onnx`) → ``relax.frontend.onnx`` (or
``torch.export`` → ``relax.frontend.torch``) → legalize and fuse → [MetaSchedule tuning, records
in a JSON database under ``tuning_dir``; apply the database] → ``tvm.compile`` →
``relax.VirtualMachine``.

Timing: :meth:`TVMBackend.run_many` calls ``VirtualMachine.time_evaluator("main", number=1,
repeat=n)``, which times each call in C++ (on the device itself when remote, so network latency is
not counted) and returns one sample per repeat; the base class's warm-up, rounds, outlier removal
and statistics apply unchanged.

Untuned TVM on a CPU runs naive loop nests (15 ms for a block ONNX Runtime runs in 0.8 ms), so
:meth:`TVMBackend.info` always says whether a measurement is tuned, and with how many trials.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, ConfigError
from .base import Availability, Backend, class_or_instance_method
from .registry import register_backend

log = logging.getLogger("ofabench")

FRONTENDS = ("onnx", "torch")
# For remote tuning: a fresh MetaSchedule builder worker spends ~34 s (idle machine) importing
# tvm.s_tir.tensor_intrin, past LocalBuilder's default 30 s; the import moves to the (untimed)
# worker initializer and the time-out is raised besides.
BUILDER_TIMEOUT_S = 180.0
# apache-tvm-ffi versions seen to segfault in tvm.ir.save_json while MetaSchedule tunes.
BAD_FFI_FOR_TUNING = frozenset({"0.1.15.post2"})
RPC_KEYS = frozenset(
    {"host", "port", "tracker_host", "tracker_port", "key", "connect_timeout_s",
     "session_timeout_s", "cc"}
)  # fmt: skip
CLI_LIST_ATTRS = frozenset({"mattr", "keys", "libs"})
_SESSIONS: dict[tuple[str, int, str], Any] = {}  # (host, port, key) -> the open RPC session


# -- settings ----------------------------------------------------------------------------------------
def parse_target(spec: str | dict[str, Any] | None, threads: int = 1) -> dict[str, Any] | str:
    """A target as TVM 0.2x+ accepts it: a JSON-style dict (``{"kind": "llvm", "mcpu": ...}``) or
    a tag name. ``None`` means the host: llvm with the host's CPU when LLVM can name it. The old
    CLI form (``"llvm -mcpu=znver3 -mattr=+avx2"``) is translated to a dict. An llvm target
    without ``num-cores`` gets ``threads`` (MetaSchedule plans parallel loops for it)."""
    if spec is None:
        target: dict[str, Any] | str = host_target()
    elif isinstance(spec, dict):
        target = dict(spec)
    elif isinstance(spec, str) and spec.strip().startswith("{"):
        try:
            target = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"tvm target {spec!r} is not valid JSON: {exc}") from exc
    elif isinstance(spec, str) and " -" in spec.strip():
        target = _cli_target_to_dict(spec)
    elif isinstance(spec, str) and spec.strip():
        target = spec.strip()
    else:
        raise ConfigError(
            f"tvm target must be a dict like {{'kind': 'llvm'}} or a string; got {spec!r}"
        )
    if target == "llvm":
        target = {"kind": "llvm"}
    if isinstance(target, dict):
        if "kind" not in target:
            raise ConfigError(f"tvm target {target} has no 'kind' (e.g. 'llvm')")
        if target["kind"] == "llvm":
            target.setdefault("num-cores", threads)
    return target


def _cli_target_to_dict(spec: str) -> dict[str, Any]:
    kind, *options = spec.split()
    target: dict[str, Any] = {"kind": kind}
    for option in options:
        key, sep, value = option.lstrip("-").partition("=")
        if not sep:
            raise ConfigError(f"tvm target option {option!r} in {spec!r} is not -key=value")
        target[key] = value.split(",") if key in CLI_LIST_ATTRS else value
    return target


def host_target() -> dict[str, Any]:
    """``{"kind": "llvm", "mcpu": <host CPU>}``, or plain llvm when LLVM cannot name the CPU."""
    target: dict[str, Any] = {"kind": "llvm"}
    try:
        from tvm.target import codegen

        cpu = str(codegen.llvm_get_system_cpu())
        if cpu and cpu != "generic":
            target["mcpu"] = cpu
    except Exception as exc:  # an old or odd build: fall back to generic code
        log.debug("tvm: host CPU not detectable (%s); using plain llvm", exc)
    return target


def _int_setting(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        hint = " (0 = untuned)" if name == "tune_trials" else ""
        raise ConfigError(f"tvm {name} must be an integer >= {minimum}{hint}; got {value!r}")
    return value


def check_rpc(rpc: Any) -> dict[str, Any] | None:
    """The ``rpc`` setting validated, or ``None``. Either a server directly, ``{host, port}``
    (+ ``key`` when the server was started with ``--key``), or a tracker, ``{tracker_host,
    tracker_port, key}``; both may add ``connect_timeout_s``, ``session_timeout_s`` and ``cc`` (the
    cross compiler that links the uploaded library, e.g. ``aarch64-linux-gnu-g++``)."""
    if rpc is None:
        return None
    if not isinstance(rpc, dict):
        raise ConfigError(
            f"tvm rpc must be a mapping {{host, port}} (or tracker_host, tracker_port, key); "
            f"got {rpc!r}"
        )
    unknown = sorted(set(rpc) - RPC_KEYS)
    tracker = "tracker_host" in rpc or "tracker_port" in rpc
    needed = {"tracker_host", "tracker_port", "key"} if tracker else {"host", "port"}
    missing = sorted(needed - {k for k, v in rpc.items() if v not in (None, "")})
    if unknown or missing or (tracker and ("host" in rpc or "port" in rpc)):
        raise ConfigError(
            f"tvm rpc settings: unknown {unknown or 'none'}, missing {missing or 'none'}; give "
            "host and port of an rpc_server (+ key), or tracker_host, tracker_port and key "
            f"(not both); allowed: {sorted(RPC_KEYS)}"
        )
    port_key = "tracker_port" if tracker else "port"
    port = rpc[port_key]
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError(f"tvm rpc {port_key} must be an integer 1..65535; got {port!r}")
    if tracker and (not isinstance(rpc["key"], str) or not rpc["key"]):
        raise ConfigError(f"tvm rpc key must be a non-empty string; got {rpc['key']!r}")
    return {**rpc, "key": str(rpc.get("key") or "")}


def rpc_address(rpc: dict[str, Any]) -> tuple[str, int, str]:
    """``(host, port, what)``: where to connect, and what listens there (for messages)."""
    if "tracker_host" in rpc:
        return rpc["tracker_host"], rpc["tracker_port"], "RPC tracker"
    return rpc["host"], rpc["port"], "RPC server"


def _session_key(rpc: dict[str, Any]) -> tuple[str, int, str]:
    host, port, _ = rpc_address(rpc)
    return host, port, rpc["key"]


def _session_alive(rpc: dict[str, Any]) -> bool:
    """Whether this process holds a working session to ``rpc`` (then the server, which serves
    one session at a time, is busy with us: a new connection would only queue)."""
    session = _SESSIONS.get(_session_key(rpc))
    if session is None:
        return False
    try:
        session.get_function("runtime.config_threadpool")
    except Exception:  # the device went away: forget the session
        _SESSIONS.pop(_session_key(rpc), None)
        return False
    return True


def probe_rpc(rpc: dict[str, Any]) -> None:
    """A TCP connection to the server or tracker within ``connect_timeout_s`` (default 10 s):
    :class:`BackendError` saying how to start it otherwise (tvm.rpc itself would retry a refused
    connection for 60 s)."""
    host, port, what = rpc_address(rpc)
    timeout = float(rpc.get("connect_timeout_s", 10.0))
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        start = (
            f"`python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port {port}` and register the "
            f"device with key {rpc['key']!r}"
            if what == "RPC tracker"
            else f"`python -m tvm.exec.rpc_server --host 0.0.0.0 --port {port}` on the board"
        )
        busy = (
            " (a server busy with another run's session also answers no new connection)"
            if isinstance(exc, TimeoutError)
            else ""
        )
        raise BackendError(
            f"tvm: the {what} {host}:{port} is not reachable within {timeout:g} s ({exc}){busy}; "
            f"start it with {start}, or fix rpc in the device profile"
        ) from exc


# -- what prepare returns --------------------------------------------------------------------------
@dataclass
class TuningSummary:
    """What MetaSchedule did for one model: tasks found, tuned now, reused from the database."""

    tasks: int = 0
    tuned: int = 0
    reused: int = 0
    trials: int = 0
    seconds: float = 0.0
    database: str = ""


@dataclass
class TVMRunnable:
    """A compiled model on its VirtualMachine, with a bound input; call it with a numpy array."""

    vm: Any
    device: Any
    input: Any
    compile_seconds: float
    tuning: TuningSummary = field(default_factory=TuningSummary)
    session: Any = None
    remote_file: str | None = None
    workdir: str | None = None
    executable: Any = None  # what was compiled (another VM can load it)

    def __call__(self, x: np.ndarray | None = None) -> np.ndarray:
        """Outputs for ``x`` (default: the bound input); the first output if there are several."""
        import tvm

        data = self.input if x is None else tvm.runtime.tensor(np.ascontiguousarray(x), self.device)
        out = self.vm["main"](data)
        while not hasattr(out, "numpy"):  # a tuple of outputs
            out = out[0]
        return out.numpy()


# -- the backend -----------------------------------------------------------------------------------
@register_backend
class TVMBackend(Backend):
    """Apache TVM (Relax) on an llvm CPU target, locally or through an RPC tracker.

    Settings: ``target`` (dict, JSON string, tag or "llvm -mcpu=..."; default host llvm),
    ``threads`` (TVM runtime thread pool, default 1), ``frontend`` ("onnx" or "torch"),
    ``tune_trials`` (MetaSchedule trials per model, 0 = untuned), ``tuning_dir`` (the database,
    shared across runs and models: a task already in it is not tuned again), ``rpc``
    (``{host, port}`` of a device's ``tvm.exec.rpc_server``, or ``{tracker_host, tracker_port,
    key}``: modules are compiled here for ``target``, uploaded and timed on the device).
    Profiling compiles ops ahead of timing in a process pool (:mod:`.tvm_build`):
    ``compile_pool`` (default true; false compiles each op in-line), ``compile_workers``
    (default: the number of cores), ``build_cache`` (the compiled libraries' folder).
    """

    name = "tvm"
    extra = "tvm"
    RUN_MANY_WARMS_UP = True  # time_evaluator runs the model once before timing it
    settings_keys = frozenset(
        {"target", "threads", "frontend", "tune_trials", "tuning_dir", "rpc", "compile_pool",
         "compile_workers", "build_cache"}
    )  # fmt: skip

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.threads = _int_setting("threads", self.settings.get("threads", 1), 1)
        self.tune_trials = _int_setting("tune_trials", self.settings.get("tune_trials", 0), 0)
        self.frontend = str(self.settings.get("frontend", "onnx"))
        if self.frontend not in FRONTENDS:
            raise ConfigError(
                f"tvm frontend {self.frontend!r} is unknown; choose one of {FRONTENDS}"
            )
        self.rpc = check_rpc(self.settings.get("rpc"))
        self._target_spec = self.settings.get("target")
        self._target: Any = None
        from .tvm_build import PoolSettings

        PoolSettings.from_settings(self.settings)  # compile pool settings checked early

    @class_or_instance_method
    def availability(owner: Any) -> Availability:  # noqa: N805 - the instance or the class
        """TVM with LLVM here; for an instance with ``rpc``, its server or tracker reachable."""
        try:
            import tvm
        except ImportError as exc:
            return Availability(False, f"apache-tvm is not installed ({exc})", missing_library=True)
        if not tvm.runtime.enabled("llvm"):
            return Availability(
                False,
                "this TVM build has no LLVM code generator (tvm.runtime.enabled('llvm') is False); "
                "install a wheel built with LLVM: pip install apache-tvm",
            )
        rpc = getattr(owner, "rpc", None)
        if rpc is not None and not _session_alive(rpc):
            try:
                probe_rpc(rpc)
            except BackendError as exc:
                return Availability(False, str(exc).removeprefix("tvm: "))
        return Availability(True)

    # -- target ---------------------------------------------------------------------------------------
    @property
    def target(self) -> Any:
        """The ``tvm.target.Target`` (built on first use, so constructing the backend stays light)."""
        if self._target is None:
            import tvm

            spec = parse_target(self._target_spec, self.threads)
            try:
                self._target = tvm.target.Target(spec)
            except Exception as exc:  # TVM raises ValueError / TVMError with its own text
                raise ConfigError(f"tvm cannot make target {spec!r}: {exc}") from exc
        return self._target

    def tuning_database_dir(self) -> Path:
        """Where this target's MetaSchedule records live: ``tuning_dir/<kind>-<target hash>``."""
        root = self.settings.get("tuning_dir")
        base = Path(root).expanduser() if root else Path.home() / ".cache" / "ofabench" / "tvm"
        digest = hashlib.sha1(str(self.target).encode()).hexdigest()[:12]
        return base / f"{self.target.kind.name}-{digest}"

    # -- conversion --------------------------------------------------------------------------------------
    def prebuild_ops(self, ops: Sequence[Any]) -> Any:
        """Compile latency-table ops ahead of timing in a process pool, into a library cache
        (:func:`.tvm_build.prebuild_ops`; the profiler's hook): a :class:`.tvm_build.Prebuilt`,
        or ``None`` when ``compile_pool`` is off or the device is remote or tuned."""
        from .tvm_build import prebuild_ops

        return prebuild_ops(self, ops)

    def prebuild_subnets(self, space: Any, archs: Sequence[Any]) -> Any:
        """:meth:`prebuild_ops` for whole subnets of ``space`` (the calibration subnets)."""
        from .tvm_build import prebuild_subnets

        return prebuild_subnets(self, space, archs)

    def prepare(self, model: Any, input_shape: tuple[int, ...]) -> TVMRunnable:
        return self.compile(model, input_shape)

    def prepare_many(self, model: Any, input_shape: tuple[int, ...], n: int) -> list[Any]:
        """``model`` compiled once and loaded on ``n`` virtual machines (locally; a remote device
        gets ``n`` uploads of separate builds, as :meth:`prepare` makes them)."""
        if self.rpc is not None or n < 2:
            return super().prepare_many(model, input_shape, n)
        first = self.compile(model, input_shape)
        out = [first]
        try:
            for _ in range(n - 1):
                workdir = tempfile.mkdtemp(prefix="ofabench-tvm-")
                again = self._load(first.executable, workdir, tuple(input_shape), 0)
                again.tuning, again.compile_seconds = first.tuning, 0.0
                out.append(again)
        except BaseException:
            for prepared in out:
                self.close(prepared)
            raise
        return out

    def compile(self, model: Any, input_shape: tuple[int, ...], seed: int = 0) -> TVMRunnable:
        """``model`` compiled for the target and loaded on a VirtualMachine (local or remote), with
        a random input of ``input_shape`` bound for timing."""
        start = time.perf_counter()
        workdir = tempfile.mkdtemp(prefix="ofabench-tvm-")
        try:
            mod = self.import_model(model, tuple(input_shape), workdir)
            mod = self.lower(mod)
            tuning = TuningSummary()
            if self.tune_trials:
                mod, tuning = self.tune_and_apply(mod)
            executable = self._build(mod)
            runnable = self._load(executable, workdir, tuple(input_shape), seed)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        runnable.executable = executable
        runnable.tuning = tuning
        runnable.compile_seconds = time.perf_counter() - start
        log.info(
            "tvm: compiled %s for %s in %.1f s (%s)",
            tuple(input_shape),
            self.target.kind.name,
            runnable.compile_seconds,
            f"{tuning.tuned} task(s) tuned, {tuning.reused} reused"
            if self.tune_trials
            else "untuned",
        )
        return runnable

    def import_model(self, model: Any, input_shape: tuple[int, ...], workdir: str) -> Any:
        """A Relax IRModule of ``model`` (weights bound as constants) through the chosen frontend."""
        if self.frontend == "torch":
            return _import_torch(model, input_shape)
        return _import_onnx(model, input_shape, Path(workdir) / "model.onnx")

    def lower(self, mod: Any) -> Any:
        """Legalize to TIR and fuse, as MetaSchedule expects (``relax`` "zero" pipeline)."""
        import tvm
        from tvm import relax

        with self.target:
            return tvm.transform.Sequential(
                [
                    relax.transform.DecomposeOpsForInference(),
                    relax.transform.CanonicalizeBindings(),
                    relax.get_pipeline("zero"),
                ]
            )(mod)

    def _build(self, mod: Any) -> Any:
        import tvm

        try:
            return tvm.compile(mod, target=self.target)
        except Exception as exc:
            raise BackendError(f"tvm.compile failed for target {self.target}: {exc}") from exc

    def _load(
        self, executable: Any, workdir: str, shape: tuple[int, ...], seed: int
    ) -> TVMRunnable:
        import tvm
        from tvm import relax

        data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        if self.rpc is not None:
            return self._load_remote(executable, workdir, data)
        configure_local_threads(self.threads)
        device = tvm.cpu()
        vm = relax.VirtualMachine(executable, device)
        return TVMRunnable(vm, device, tvm.runtime.tensor(data, device), 0.0, workdir=workdir)

    def _load_remote(self, executable: Any, workdir: str, data: np.ndarray) -> TVMRunnable:
        """Export a shared library, upload it over the session, run it on the remote device."""
        import tvm
        from tvm import relax

        session = self.connect_remote()
        name = f"ofabench_{Path(workdir).name}.so"
        local = str(Path(workdir) / name)
        try:
            executable.export_library(local, **_export_options(self.target, self.rpc))
            session.upload(local)
            library = session.load_module(name)
        except Exception as exc:
            _SESSIONS.pop(_session_key(self.rpc), None)  # a broken session is not reused
            raise BackendError(
                f"tvm: uploading the compiled model over RPC ({self._where()}) failed: {exc}"
            ) from exc
        _config_threads(session.get_function("runtime.config_threadpool"), self.threads)
        device = session.cpu()
        vm = relax.VirtualMachine(library, device)
        tensor = tvm.runtime.tensor(data, device)
        return TVMRunnable(
            vm, device, tensor, 0.0, session=session, remote_file=name, workdir=workdir
        )

    def connect_remote(self) -> Any:
        """The RPC session: opened on first use (directly on the server, or on a device of
        ``rpc.key`` from the tracker) and shared by this process's backends for that address
        (an rpc_server serves one session at a time: a second would wait for the first); a
        clear error when nothing answers within ``connect_timeout_s`` (default 10 s)."""
        assert self.rpc is not None
        host, port, what = rpc_address(self.rpc)
        if _session_key(self.rpc) in _SESSIONS:
            return _SESSIONS[_session_key(self.rpc)]
        from tvm import rpc

        probe_rpc(self.rpc)
        key, timeout = self.rpc["key"], float(self.rpc.get("session_timeout_s", 0) or 0)
        try:
            if what == "RPC tracker":
                tracker = rpc.connect_tracker(host, port)
                session = tracker.request(key, priority=1, session_timeout=timeout)
            else:
                session = rpc.connect(host, port, key=key, session_timeout=timeout)
        except Exception as exc:
            raise BackendError(f"tvm: the {self._where()} gave no session: {exc}") from exc
        _SESSIONS[_session_key(self.rpc)] = session
        return session

    def _where(self) -> str:
        assert self.rpc is not None
        host, port, what = rpc_address(self.rpc)
        key = f", key {self.rpc['key']!r}" if self.rpc["key"] else ""
        device = f"device {self.device_name!r}: " if self.device_name else ""
        return f"{device}{what} {host}:{port}{key}"

    # -- tuning ----------------------------------------------------------------------------------------
    def tune_and_apply(self, mod: Any) -> tuple[Any, TuningSummary]:
        """Tune the tasks of ``mod`` the database does not know (``tune_trials`` trials shared
        among them), then apply the database's best schedules. A task tuned before, in any run
        and for any model, is not tuned again, even if its budget left it without a record
        (``tune_trials`` below the number of tasks); such a task keeps its default schedule."""
        from tvm import relax
        from tvm.s_tir import meta_schedule as ms

        _check_tuning_dependencies()
        work_dir = self.tuning_database_dir()
        work_dir.mkdir(parents=True, exist_ok=True)
        database = ms.database.JSONDatabase(work_dir=str(work_dir))
        tasks = ms.relax_integration.extract_tasks(mod, self.target)
        todo = [t for t in tasks if not database.has_workload(t.dispatched[0])]
        summary = TuningSummary(
            len(tasks), len(todo), len(tasks) - len(todo), 0, 0.0, str(work_dir)
        )
        if todo:
            start = time.perf_counter()
            self._tune_tasks(ms, todo, database, work_dir)
            summary.trials = self.tune_trials
            summary.seconds = time.perf_counter() - start
            log.info(
                "tvm: tuned %d task(s) with %d trials in %.0f s",
                len(todo),
                self.tune_trials,
                summary.seconds,
            )
        with self.target, database:
            mod = relax.transform.MetaScheduleApplyDatabase()(mod)
        return mod, summary

    def _tune_tasks(self, ms: Any, tasks: list[Any], database: Any, work_dir: Path) -> None:
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            tasks,
            str(work_dir),
            strategy=search_strategy(ms, self.tune_trials, len(tasks)),
            num_threads=self.threads,
        )
        builder, runner = self._tuning_builder_and_runner(ms)
        try:
            ms.tune.tune_tasks(
                tasks=contexts,
                task_weights=weights,
                work_dir=str(work_dir),
                max_trials_global=self.tune_trials,
                num_trials_per_iter=trials_per_iteration(self.tune_trials, len(contexts)),
                builder=builder,
                runner=runner,
                database=database,
            )
        except Exception as exc:
            raise BackendError(
                f"tvm: MetaSchedule tuning failed (records in {work_dir}): {exc}"
            ) from exc

    def _tuning_builder_and_runner(self, ms: Any) -> tuple[Any, Any]:
        """Locally: build and time candidates in this process (MetaSchedule's LocalBuilder starts
        a fresh worker per batch, which spends 35-120 s importing TVM here). Remotely: build in
        workers (cross-compiling) and time on the device through the tracker."""
        if self.rpc is None:
            return in_process_builder(), in_process_runner()
        if "tracker_host" not in self.rpc:
            raise ConfigError(
                "tvm: MetaSchedule tunes remote devices through an RPC tracker; give rpc "
                "tracker_host, tracker_port and key (or set tune_trials: 0)"
            )
        builder = ms.builder.LocalBuilder(
            timeout_sec=BUILDER_TIMEOUT_S, initializer=warm_builder_worker
        )
        config = ms.runner.RPCConfig(
            tracker_host=self.rpc["tracker_host"],
            tracker_port=self.rpc["tracker_port"],
            tracker_key=self.rpc["key"],
            session_timeout_sec=int(self.rpc.get("session_timeout_s", 60) or 60),
        )
        return builder, ms.runner.RPCRunner(rpc_config=config)

    # -- timing ------------------------------------------------------------------------------------------
    def run_many(self, prepared: TVMRunnable, n: int) -> list[float]:
        """``n`` samples in seconds: ``time_evaluator(number=1, repeat=n)``, timed in C++. The
        evaluator runs the model once untimed before them (``RUN_MANY_WARMS_UP``)."""
        evaluator = prepared.vm.time_evaluator("main", prepared.device, number=1, repeat=n)
        try:
            return [float(s) for s in evaluator(prepared.input).results]
        except Exception as exc:
            raise BackendError(f"tvm: running the model failed: {exc}") from exc

    def run_once(self, prepared: TVMRunnable) -> float:
        return self.run_many(prepared, 1)[0]

    def close(self, prepared: TVMRunnable) -> None:
        if prepared.session is not None and prepared.remote_file:
            try:
                prepared.session.remove(prepared.remote_file)
            except Exception as exc:  # the device may have gone; nothing left to free locally
                log.warning(
                    "tvm: could not remove %s on the remote device: %s", prepared.remote_file, exc
                )
        if prepared.workdir:
            shutil.rmtree(prepared.workdir, ignore_errors=True)

    def _remote_name(self) -> str:
        """``rpc:<key>`` through a tracker, ``rpc:<host>:<port>`` for a server."""
        assert self.rpc is not None
        if "tracker_host" in self.rpc:
            return f"rpc:{self.rpc['key']}"
        return f"rpc:{self.rpc['host']}:{self.rpc['port']}"

    def info(self) -> dict[str, Any]:
        from ..provenance import cpu_model, library_versions

        versions = library_versions("apache-tvm", "apache-tvm-ffi")
        return {
            "backend": self.name,
            "tvm": versions.get("apache-tvm", _tvm_version()),
            "tvm_ffi": versions.get("apache-tvm-ffi", ""),
            "target": str(self.target),
            "tuned": self.tune_trials > 0,
            "tune_trials": self.tune_trials,
            "threads": self.threads,
            "frontend": self.frontend,
            "timing": "VirtualMachine.time_evaluator, number=1 per sample",
            "device": self._remote_name() if self.rpc else cpu_model(),
        }


# -- helpers -------------------------------------------------------------------------------------------
def _import_onnx(model: Any, input_shape: tuple[int, ...], path: Path) -> Any:
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    from ..export import export_onnx

    export_onnx(model, input_shape, path, check=False)
    try:
        return from_onnx(onnx.load(str(path)), shape_dict={"input": list(input_shape)})
    except Exception as exc:
        raise BackendError(f"tvm: the Relax ONNX frontend cannot import the model: {exc}") from exc


def _import_torch(model: Any, input_shape: tuple[int, ...]) -> Any:
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    example = torch.randn(*input_shape)
    try:
        with torch.no_grad():
            program = torch.export.export(model.eval(), (example,))
        return from_exported_program(program, unwrap_unit_return_tuple=True)
    except Exception as exc:
        raise BackendError(f"tvm: torch.export / the Relax torch frontend failed: {exc}") from exc


def _config_threads(config_threadpool: Any, threads: int) -> None:
    """Size TVM's thread pool (mode 1: big cores first; all cores on a homogeneous CPU)."""
    config_threadpool(1, threads)


def configure_local_threads(threads: int) -> None:
    """Size this process's TVM thread pool to ``threads``.

    TVM caps its pool at ``TVM_NUM_THREADS`` (else half the logical CPUs) when the pool is first
    created, so the variable is set (if unset) to the CPU count before that: later backends can
    then ask for any count up to it."""
    import tvm

    os.environ.setdefault("TVM_NUM_THREADS", str(max(threads, os.cpu_count() or 1)))
    _config_threads(tvm.get_global_func("runtime.config_threadpool"), threads)
    actual = int(tvm.runtime.num_threads())
    if actual != threads:
        log.warning(
            "tvm: asked for %d threads, the runtime uses %d (TVM_NUM_THREADS=%s)",
            threads,
            actual,
            os.environ.get("TVM_NUM_THREADS"),
        )


def _export_options(target: Any, rpc: dict[str, Any] | None = None) -> dict[str, Any]:
    """Cross-compile options for ``export_library``: ``rpc.cc`` when given, else the NDK
    compiler for Android targets."""
    if rpc and rpc.get("cc"):
        from tvm.contrib import cc

        return {"fcompile": cc.cross_compiler(str(rpc["cc"]))}
    triple = str(target.attrs.get("mtriple", "")) if hasattr(target, "attrs") else ""
    if "android" in triple:
        from tvm.contrib import ndk

        return {"fcompile": ndk.create_shared}
    return {}


def in_process_builder() -> Any:
    """A MetaSchedule builder that compiles candidates in this process with MetaSchedule's own
    build and export functions (no worker start-up; no time-out either)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build, default_export

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs: list[Any]) -> list[Any]:
            results = []
            for item in build_inputs:
                try:
                    artifact = default_export(default_build(item.mod, item.target, None))
                    results.append(BuilderResult(artifact, None))
                except Exception as exc:  # a candidate that fails to build is only a bad trial
                    results.append(BuilderResult(None, f"in-process build failed: {exc}"))
            return results

    return InProcessBuilder()


def in_process_runner() -> Any:
    """A MetaSchedule runner that times candidates in this process (its thread pool, as
    configured for measuring), with MetaSchedule's default evaluator settings."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, PyRunner, local_runner

    @derived_object
    class InProcessRunner(PyRunner):
        def __init__(self) -> None:
            super().__init__()
            self.config = EvaluatorConfig._normalized(None)

        def run(self, runner_inputs: list[Any]) -> list[Any]:
            return [self._run_one(item) for item in runner_inputs]

        def _run_one(self, item: Any) -> Any:
            args = tuple(info.as_json() for info in item.args_info)
            try:
                costs = local_runner._worker_func(
                    None, None, None, self.config, 1, str(item.artifact_path),
                    str(item.device_type), args,
                )  # fmt: skip
                return local_runner.LocalRunnerFuture(res=costs, error_message=None)
            except Exception as exc:  # a candidate that fails to run is only a bad trial
                return local_runner.LocalRunnerFuture(res=None, error_message=str(exc))

    return InProcessRunner()


def search_strategy(ms: Any, trials: int, tasks: int) -> Any:
    """MetaSchedule's evolutionary search, its population scaled down for small budgets (the
    default 512 candidates per round cost ~40 s here to sample and evolve, for a batch of a few
    trials); 512 from 64 trials per task up."""
    per_task = trials_per_iteration(trials, tasks)
    population = max(64, min(512, 8 * per_task))
    return ms.search_strategy.EvolutionarySearch(
        population_size=population, init_min_unmeasured=min(50, population // 2)
    )


def trials_per_iteration(trials: int, tasks: int) -> int:
    """MetaSchedule's batch size: the budget split over the tasks (so that each gets a first
    batch; the gradient scheduler starts round-robin), at most its default of 64."""
    return max(1, min(64, math.ceil(trials / max(tasks, 1))))


def warm_builder_worker() -> None:
    """A MetaSchedule builder worker's initializer (not timed, unlike each build): the ~34 s
    import of TVM's tensor intrinsics would otherwise count against the first build's time-out."""
    import tvm.s_tir.tensor_intrin  # noqa: F401


def _check_tuning_dependencies() -> None:
    from ..provenance import library_versions

    missing = [m for m in ("psutil", "cloudpickle", "xgboost") if not _importable(m)]
    if missing:
        raise BackendError(
            f"tvm: MetaSchedule tuning needs {', '.join(missing)}; "
            "pip install psutil cloudpickle xgboost-cpu (or set tune_trials: 0)"
        )
    ffi = library_versions("apache-tvm-ffi").get("apache-tvm-ffi", "")
    if ffi in BAD_FFI_FOR_TUNING:
        raise BackendError(
            f"tvm: apache-tvm-ffi {ffi} crashes (segfault in tvm.ir.save_json) while MetaSchedule "
            "tunes; pip install 'apache-tvm-ffi==0.1.14.post1' (or set tune_trials: 0)"
        )


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _tvm_version() -> str:
    try:
        import tvm

        return str(tvm.__version__)
    except ImportError:
        return ""

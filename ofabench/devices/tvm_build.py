"""Compile TVM models ahead of timing, in a pool of worker processes, into a library cache.

Compiling an untuned block (ONNX export, Relax import, ``tvm.compile``) costs about as much as
timing it, and in-line it runs one op at a time on one core. For a profile, :func:`prebuild_ops`
(and :func:`prebuild_subnets` for the calibration subnets) compiles every model of a batch
first, in a ``ProcessPoolExecutor`` (spawn; ``compile_workers``
workers, default the number of cores; each worker single-threaded: ``TVM_NUM_THREADS=1``), each
op exported to a shared library (``export_library``); then, with the pool finished and nothing
else of ours running, the profiler times each library loaded with ``tvm.runtime.load_module``
exactly as the in-line path times a freshly compiled module (same VirtualMachine, same input,
same :meth:`Backend.measure_prepared` rounds).

**Cache.** ``<build_cache>/<target kind>-<hash>/<hash of the op>.so``: the folder is keyed by
the target, the TVM (and tvm-ffi) version and the frontend (see ``identity.json`` in it), the file
by the model (the op's key, or the subnet's space and arch) and weight seed. A library is written under a temporary name and renamed when
complete, so a killed profile resumes without compiling again what it had compiled. Default
``~/.cache/ofabench/tvm-lib``; the device-profile setting ``build_cache`` moves it.

**Failures** stay per op: an op that fails to compile is reported with its reason
(:attr:`Prebuilt.failures`) and the others go on.

Used by default when profiling on a local, untuned TVM device; ``compile_pool: false`` in the
device profile compiles in-line as before (so does a remote or tuned device).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, ConfigError
from .base import Measurement, MeasureSettings

log = logging.getLogger("ofabench")

CACHE_FORMAT = 1  # bump when what a cached library holds changes
DEFAULT_CACHE = Path("~/.cache/ofabench/tvm-lib")
POOL_SETTINGS = ("compile_pool", "compile_workers", "build_cache")
REASON_CHARS = 300


# -- settings ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoolSettings:
    """``compile_pool`` (default on), ``compile_workers`` (default: the number of cores),
    ``build_cache`` (the library cache's root)."""

    enabled: bool = True
    workers: int | None = None
    cache_root: Path = DEFAULT_CACHE

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> PoolSettings:
        enabled = settings.get("compile_pool", True)
        workers = settings.get("compile_workers")
        root = settings.get("build_cache") or DEFAULT_CACHE
        if not isinstance(enabled, bool):
            raise ConfigError(f"tvm compile_pool must be true or false; got {enabled!r}")
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise ConfigError(f"tvm compile_workers must be an integer >= 1; got {workers!r}")
        if not isinstance(root, (str, Path)):
            raise ConfigError(f"tvm build_cache must be a folder path; got {root!r}")
        return cls(enabled, workers, Path(root).expanduser())

    def worker_count(self, tasks: int) -> int:
        return max(1, min(tasks, self.workers or os.cpu_count() or 1))


# -- the cache --------------------------------------------------------------------------------------
def cache_identity(backend: Any) -> dict[str, Any]:
    """What a cached library depends on besides the op: target, TVM versions, frontend."""
    from ..provenance import library_versions

    versions = library_versions("apache-tvm", "apache-tvm-ffi")
    return {
        "format": CACHE_FORMAT,
        "target": str(backend.target),
        "tvm": versions.get("apache-tvm", ""),
        "tvm_ffi": versions.get("apache-tvm-ffi", ""),
        "frontend": backend.frontend,
    }


def library_cache_dir(backend: Any) -> Path:
    """``<build_cache>/<target kind>-<hash of the cache identity>``."""
    identity = cache_identity(backend)
    digest = _digest(identity)[:12]
    root = PoolSettings.from_settings(backend.settings).cache_root
    return root / f"{backend.target.kind.name}-{digest}"


def library_path(cache_dir: Path, model: dict[str, Any], seed: int = 0) -> Path:
    """Where the library of ``model`` (:func:`op_model` or :func:`subnet_model`; weights from
    ``seed``) lives in ``cache_dir``."""
    return cache_dir / f"{_digest({**model, 'seed': seed})[:24]}.so"


def op_model(key: str, family: str = "mbv3") -> dict[str, Any]:
    """What a worker builds for a latency-table op: ``{"op": key}``, plus the space family when
    it is not MobileNetV3 (a key's modules depend on it; MobileNetV3 digests stay as they were)."""
    return {"op": key} if family == "mbv3" else {"op": key, "family": family}


def subnet_model(space: Any, arch: Any) -> dict[str, Any]:
    """What a worker builds for a whole subnet: the space's and the arch's dicts."""
    return {"space": space.to_dict(), "arch": arch.to_dict()}


def _digest(data: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _prepare_cache_dir(backend: Any) -> Path:
    cache_dir = library_cache_dir(backend)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        identity = cache_dir / "identity.json"
        if not identity.exists():
            identity.write_text(json.dumps(cache_identity(backend), indent=1) + "\n")
    except OSError as exc:
        raise BackendError(
            f"tvm: cannot use the library cache {cache_dir} ({exc}); set build_cache in the "
            "device profile to a writable folder, or compile_pool: false"
        ) from exc
    return cache_dir


# -- compiling (in the workers) -----------------------------------------------------------------------
@dataclass(frozen=True)
class BuildTask:
    """One library to compile: its name (what results are keyed by), the model (what the worker
    builds), where to write it, the backend settings (target, frontend) and the weight seed."""

    key: str
    model: dict[str, Any]
    path: str
    settings: dict[str, Any]
    seed: int = 0


def init_worker() -> None:
    """A compile worker runs single-threaded (set before TVM or torch make their thread pools)."""
    os.environ["TVM_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def compile_library(task: BuildTask) -> tuple[float | None, str]:
    """Build, compile and export one op's library (run in a worker): ``(seconds, "")``, or
    ``(None, reason)`` when it fails (the reason as one line: exceptions of TVM's FFI do not
    always survive pickling)."""
    start = time.perf_counter()
    try:
        _compile_to(task)
    except Exception as exc:  # any failure is this op's alone: reported, the others go on
        return None, one_line(exc)
    return time.perf_counter() - start, ""


def _compile_to(task: BuildTask) -> None:
    import tvm

    from .tvm_backend import TVMBackend

    module, shape = build_model(task.model, task.seed)
    backend = TVMBackend(**task.settings)
    final = Path(task.path)
    partial = final.with_name(f"{final.stem}.part{os.getpid()}.so")
    with tempfile.TemporaryDirectory(prefix="ofabench-tvm-build-") as workdir:
        mod = backend.lower(backend.import_model(module, tuple(shape), workdir))
        executable = tvm.compile(mod, target=backend.target)
        try:
            executable.export_library(str(partial))
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)


def build_model(model: dict[str, Any], seed: int) -> tuple[Any, tuple[int, ...]]:
    """The PyTorch module of :func:`op_model` or :func:`subnet_model`, and its input shape."""
    from ..latency.ops import build_op_module, build_subnet_module
    from ..latency.table import OpSpec
    from ..space import ArchConfig, SpaceSpec

    if "op" in model:
        return build_op_module(OpSpec.parse(model["op"], model.get("family", "mbv3")), seed)
    space = SpaceSpec.from_dict(model["space"])
    return build_subnet_module(space, ArchConfig.from_dict(model["arch"]), seed)


def one_line(exc: BaseException) -> str:
    """``Type: first meaningful line`` of an exception, at most ``REASON_CHARS`` characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = next((line for line in lines if not line.startswith(("Traceback", "File "))), "")
    return f"{type(exc).__name__}: {text}"[:REASON_CHARS]


# -- the pool (in the parent) ---------------------------------------------------------------------------
def run_pool(tasks: Sequence[BuildTask], workers: int) -> dict[str, tuple[float | None, str]]:
    """Compile ``tasks`` in a spawned process pool of ``workers``; returns key -> result of
    :func:`compile_library`. A worker that dies fails the ops it left unfinished, with that
    reason (what was compiled before stays in the cache)."""
    context = multiprocessing.get_context("spawn")
    results: dict[str, tuple[float | None, str]] = {}
    with ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker) as pool:
        futures: dict[Future[tuple[float | None, str]], str] = {
            pool.submit(compile_library, task): task.key for task in tasks
        }
        for future in as_completed(futures):
            results[futures[future]] = _result(future)
    return results


def _result(future: Future[tuple[float | None, str]]) -> tuple[float | None, str]:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        return None, f"the compile worker died ({one_line(exc)})"
    except Exception as exc:  # pickling or submission errors: this op's failure
        return None, one_line(exc)


# -- what the profiler uses ---------------------------------------------------------------------------
@dataclass
class Prebuilt:
    """Libraries compiled ahead (name -> path and input shape: an op's key, a subnet's JSON), the
    models that failed (name -> reason) and what the compile stage cost; :meth:`measure` times
    one model from its library."""

    backend: Any
    what: str = "ops"
    libraries: dict[str, tuple[Path, tuple[int, ...]]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    compiled: int = 0
    cached: int = 0
    workers: int = 0
    wall_s: float = 0.0
    compile_s: float = 0.0
    cache: str = ""

    def __contains__(self, name: object) -> bool:
        return name in self.libraries

    def summary(self) -> dict[str, Any]:
        """For provenance: counts, seconds, the cache folder and each failure's reason."""
        return {
            "method": "process pool, then timing (ofabench.devices.tvm_build)",
            "models": self.what,
            "compiled": self.compiled,
            "cached": self.cached,
            "failed": dict(self.failures),
            "workers": self.workers,
            "wall_s": round(self.wall_s, 2),
            "compile_s": round(self.compile_s, 2),
            "cache": self.cache,
        }

    def measure(self, name: str, settings: MeasureSettings) -> Measurement:
        """Time ``name`` from its library, as :meth:`Backend.measure` times a compiled model."""
        path, shape = self.libraries[name]
        runnable = load_library(self.backend, path, shape)
        try:
            return self.backend.measure_prepared(runnable, settings)
        finally:
            self.backend.close(runnable)


def load_library(backend: Any, path: Path, input_shape: tuple[int, ...], seed: int = 0) -> Any:
    """A :class:`TVMRunnable` from a compiled library: loaded with ``tvm.runtime.load_module``
    onto a local VirtualMachine with the same random input the in-line path binds."""
    import tvm
    from tvm import relax

    from .tvm_backend import TVMRunnable, configure_local_threads

    try:
        library = tvm.runtime.load_module(str(path))
    except Exception as exc:
        raise BackendError(
            f"tvm: cannot load the compiled library {path}: {one_line(exc)}"
        ) from exc
    configure_local_threads(backend.threads)
    device = tvm.cpu()
    data = np.random.default_rng(seed).standard_normal(input_shape).astype(np.float32)
    vm = relax.VirtualMachine(library, device)
    return TVMRunnable(vm, device, tvm.runtime.tensor(data, device), 0.0)


def pool_applies(backend: Any) -> bool:
    """Whether profiling on ``backend`` compiles in the pool: on, local and untuned."""
    settings = PoolSettings.from_settings(backend.settings)
    return settings.enabled and backend.rpc is None and backend.tune_trials == 0


def prebuild_ops(backend: Any, ops: Sequence[Any], seed: int = 0) -> Prebuilt | None:
    """Compile ``ops`` (each an :class:`~ofabench.latency.table.OpSpec`, named by its key) into
    the library cache in a process pool, skipping those already there; ``None`` when the pool
    does not apply (see :func:`pool_applies`): the caller compiles in-line."""
    from ..latency.ops import op_input_shape

    models = {op.key: (op_model(op.key, op.family), op_input_shape(op)) for op in ops}
    return prebuild(backend, models, "ops", seed)


def prebuild_subnets(
    backend: Any, space: Any, archs: Sequence[Any], seed: int = 0
) -> Prebuilt | None:
    """:func:`prebuild_ops` for whole subnets of ``space`` (named by ``arch.to_json()``)."""
    models = {
        arch.to_json(): (subnet_model(space, arch), (1, space.in_channels, arch.r, arch.r))
        for arch in archs
    }
    return prebuild(backend, models, "subnets", seed)


def prebuild(
    backend: Any,
    models: dict[str, tuple[dict[str, Any], tuple[int, ...]]],
    what: str = "models",
    seed: int = 0,
) -> Prebuilt | None:
    """Compile ``models`` (name -> (model, input shape)) into the cache in a process pool, those
    not already there; ``None`` when the pool does not apply (see :func:`pool_applies`)."""
    if not pool_applies(backend):
        return None
    start = time.perf_counter()
    cache_dir = _prepare_cache_dir(backend)
    paths = {name: library_path(cache_dir, model, seed) for name, (model, _) in models.items()}
    todo = [
        BuildTask(name, models[name][0], str(path), dict(backend.settings), seed)
        for name, path in paths.items()
        if not path.is_file()
    ]
    built = Prebuilt(backend, what, cached=len(paths) - len(todo), cache=str(cache_dir))
    if todo:
        built.workers = PoolSettings.from_settings(backend.settings).worker_count(len(todo))
        log.info("tvm: compiling %d %s in %d worker processes", len(todo), what, built.workers)
        _collect(built, run_pool(todo, built.workers))
    built.libraries = {
        name: (path, models[name][1])
        for name, path in paths.items()
        if name not in built.failures and path.is_file()
    }
    built.wall_s = time.perf_counter() - start
    log.info(
        "tvm: %d %s compiled (%.0f s in %d workers), %d from the cache %s, %d failed",
        built.compiled, what, built.wall_s, built.workers, built.cached, cache_dir,
        len(built.failures),
    )  # fmt: skip
    return built


def _collect(built: Prebuilt, results: dict[str, tuple[float | None, str]]) -> None:
    for name, (seconds, reason) in results.items():
        if seconds is None:
            built.failures[name] = reason
            log.warning("tvm: %s failed to compile: %s", name, reason)
        else:
            built.compiled += 1
            built.compile_s += seconds

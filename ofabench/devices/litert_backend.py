"""LiteRT (TFLite): models written by :mod:`ofabench.devices.tflite_writer`, run by LiteRT's
Python interpreter on this CPU, XNNPACK by default.

Settings (device profile ``settings:``):

- ``threads``: the interpreter's thread count (default 1);
- ``use_xnnpack``: ``true`` (default) applies LiteRT's default XNNPACK delegate; ``false`` runs
  LiteRT's optimised builtin kernels without any default delegate
  (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``, what ``benchmark_model
  --use_xnnpack=false`` measures). The reference kernels (``BUILTIN_REF``) are 10-70x slower and
  say nothing about a deployment, so they are not offered.

``model`` may be a PyTorch module (converted on the fly), the path of an existing ``.tflite``
file, or the flatbuffer's bytes. ``input_shape`` is PyTorch's (NCHW); the TFLite model takes NHWC,
and a seeded random input of the model's declared shape is fed.

Measured here (ai-edge-litert 2.3.0, x86-64 AVX2, 1 thread): XNNPACK runs 3x3 and 5x5 depthwise
convolutions fast but 7x7 ones (more than 25 taps) about 10-20x slower than LiteRT's builtin
kernel (a 7x7 depthwise at 53x53x72: ~10-20 ms with XNNPACK, ~1.6 ms without), so kernel-7 blocks
at high resolution dominate whole networks on this backend. That is what this runtime does on
this CPU; a table measured with ``use_xnnpack: false`` shows the builtin kernels instead.

``ai-edge-litert`` is the supported runtime; ``tflite_runtime`` is accepted as a fallback for the
interpreter (it cannot create an interpreter under numpy 2, and it does not ship the schema the
writer needs, so with it only ``.tflite`` files and bytes can be measured).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import BackendError, ConfigError
from .base import Availability, Backend
from .registry import register_backend

log = logging.getLogger("ofabench")

INTERPRETER_MODULES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
)


def interpreter_module() -> tuple[ModuleType, str]:
    """LiteRT's interpreter module and its distribution name (``tflite_runtime`` as fallback)."""
    import importlib

    errors = []
    for module, dist in INTERPRETER_MODULES:
        try:
            return importlib.import_module(module), dist
        except ImportError as exc:
            errors.append(f"{module}: {exc}")
    raise ImportError("; ".join(errors))


@dataclass
class _Prepared:
    """An allocated interpreter with its input set."""

    interpreter: Any


@register_backend
class LiteRTBackend(Backend):
    """TFLite models on LiteRT's CPU interpreter (XNNPACK unless ``use_xnnpack`` is false)."""

    name = "litert"
    extra = "tflite"
    settings_keys = frozenset({"threads", "use_xnnpack"})

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.threads = self.settings.get("threads", 1)
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(
                f"litert setting 'threads' must be an integer >= 1, got {self.threads!r}"
            )
        self.use_xnnpack = self.settings.get("use_xnnpack", True)
        if not isinstance(self.use_xnnpack, bool):
            raise ConfigError(
                f"litert setting 'use_xnnpack' must be true or false, got {self.use_xnnpack!r}"
            )

    @classmethod
    def availability(cls) -> Availability:
        try:
            module, _ = interpreter_module()
        except ImportError as exc:
            return Availability(
                False, f"no LiteRT interpreter can be imported ({exc})", missing_library=True
            )
        if not hasattr(module, "Interpreter"):
            return Availability(False, f"{module.__name__} has no Interpreter")
        return Availability(True)

    # -- conversion and one run ----------------------------------------------------------------
    def prepare(self, model: Any, input_shape: tuple[int, ...]) -> _Prepared:
        """Convert ``model`` (or read a ``.tflite`` path, or take bytes), build an interpreter and
        set a fixed random input."""
        content = tflite_content(model, input_shape)
        interpreter = self.interpreter(content)
        set_random_input(interpreter, input_shape)
        return _Prepared(interpreter)

    def run_once(self, prepared: _Prepared) -> float:
        invoke = prepared.interpreter.invoke
        start = time.perf_counter()
        invoke()
        return time.perf_counter() - start

    def info(self) -> dict[str, Any]:
        from ..provenance import cpu_model

        _, dist = interpreter_module()
        return {
            "backend": self.name,
            "runtime": dist,
            dist: _version(dist),
            "threads": self.threads,
            "xnnpack": self.use_xnnpack,
            "device_name": cpu_model(),
        }

    def interpreter(self, content: bytes) -> Any:
        """An interpreter of ``content`` with this backend's threads and op resolver, allocated."""
        module, _ = interpreter_module()
        kwargs: dict[str, Any] = {"model_content": content, "num_threads": self.threads}
        if not self.use_xnnpack:
            resolver = getattr(module, "OpResolverType", None)
            if resolver is None:
                raise BackendError(
                    f"{module.__name__} cannot disable XNNPACK (its Interpreter has no "
                    "experimental_op_resolver_type); install ai-edge-litert or set use_xnnpack: true"
                )
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            interpreter = module.Interpreter(**kwargs)
            interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"LiteRT cannot load the model: {exc}") from exc
        return interpreter


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def tflite_content(model: Any, input_shape: tuple[int, ...]) -> bytes:
    """The flatbuffer of ``model``: bytes as given, a ``.tflite`` file's contents, or a PyTorch
    module written by :func:`~ofabench.devices.tflite_writer.module_to_tflite`."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise BackendError(f"TFLite model {path} does not exist")
        return path.read_bytes()
    from .tflite_writer import module_to_tflite

    return module_to_tflite(model, tuple(input_shape))


def set_random_input(interpreter: Any, input_shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Feed a seeded standard-normal input; ``input_shape`` (NCHW) must match the model's input
    in NHWC (or as given). Returns the array fed, in the model's layout."""
    from .tflite_writer import tflite_input_shape

    inputs = interpreter.get_input_details()
    if len(inputs) != 1:
        raise BackendError(f"the TFLite model has {len(inputs)} inputs; ofabench feeds exactly one")
    declared = tuple(int(s) for s in inputs[0]["shape"])
    if declared not in (tflite_input_shape(input_shape), tuple(input_shape)):
        raise BackendError(
            f"the TFLite model's input has shape {list(declared)} (NHWC), but input_shape is "
            f"{list(input_shape)} (NCHW)"
        )
    data = np.random.default_rng(seed).standard_normal(declared).astype(inputs[0]["dtype"])
    interpreter.set_tensor(inputs[0]["index"], data)
    return data


def run_tflite(content: bytes, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Run a written model once on ``x`` given in PyTorch's layout (NCHW); 4-D outputs come back
    in NCHW too. For numerical checks against PyTorch."""
    backend = LiteRTBackend(threads=threads)
    backend.check_available()
    interpreter = backend.interpreter(content)
    feed = np.ascontiguousarray(x.transpose(0, 2, 3, 1) if x.ndim == 4 else x, dtype=np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], feed)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return out.transpose(0, 3, 1, 2) if out.ndim == 4 else out

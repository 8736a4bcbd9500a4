"""ONNX Runtime: the model exported to ONNX, run by an InferenceSession with fixed threads.

Settings (device profile ``settings:``):

- ``providers``: execution providers in priority order (default ``["CPUExecutionProvider"]``);
- ``intra_op_threads`` / ``inter_op_threads``: thread pools (default 1 each; 0 = ORT's choice);
- ``graph_optimization_level``: ``disable``, ``basic``, ``extended`` or ``all`` (default).

The session runs in sequential execution mode. With ``all``, ORT's CPU provider converts
convolutions to its blocked NCHWc layout and inserts ``ReorderInput``/``ReorderOutput`` nodes at the
edges of each NCHWc region. An MBConv block exported alone carries a reorder in and out (three of
each with SE, whose mean and gate run in NCHW) while a chain of non-SE blocks inside a network stays
in NCHWc: a sum of block latencies differs systematically from the network's end-to-end latency.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, ConfigError
from .base import Availability, Backend, wall_clock
from .registry import register_backend

log = logging.getLogger("ofabench")

GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


@dataclass
class _Prepared:
    """A session with its fixed input, and the temporary folder of an exported model, if any."""

    session: Any
    feed: dict[str, np.ndarray]
    tmp_dir: Path | None


@register_backend
class OnnxRuntimeBackend(Backend):
    """ONNX Runtime inference sessions (CPUExecutionProvider by default)."""

    name = "onnxruntime"
    extra = "onnx"
    settings_keys = frozenset(
        {"providers", "intra_op_threads", "inter_op_threads", "graph_optimization_level"}
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.providers = _parse_providers(self.settings.get("providers", list(DEFAULT_PROVIDERS)))
        self.intra_op_threads = _parse_threads("intra_op_threads", settings.get("intra_op_threads"))
        self.inter_op_threads = _parse_threads("inter_op_threads", settings.get("inter_op_threads"))
        self.graph_level = self.settings.get("graph_optimization_level", "all")
        if self.graph_level not in GRAPH_LEVELS:
            raise ConfigError(
                f"onnxruntime setting 'graph_optimization_level' must be one of "
                f"{list(GRAPH_LEVELS)}, got {self.graph_level!r}"
            )
        self._session_providers: list[str] = []

    @classmethod
    def availability(cls) -> Availability:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return Availability(
                False, f"onnxruntime cannot be imported ({exc})", missing_library=True
            )
        try:
            import onnx  # noqa: F401 - the exporter writes its files through it
        except ImportError as exc:
            return Availability(False, f"onnx cannot be imported ({exc})", missing_library=True)
        return Availability(True)

    # -- conversion and one run ----------------------------------------------------------------
    def prepare(self, model: Any, input_shape: tuple[int, ...]) -> _Prepared:
        """Export ``model`` to a temporary ONNX file (or take the path of an existing ``.onnx``)
        and open a session on it."""
        tmp_dir = None
        if isinstance(model, (str, Path)):
            path = Path(model)
            if not path.is_file():
                raise BackendError(f"ONNX model {path} does not exist")
        else:
            from ..export import export_onnx

            tmp_dir = Path(tempfile.mkdtemp(prefix="ofabench-ort-"))
            path = tmp_dir / "model.onnx"
            try:
                export_onnx(model, input_shape, path, check=False)
            except BaseException:
                shutil.rmtree(tmp_dir, ignore_errors=True)
                raise
        try:
            session = self._session(path)
            feed = _fixed_input(session, input_shape)
        except BaseException:
            if tmp_dir is not None:
                shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        return _Prepared(session, feed, tmp_dir)

    def run_once(self, prepared: _Prepared) -> float:
        return wall_clock(prepared.session.run, None, prepared.feed)

    def close(self, prepared: _Prepared) -> None:
        if prepared.tmp_dir is not None:
            shutil.rmtree(prepared.tmp_dir, ignore_errors=True)

    def info(self) -> dict[str, Any]:
        import onnxruntime as ort

        from ..provenance import cpu_model

        return {
            "backend": self.name,
            "onnxruntime": ort.__version__,
            "providers": self._session_providers or list(self.providers),
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "graph_optimization_level": self.graph_level,
            "device_name": cpu_model(),
        }

    def _session(self, path: Path) -> Any:
        import onnxruntime as ort

        available = ort.get_available_providers()
        unknown = [p for p in self.providers if p not in available]
        if unknown:
            raise BackendError(
                f"onnxruntime execution provider(s) {unknown} are not available here; "
                f"available: {available}"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, GRAPH_LEVELS[self.graph_level]
        )
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=list(self.providers))
        self._session_providers = session.get_providers()
        return session


def _fixed_input(session: Any, input_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """A seeded random input for the session's single input, checked against its static shape."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise BackendError(f"the ONNX model has {len(inputs)} inputs; ofabench feeds exactly one")
    declared = inputs[0].shape
    fixed = [d if isinstance(d, int) else None for d in declared]
    if len(fixed) != len(input_shape) or any(
        d is not None and d != s for d, s in zip(fixed, input_shape)
    ):
        raise BackendError(
            f"the ONNX model's input {inputs[0].name!r} has shape {declared}, "
            f"but input_shape is {list(input_shape)}"
        )
    data = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    return {inputs[0].name: data}


def _parse_providers(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(p, str) for p in value)
    ):
        raise ConfigError(
            f"onnxruntime setting 'providers' must be a non-empty list of provider names, "
            f"got {value!r}"
        )
    return tuple(value)


def _parse_threads(key: str, value: Any) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"onnxruntime setting {key!r} must be an integer >= 0 (0 = ORT's default), "
            f"got {value!r}"
        )
    return value

"""Export a subnet to ONNX or TFLite, checked numerically against PyTorch in ONNX Runtime or
LiteRT on the same seeded random input."""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ExportError, require
from .provenance import make_temp, provenance

if TYPE_CHECKING:  # torch is imported where a model is exported: the CLI reads this module
    import torch
    from torch import nn

log = logging.getLogger("ofabench")

EXPORT_FORMATS = ("onnx", "tflite")
RUNTIMES = {"onnx": "ONNX Runtime", "tflite": "LiteRT"}
RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how closely the exported model matched PyTorch.

    ``input_shape`` is the exported model's input, in ``input_layout`` (NCHW for ONNX, NHWC for
    TFLite)."""

    path: str
    format: str
    input_shape: tuple[int, ...]
    max_abs_diff: float | None
    tolerance: float | None
    size_bytes: int
    input_layout: str = "NCHW"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...],
    out: str | Path,
    opset: int = 17,
    check: bool = True,
    metadata: dict[str, Any] | None = None,
    seed: int = 0,
) -> ExportReport:
    """Export ``model`` (eval mode, float32) to ONNX at ``out``.

    The file is written to a temporary name, annotated with provenance metadata, checked in ONNX
    Runtime on a random input (when ``check``), and only then moved to ``out``; a failed export
    leaves any earlier file at ``out`` untouched.
    """
    onnx = require("onnx", "onnx")
    _check_shape(input_shape)
    out = Path(out)
    model = model.eval()
    example = _example(input_shape, seed)
    fd, tmp = make_temp(out)
    os.close(fd)
    try:
        _torch_to_onnx(model, example, tmp, opset)
        proto = onnx.load(tmp)
        props = {"ofabench.provenance": json.dumps(provenance(**(metadata or {})))}
        onnx.helper.set_model_props(proto, props)
        onnx.save(proto, tmp)
        diff, tol = _check_onnxruntime(model, example, tmp) if check else (None, None)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return ExportReport(str(out), "onnx", tuple(input_shape), diff, tol, out.stat().st_size)


def export_tflite(
    model: nn.Module,
    input_shape: tuple[int, ...],
    out: str | Path,
    check: bool = True,
    metadata: dict[str, Any] | None = None,
    seed: int = 0,
) -> ExportReport:
    """Export ``model`` (eval mode, float32) to a TFLite flatbuffer at ``out``.

    The model is written by ofabench's own writer (:mod:`ofabench.devices.tflite_writer`; any
    module torch.fx traces into its vocabulary), its description string carrying the provenance
    and ``metadata``; it takes NHWC input. It is run in LiteRT on a seeded random input and
    compared with PyTorch (when ``check``) before it is written, atomically: a failed export
    leaves any earlier file at ``out`` untouched.
    """
    from .devices.tflite_writer import model_description, module_to_tflite, tflite_input_shape
    from .provenance import atomic_open

    _check_shape(input_shape)
    if check:
        require("ai_edge_litert.interpreter", "tflite")
    out = Path(out)
    model = model.eval()
    shape = tuple(input_shape)
    info = provenance(**(metadata or {}))
    content = module_to_tflite(model, shape, model_description(model, shape, provenance=info))
    diff, tol = _check_litert(model, _example(shape, seed), content) if check else (None, None)
    with atomic_open(out, "wb") as handle:
        handle.write(content)
    nhwc = tflite_input_shape(shape)
    return ExportReport(str(out), "tflite", nhwc, diff, tol, out.stat().st_size, "NHWC")


def _check_shape(input_shape: tuple[int, ...]) -> None:
    if any(not isinstance(n, int) or n < 1 for n in input_shape):
        raise ExportError(f"input shape {tuple(input_shape)} must hold positive sizes (batch >= 1)")


def _example(input_shape: tuple[int, ...], seed: int) -> torch.Tensor:
    import torch

    return torch.randn(*input_shape, generator=torch.Generator().manual_seed(seed))


def _torch_to_onnx(model: nn.Module, example: torch.Tensor, path: str, opset: int) -> None:
    import torch

    # The TorchScript exporter takes well under a second here; the dynamo one takes seconds and
    # needs onnxscript. Both give the same graph for these static CNNs.
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model, (example,), path, dynamo=False, opset_version=opset,
                input_names=["input"], output_names=["logits"],
            )  # fmt: skip
    except Exception as exc:  # the exporter raises many types
        raise ExportError(f"ONNX export failed: {exc}") from exc


def _check_onnxruntime(model: nn.Module, example: torch.Tensor, path: str) -> tuple[float, float]:
    ort = require("onnxruntime", "onnx")
    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"input": example.numpy()})
    except Exception as exc:  # onnxruntime raises its own pybind error types
        raise ExportError(f"ONNX Runtime cannot run the exported model: {exc}") from exc
    return compare_with_pytorch(model, example, got, "onnx")


def _check_litert(model: nn.Module, example: torch.Tensor, content: bytes) -> tuple[float, float]:
    from .devices.litert_backend import run_tflite
    from .errors import BackendError

    try:
        got = run_tflite(content, example.numpy())
    except BackendError as exc:
        raise ExportError(f"LiteRT cannot run the exported model: {exc}") from exc
    return compare_with_pytorch(model, example, got, "tflite")


def compare_with_pytorch(
    model: nn.Module, example: torch.Tensor, got: np.ndarray, fmt: str
) -> tuple[float, float]:
    """Max abs difference of an exported model's output ``got`` from PyTorch's on ``example``
    and the tolerance it must meet (1e-4 of the output's magnitude, at least 1e-4); above it,
    :class:`ExportError` and nothing is written."""
    import torch

    with torch.no_grad():
        want = model(example).numpy()
    if got.shape != want.shape:
        raise ExportError(
            f"{RUNTIMES[fmt]} output has shape {list(got.shape)}, PyTorch {list(want.shape)}"
        )
    diff = float(np.abs(got - want).max())
    tol = RELATIVE_TOLERANCE * max(1.0, float(np.abs(want).max()))
    if not np.isfinite(diff) or diff > tol:
        raise ExportError(
            f"{RUNTIMES[fmt]} output differs from PyTorch by {diff:.3g} (> {tol:.3g}); not written"
        )
    log.info("%s matches PyTorch: max abs diff %.3g", RUNTIMES[fmt], diff)
    return diff, tol

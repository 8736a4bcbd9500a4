"""Export a subnet to ONNX, checked numerically against PyTorch in ONNX Runtime."""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ExportError, require
from .provenance import make_temp, provenance

log = logging.getLogger("ofabench")

EXPORT_FORMATS = ("onnx",)


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how closely the exported model matched PyTorch."""

    path: str
    format: str
    input_shape: tuple[int, ...]
    max_abs_diff: float | None
    tolerance: float | None
    size_bytes: int

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
    if any(not isinstance(n, int) or n < 1 for n in input_shape):
        raise ExportError(f"input shape {tuple(input_shape)} must hold positive sizes (batch >= 1)")
    out = Path(out)
    model = model.eval()
    example = torch.randn(*input_shape, generator=torch.Generator().manual_seed(seed))
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


def _torch_to_onnx(model: nn.Module, example: torch.Tensor, path: str, opset: int) -> None:
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
    with torch.no_grad():
        want = model(example).numpy()
    diff = float(np.abs(got - want).max())
    tol = 1e-4 * max(1.0, float(np.abs(want).max()))
    if not np.isfinite(diff) or diff > tol:
        raise ExportError(
            f"ONNX Runtime output differs from PyTorch by {diff:.3g} (> {tol:.3g}); not written"
        )
    log.info("ONNX Runtime matches PyTorch: max abs diff %.3g", diff)
    return diff, tol

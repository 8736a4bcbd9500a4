"""Standard mobile networks from torchvision, measured end to end on a device's backend.

Each network is built from torchvision's model definition (``weights=None``: latency needs no
weights) and timed through :meth:`ofabench.devices.Backend.measure`, the same protocol as the
validation subnets. Its ImageNet top-1, MACs and parameters are cited from torchvision's
documentation, read from the metadata of its default weights in the installed torchvision
(``meta["_metrics"]["ImageNet-1K"]["acc@1"]``, ``meta["_ops"]``, ``meta["num_params"]``); the
weights' name and torchvision's version are recorded with every number. torchvision's "GFLOPS"
column counts one multiply-add as one operation (MobileNetV3-Large: 0.217, the paper's 219M
MAdds), so it is read as MACs.

LiteRT runs ``.tflite`` files: a network goes through litert-torch (the maintained PyTorch to
TFLite converter) when it is installed, else through the project's own TFLite writer, whose
torch.fx graph converter (:mod:`ofabench.devices.tflite_graph`) covers the operators of these
networks (convolutions plain, depthwise and grouped, batch norm, the usual activations, pools,
residual adds, SE scaling, channel shuffle, linear heads); litert-torch is an optional extra
(``tflite-convert``) that pulls jax, transformers and torchao. A network a backend cannot
convert or run is recorded as failed, with the reason (the op it lacks); the others are
measured regardless.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, OfabenchError
from ..search.points import ParetoPoint

logger = logging.getLogger("ofabench")

NETWORKS = (
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "mnasnet0_5",
    "mnasnet0_75",
    "mnasnet1_0",
    "efficientnet_b0",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
)
METHOD = "torchvision networks (measured)"
DOCS = "https://docs.pytorch.org/vision/stable/models.html"


@dataclass(frozen=True)
class ReferenceNet:
    """A torchvision network with its cited ImageNet top-1 (a fraction), MACs and parameters
    (millions), the weights those numbers belong to and the torchvision version read."""

    name: str
    top1: float
    mmacs: float
    mparams: float
    weights: str
    torchvision: str

    @property
    def citation(self) -> str:
        return (
            f"torchvision {self.torchvision} documentation, {self.weights} "
            f"(acc@1, GFLOPS, num_params; {DOCS})"
        )


@dataclass(frozen=True)
class NetMeasurement:
    """One network on one device: its latency statistics, or why it could not be measured."""

    net: ReferenceNet
    device: str
    resolution: int
    median_ms: float | None = None
    measurement: dict[str, Any] | None = None
    converter: str = ""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.net.name,
            "weights": self.net.weights,
            "top1": self.net.top1,
            "mmacs": self.net.mmacs,
            "mparams": self.net.mparams,
            "citation": self.net.citation,
            "device": self.device,
            "resolution": self.resolution,
            "median_ms": self.median_ms,
            "converter": self.converter,
            "error": self.error,
            "measurement": self.measurement,
        }


def reference_net(name: str) -> ReferenceNet:
    """The cited numbers of torchvision network ``name`` (one of :data:`NETWORKS`)."""
    if name not in NETWORKS:
        raise ConfigError(f"unknown reference network {name!r}; available: {list(NETWORKS)}")
    import torchvision
    from torchvision.models import get_model_weights

    weights = get_model_weights(name).DEFAULT
    meta = weights.meta
    return ReferenceNet(
        name=name,
        top1=float(meta["_metrics"]["ImageNet-1K"]["acc@1"]) / 100.0,
        mmacs=float(meta["_ops"]) * 1000.0,
        mparams=float(meta["num_params"]) / 1e6,
        weights=f"{type(weights).__name__}.{weights.name}",
        torchvision=torchvision.__version__.split("+")[0],
    )


def build(name: str) -> Any:
    """torchvision's network ``name`` with random weights, in eval mode."""
    from torchvision.models import get_model

    reference_net(name)  # checks the name
    return get_model(name, weights=None).eval()


def measure_reference_nets(
    backend: Any,
    device: str,
    names: Sequence[str] = NETWORKS,
    resolution: int = 224,
    settings: Any = None,
    guard: Any = None,
) -> list[NetMeasurement]:
    """Every network of ``names`` timed end to end on ``backend`` at ``resolution`` px (batch
    1); a network the backend cannot convert or run is returned with its error. With ``guard``
    (a started :class:`~ofabench.latency.probe.DriftGuard` normalising to a latency table's
    reference), each network is timed with the drift probe like the table's subnets and its
    ``median_ms`` is at the table's reference speed (the raw median stays in ``measurement``)."""
    nets = [reference_net(n) for n in names]
    return [_measure_one(backend, device, net, resolution, settings, guard) for net in nets]


def _measure_one(
    backend: Any, device: str, net: ReferenceNet, resolution: int, settings: Any, guard: Any
) -> NetMeasurement:
    shape = (1, 3, resolution, resolution)
    converter, convert = _converter(backend)
    done: list[Any] = []
    try:
        model = convert(build(net.name), shape)
        if guard is None:
            measurement, latency, probe = backend.measure(model, shape, settings), None, {}
        else:
            guard.measure([net], lambda _: backend.measure(model, shape, settings), done.append)
            measurement, latency = done[0].measurement, done[0].normalised_ms
            probe = {"probe_ms": done[0].probe_ms, "reference_ms": guard.reference_ms}
    except OfabenchError as exc:
        logger.warning("%s on %s: not measured: %s", net.name, device, exc)
        return NetMeasurement(net, device, resolution, converter=converter, error=str(exc))
    latency = measurement.median_ms if latency is None else latency
    logger.info("%s on %s: %.3f ms", net.name, device, latency)
    data = {**measurement.to_dict(), **({"normalised": probe} if probe else {})}
    return NetMeasurement(net, device, resolution, latency, data, converter)


def _converter(backend: Any) -> tuple[str, Callable[[Any, tuple[int, ...]], Any]]:
    """How a network reaches ``backend``: as the PyTorch module (the backend converts it; LiteRT
    through ofabench's TFLite writer), or, for LiteRT with litert-torch installed, as a
    ``.tflite`` file litert-torch wrote."""
    if getattr(backend, "name", "") != "litert":
        return f"{getattr(backend, 'name', 'backend')} (its own conversion)", _as_module
    if importlib.util.find_spec("litert_torch") is None:
        return (
            "ofabench TFLite writer (torch.fx graph; litert-torch is not installed)",
            _as_module,
        )
    return "litert-torch", _litert_torch_file


def _as_module(model: Any, shape: tuple[int, ...]) -> Any:
    return model


def _litert_torch_file(model: Any, shape: tuple[int, ...]) -> Any:
    """``model`` converted by litert-torch to ``.tflite`` bytes."""
    import litert_torch
    import torch

    from ..errors import BackendError

    try:
        edge = litert_torch.convert(model, (torch.randn(shape),))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.tflite"
            edge.export(str(path))
            return path.read_bytes()
    except Exception as exc:  # converter failures of any kind: this network alone fails
        raise BackendError(f"litert-torch could not convert the model: {exc}") from exc


def reference_points(measurements: Sequence[NetMeasurement]) -> list[ParetoPoint]:
    """The measured networks as points (cited top-1, MACs, parameters; latency measured on the
    device); failed networks have none."""
    return [
        ParetoPoint(
            method=METHOD,
            accuracy=m.net.top1,
            latency_ms=m.median_ms,
            mmacs=m.net.mmacs,
            mparams=m.net.mparams,
            device=m.device,
            kind="external",
            accuracy_kind="measured",
            source=m.net.citation,
            model=m.net.name,
            notes=f"latency measured end to end at {m.resolution} px ({m.converter})",
        )
        for m in measurements
        if m.median_ms is not None
    ]

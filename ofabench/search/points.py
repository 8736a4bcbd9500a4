"""One point of an accuracy-cost comparison (a searched subnet, a baseline, a published model).

Accuracy is a fraction (0.762). ``latency_ms`` is on ``device`` (None when not known for that
device), ``mmacs`` and ``mparams`` are millions. ``accuracy_kind`` says whether the accuracy was
``predicted`` (an accuracy predictor) or ``measured`` (evaluated, e.g. a paper's top-1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .axes import AXES, axis_info

KINDS = ("search", "baseline", "published", "external")


@dataclass(frozen=True)
class ParetoPoint:
    """An architecture or model with its accuracy and costs, and where it came from."""

    method: str
    accuracy: float
    latency_ms: float | None = None
    mmacs: float | None = None
    mparams: float | None = None
    device: str | None = None
    budget: float | None = None
    axis: str | None = None
    kind: str = "search"
    accuracy_kind: str = "predicted"
    source: str = ""
    model: str = ""
    arch: Mapping[str, Any] | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"point kind {self.kind!r} is unknown; allowed: {list(KINDS)}")
        if not 0.0 <= self.accuracy <= 1.0:
            raise ConfigError(
                f"accuracy of {self.method} {self.model} must be a fraction in [0, 1], "
                f"got {self.accuracy}"
            )
        for axis in AXES:
            value = getattr(self, axis)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ConfigError(f"{axis} of {self.method} {self.model} must be >= 0: {value}")

    def cost(self, axis: str) -> float | None:
        """The point's value on ``axis`` (one of :data:`AXES`)."""
        return getattr(self, axis_info(axis).name)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["arch"] = dict(self.arch) if self.arch is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParetoPoint:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ConfigError(f"unknown point field(s) {unknown}; allowed: {sorted(fields)}")
        return cls(**dict(data))


def on_axis(
    points: Iterable[ParetoPoint], axis: str, device: str | None = None
) -> list[ParetoPoint]:
    """Points that have a value on ``axis``; for latency, only those measured on ``device``, so
    that devices are never mixed on one axis."""
    out = []
    for p in points:
        if p.cost(axis) is None:
            continue
        if axis == "latency_ms" and p.device != device:
            continue
        out.append(p)
    return out

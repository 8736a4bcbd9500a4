"""The cost axes of an accuracy-cost comparison, described once: latency, MACs, parameters.

Every other place (budget parsing, points, sweeps, report tables and plots) reads its names,
units and labels from :data:`AXES_INFO`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Axis:
    """One cost axis: ``name`` is the field of a point (``latency_ms``), ``kind`` the word a
    budget option uses (``latency``), ``unit`` its canonical unit, ``units`` the budget units
    a user may write (factor to the canonical unit), ``label`` a plot label (``{device}`` is
    filled in), ``figure`` the report's file name for accuracy against this axis."""

    name: str
    kind: str
    unit: str
    units: Mapping[str, float]
    unit_names: tuple[str, ...]
    example: str
    label: str
    figure: str

    def axis_label(self, device: str | None = None) -> str:
        return self.label.format(device=device or "device")


AXES_INFO: dict[str, Axis] = {
    a.name: a
    for a in (
        Axis(
            "latency_ms",
            "latency",
            "ms",
            {"us": 1e-3, "ms": 1.0, "s": 1e3},
            ("us", "ms", "s"),
            "25ms",
            "Latency on {device} (ms)",
            "accuracy_latency.png",
        ),
        Axis(
            "mmacs",
            "macs",
            "M MACs",
            {"k": 1e-3, "m": 1.0, "g": 1e3},
            ("K", "M", "G"),
            "300M",
            "MACs (millions)",
            "accuracy_macs.png",
        ),
        Axis(
            "mparams",
            "params",
            "M params",
            {"k": 1e-3, "m": 1.0, "g": 1e3},
            ("K", "M", "G"),
            "5M",
            "Parameters (millions)",
            "accuracy_params.png",
        ),
    )
}
AXES: tuple[str, ...] = tuple(AXES_INFO)
AXIS_OF_KIND: dict[str, str] = {a.kind: a.name for a in AXES_INFO.values()}


def axis_info(name: str) -> Axis:
    """The axis called ``name``; an unknown name lists the valid ones."""
    if name not in AXES_INFO:
        raise ConfigError(f"unknown cost axis {name!r}; allowed: {list(AXES)}")
    return AXES_INFO[name]


def axis_of_kind(kind: str) -> Axis:
    """The axis a budget kind (``latency``, ``macs``, ``params``) refers to."""
    if kind not in AXIS_OF_KIND:
        raise ConfigError(f"unknown budget kind {kind!r}; allowed: {sorted(AXIS_OF_KIND)}")
    return AXES_INFO[AXIS_OF_KIND[kind]]

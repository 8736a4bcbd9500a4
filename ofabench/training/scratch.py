"""The from-scratch baseline: one architecture trained alone as a static network.

The network is the module :meth:`OFAMobileNetV3.get_active_subnet` extracts for the arch (the
space family's static network built from the arch's layer geometry), freshly initialised with each
layer's own fan-in rather than sliced out of a supernet. Its checkpoint (``scratch_<hash>.pt``)
carries the space and the arch, so ``ofabench eval --checkpoint`` needs nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..files import load_torch
from ..provenance import atomic_open, provenance
from ..space import ArchConfig, SpaceSpec
from ..supernet import MobileNetV3, build_static
from ..supernet.checkpoint import load_weights

STATIC_FORMAT = "ofabench.static_subnet"
SCHEMA_VERSION = 1


def build_static_network(
    space: SpaceSpec, arch: ArchConfig, seed: int | None = None
) -> MobileNetV3:
    """A freshly initialised static network of ``arch`` (seeded with ``seed`` when given)."""
    if seed is not None:
        torch.manual_seed(seed)
    return build_static(space, arch)


def save_static_network(
    net: MobileNetV3, space: SpaceSpec, arch: ArchConfig, path: str | Path, **extra: Any
) -> None:
    """Write a static network with its space, arch and provenance, atomically."""
    payload = {
        "format": STATIC_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "space": space.to_dict(),
        "fingerprint": space.fingerprint(),
        "arch": arch.to_dict(),
        "state_dict": net.state_dict(),
        "provenance": provenance(),
        **extra,
    }
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


def read_checkpoint(path: str | Path) -> Mapping[str, Any]:
    """The raw payload of a checkpoint file (CheckpointError when missing or unreadable)."""
    payload = load_torch(path, "checkpoint", CheckpointError)
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"checkpoint {path} does not hold a mapping")
    return payload


def is_static_checkpoint(payload: Mapping[str, Any]) -> bool:
    return payload.get("format") == STATIC_FORMAT


def load_static_network(
    path: str | Path, payload: Mapping[str, Any] | None = None
) -> tuple[MobileNetV3, SpaceSpec, ArchConfig]:
    """The static network saved at ``path`` with its space and arch."""
    payload = read_checkpoint(path) if payload is None else payload
    if not is_static_checkpoint(payload):
        raise CheckpointError(f"{path} is not an ofabench static-network checkpoint")
    missing = [k for k in ("space", "arch", "state_dict") if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it is damaged or incomplete")
    try:
        space = SpaceSpec.from_dict(payload["space"])
        arch = space.validate(ArchConfig.from_dict(payload["arch"]))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: bad space or arch: {exc}") from exc
    net = build_static_network(space, arch)
    load_weights(net, payload["state_dict"], f"checkpoint {path}", "its arch")
    return net, space, arch

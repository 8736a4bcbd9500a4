"""Supernet checkpoints: ofabench's own format, or a reference-OFA checkpoint detected by its keys."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..provenance import atomic_open, provenance
from ..space import SpaceSpec
from .ofa_import import load_ofa_state_dict, normalize_ofa_key, read_checkpoint, unwrap_state_dict
from .ofa_mbv3 import OFAMobileNetV3

log = logging.getLogger("ofabench")
FORMAT = "ofabench.supernet"
SCHEMA_VERSION = 1


def save_supernet(net: OFAMobileNetV3, path: str | Path, **extra: Any) -> None:
    """Write the supernet's weights with its space and provenance, atomically."""
    payload = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "space": net.space.to_dict(),
        "fingerprint": net.space.fingerprint(),
        "state_dict": net.state_dict(),
        "provenance": provenance(),
        **extra,
    }
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


def _looks_like_ofa(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(
        normalize_ofa_key(k).startswith(("first_conv.", "feature_mix_layer.")) for k in state_dict
    )


def load_supernet(path: str | Path, space: SpaceSpec) -> OFAMobileNetV3:
    """A supernet of ``space`` with the weights at ``path`` (ofabench or reference-OFA format)."""
    path = Path(path)
    obj = read_checkpoint(path)
    net = OFAMobileNetV3(space)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        if obj.get("fingerprint") != space.fingerprint():
            raise CheckpointError(
                f"checkpoint {path} is for space {obj.get('space', {}).get('name')!r}, not {space.name!r}; "
                "pass the space it was trained on (--space)"
            )
        net.load_state_dict(obj["state_dict"])
        return net
    state_dict = unwrap_state_dict(obj)
    if _looks_like_ofa(state_dict):
        log.info("loading %s as a reference-OFA checkpoint", path)
        return load_ofa_state_dict(net, state_dict)
    try:
        net.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit space {space.name!r}: {exc}"
        ) from exc
    return net

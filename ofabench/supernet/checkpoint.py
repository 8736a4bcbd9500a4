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
from . import build_supernet
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
        normalize_ofa_key(k).startswith(("first_conv.", "feature_mix_layer.", "input_stem."))
        for k in state_dict
    )


def load_supernet(path: str | Path, space: SpaceSpec) -> OFAMobileNetV3:
    """A supernet of ``space`` with the weights at ``path`` (ofabench or reference-OFA format)."""
    path = Path(path)
    obj = read_checkpoint(path)
    net = build_supernet(space)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        if obj.get("fingerprint") != space.fingerprint():
            raise CheckpointError(
                f"checkpoint {path} is for space {obj.get('space', {}).get('name')!r}, not {space.name!r}; "
                "pass the space it was trained on (--space)"
            )
        load_weights(net, obj.get("state_dict"), f"checkpoint {path}", f"space {space.name!r}")
        return net
    try:
        state_dict = unwrap_state_dict(obj)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    if _looks_like_ofa(state_dict):
        log.info("loading %s as a reference-OFA checkpoint", path)
        return load_ofa_state_dict(net, state_dict)
    load_weights(net, state_dict, f"checkpoint {path}", f"space {space.name!r}")
    return net


def load_weights(net: torch.nn.Module, state_dict: Any, where: str, target: str) -> None:
    """Load ``state_dict`` into ``net`` strictly. A state dict that does not fit is one line of
    CheckpointError counting the missing, unexpected and misshapen tensors, with an example of
    each (not the thousands of key names torch lists)."""
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise CheckpointError(f"{where} holds no state dict (a mapping of names to tensors)")
    own = net.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} (needs {tuple(own[k].shape)})"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    problems = [
        f"{len(found)} {kind}, e.g. {found[0]}"
        for kind, found in (
            ("missing tensor(s)", missing),
            ("unexpected tensor(s)", unexpected),
            ("tensor(s) of another shape", shapes),
        )
        if found
    ]
    if problems:
        raise CheckpointError(f"{where} does not fit {target}: {'; '.join(problems)}")
    net.load_state_dict(state_dict)

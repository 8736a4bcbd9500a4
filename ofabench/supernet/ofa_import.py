"""Load state dicts of the reference OFA implementation (``ofa`` on PyPI) into ofabench.

Handles the current key names (``blocks.N.conv.inverted_bottleneck.conv.conv.weight``,
``...depth_conv.conv.7to5_matrix``), the legacy ones (``.mobile_inverted_conv.``, single-nested
``.bn.``/``.conv.``/``.linear.``), a ``{"state_dict": ...}`` wrapper and a DataParallel
``module.`` prefix. The official checkpoints ``ofa_mbv3_d234_e346_k357_w1.0``/``w1.2`` load into
:class:`OFAMobileNetV3` built on the matching preset space, ``ofa_proxyless_d234_e346_k357_w1.3``
into :class:`OFAProxylessNASNet`; the names outside the blocks are the family's
(:attr:`SpaceFamily.ofa_top_level`: ProxylessNAS's ``feature_mix_layer`` is ofabench's final
expand).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..families import BUILTIN_FAMILIES, get_family
from .ofa_mbv3 import OFAMobileNetV3

_COLLAPSIBLE = {"conv", "bn", "linear"}
_IN_BLOCK = {
    "inverted_bottleneck.conv": "expand_conv",
    "inverted_bottleneck.bn": "expand_bn",
    "depth_conv.conv": "dw_conv",
    "depth_conv.bn": "dw_bn",
    "depth_conv.se.fc.reduce": "se_reduce",
    "depth_conv.se.fc.expand": "se_expand",
    "point_linear.conv": "project_conv",
    "point_linear.bn": "project_bn",
}
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.conv\.(.+)\.([^.]+)$")
_TRANSFORM = re.compile(r"^(\d+)to(\d+)_matrix$")


def normalize_ofa_key(key: str) -> str:
    """OFA's key with legacy spellings and doubly nested wrappers folded: e.g.
    ``blocks.3.mobile_inverted_conv.depth_conv.bn.bn.weight`` -> ``blocks.3.conv.depth_conv.bn.weight``."""
    if key.startswith("module."):
        key = key[len("module.") :]
    key = key.replace(".mobile_inverted_conv.", ".conv.")
    parts: list[str] = []
    for part in key.split("."):
        if parts and part == parts[-1] and part in _COLLAPSIBLE:
            continue
        parts.append(part)
    return ".".join(parts)


def ofa_key_to_ofabench(key: str, family: str = "mbv3") -> str:
    """The ofabench parameter name for an OFA state-dict key (either spelling) of a supernet of
    ``family``."""
    norm = normalize_ofa_key(key)
    module, _, leaf = norm.rpartition(".")
    top_level = get_family(family).ofa_top_level
    if module in top_level:
        return f"{top_level[module]}.{leaf}"
    match = _BLOCK_KEY.match(norm)
    if match:
        index, path, leaf = match.groups()
        transform = _TRANSFORM.match(leaf)
        if path == "depth_conv.conv" and transform:
            return f"blocks.{index}.transform_{transform[1]}to{transform[2]}"
        if path in _IN_BLOCK:
            return f"blocks.{index}.{_IN_BLOCK[path]}.{leaf}"
    raise CheckpointError(f"state-dict key {key!r} is not an {get_family(family).title} parameter")


def unwrap_state_dict(obj: object) -> Mapping[str, torch.Tensor]:
    """The state dict inside a checkpoint object (``{"state_dict": ...}`` or a bare one)."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            "checkpoint holds no state dict (expected a mapping of names to tensors)"
        )
    return obj


def convert_ofa_state_dict(
    model: OFAMobileNetV3, state_dict: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename an OFA state dict to ``model``'s names and check every shape against it."""
    target = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    state_dict = unwrap_state_dict(state_dict)
    check_family(state_dict, model.space.family, model.space.name)
    for key, tensor in state_dict.items():
        name = ofa_key_to_ofabench(key, model.space.family)
        if name not in target:
            raise CheckpointError(
                f"OFA key {key!r} -> {name!r} has no place in space {model.space.name!r}; "
                "is the checkpoint from another space (width multiplier, depth, kernel choices)?"
            )
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise CheckpointError(
                f"OFA key {key!r} has shape {tuple(tensor.shape)} but space {model.space.name!r} "
                f"needs {tuple(target[name].shape)} for {name!r}; the checkpoint is from another space"
            )
        converted[name] = tensor
    missing = sorted(set(target) - set(converted) - _optional_keys(target))
    if missing:
        raise CheckpointError(
            f"the OFA checkpoint lacks {len(missing)} tensor(s), e.g. {missing[:3]}"
        )
    return converted


def ofa_checkpoint_family(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The family of an OFA supernet's state dict: OFA-ResNet has an input stem,
    OFA-MobileNetV3 a final expand layer, OFA-ProxylessNAS neither."""
    if any(k.startswith(("input_stem.", "module.input_stem.")) for k in state_dict):
        return "resnet"
    return "mbv3" if any("final_expand_layer." in k for k in state_dict) else "proxyless"


def check_family(state_dict: Mapping[str, torch.Tensor], family: str, space: str) -> None:
    """Loading one family's OFA checkpoint into another's space is one line naming both."""
    found = ofa_checkpoint_family(state_dict)
    if found != family and family in BUILTIN_FAMILIES:
        raise CheckpointError(
            f"the OFA checkpoint is an {get_family(found).title} supernet (family {found!r}) but "
            f"space {space!r} is {get_family(family).title} (family {family!r}); pass a space of "
            f"family {found!r}, e.g. --space {next(iter(get_family(found).presets()))}"
        )


def _optional_keys(target: Mapping[str, torch.Tensor]) -> set[str]:
    # OFA checkpoints saved before BN tracked batch counts carry no num_batches_tracked.
    return {k for k in target if k.endswith("num_batches_tracked")}


def load_ofa_state_dict(
    model: OFAMobileNetV3, state_dict: Mapping[str, torch.Tensor]
) -> OFAMobileNetV3:
    """Load an OFA state dict (any spelling) into ``model`` in place and return it (through
    the model's space family: :meth:`SpaceFamily.load_ofa_state_dict`)."""
    return get_family(model.space.family).load_ofa_state_dict(model, state_dict)


def load_mbconv_state_dict(
    model: OFAMobileNetV3, state_dict: Mapping[str, torch.Tensor]
) -> OFAMobileNetV3:
    """Load an OFA state dict of an MBConv family (MobileNetV3, ProxylessNAS) into ``model``."""
    model.load_state_dict(convert_ofa_state_dict(model, state_dict), strict=False)
    return model


def read_checkpoint(path: str | Path) -> object:
    """The object saved at ``path`` (tensors only, on the CPU), or a one-line CheckpointError."""
    from ..files import load_torch

    return load_torch(path, "checkpoint", CheckpointError)


def load_ofa_checkpoint(path: str | Path, model: OFAMobileNetV3) -> OFAMobileNetV3:
    """Load an OFA checkpoint file (e.g. ``ofa_mbv3_d234_e346_k357_w1.0``) into ``model``."""
    return load_ofa_state_dict(model, read_checkpoint(path))

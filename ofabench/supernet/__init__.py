"""Elastic supernets of the MBConv families (OFA-MobileNetV3, OFA-ProxylessNAS), their static
subnets and checkpoint import. Build a space's networks through its family:
:func:`build_supernet` and :func:`build_static`."""

from __future__ import annotations

from torch import nn

from ..space import ArchConfig, SpaceSpec
from .elastic import ElasticMBConv
from .ofa_mbv3 import OFAMobileNetV3, OFAProxylessNASNet
from .static import MBConv, MobileNetV3, ProxylessNASNet


def build_supernet(space: SpaceSpec) -> nn.Module:
    """A freshly initialised elastic supernet of ``space`` (its family's class)."""
    from ..families import get_family

    return get_family(space.family).supernet(space)


def build_static(space: SpaceSpec, arch: ArchConfig) -> nn.Module:
    """A freshly initialised static network of the subnet ``arch`` of ``space``."""
    from ..families import get_family

    return get_family(space.family).static_network(space, space.validate(arch))


__all__ = [
    "ElasticMBConv",
    "MBConv",
    "MobileNetV3",
    "OFAMobileNetV3",
    "OFAProxylessNASNet",
    "ProxylessNASNet",
    "build_static",
    "build_supernet",
]

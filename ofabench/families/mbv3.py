"""The OFA-MobileNetV3 family: its geometry is :meth:`SpaceSpec.mbv3_layers`, its networks
:class:`~ofabench.supernet.OFAMobileNetV3` and :class:`~ofabench.supernet.MobileNetV3`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..space import SPACE_PRESETS, ArchConfig, LayerGeom, SpaceSpec
from . import MBCONV_NAMES, SpaceFamily, block_layers, mbconv_net_config, register_family

if TYPE_CHECKING:
    from torch import nn

    from ..latency.table import OpSpec


@register_family
class MobileNetV3Family(SpaceFamily):
    name = "mbv3"
    title = "OFA-MobileNetV3"
    bn_eps = 1e-5
    ofa_top_level = {
        "first_conv.conv": "stem_conv",
        "first_conv.bn": "stem_bn",
        "final_expand_layer.conv": "final_expand_conv",
        "final_expand_layer.bn": "final_expand_bn",
        "feature_mix_layer.conv": "feature_mix_conv",
        "classifier.linear": "classifier",
    }

    def presets(self) -> Mapping[str, Callable[[], SpaceSpec]]:
        return SPACE_PRESETS

    def layers(self, space: SpaceSpec, arch: ArchConfig) -> list[LayerGeom]:
        return space.mbv3_layers(arch)

    def claims_net_config(self, config: Mapping[str, Any]) -> bool:
        """MBConv blocks with ReLU / h-swish (the MobileNetV3 ones; SE on some stages)."""
        layers = block_layers(config)
        acts = {layer.get("act_func", "relu6") for layer in layers}
        names = {layer.get("name") for layer in layers}
        return bool(layers) and names <= MBCONV_NAMES and acts <= {"relu", "h_swish"}

    def to_net_config(self, space: SpaceSpec, arch: ArchConfig) -> dict[str, Any]:
        head = {"final_expand": "final_expand_layer", "feature_mix": "feature_mix_layer"}
        return mbconv_net_config(space, space.validate(arch), "MobileNetV3", self.bn_eps, head)

    def supernet(self, space: SpaceSpec) -> nn.Module:
        from ..supernet.ofa_mbv3 import OFAMobileNetV3

        return OFAMobileNetV3(space)

    def static_network(self, space: SpaceSpec, arch: ArchConfig) -> nn.Module:
        from ..supernet.static import MobileNetV3

        return MobileNetV3(space.layers(arch), dropout=space.dropout)

    def build_op(self, spec: OpSpec) -> nn.Module:
        from ..latency.ops import build_mbv3_op

        return build_mbv3_op(spec)

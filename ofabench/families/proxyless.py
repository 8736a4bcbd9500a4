"""The OFA-ProxylessNAS family (the reference package's ``OFAProxylessNASNets``).

Facts, from ``ofa/imagenet_classification/elastic_nn/networks/ofa_proxyless.py``: base widths
32 (stem), 16 (first block), 24/40/80/96/192/320 (six stages, first strides 2/2/2/1/2/1), 1280
(the 1x1 "feature mix" conv + BN at the last feature map, which ofabench's geometry calls the
final expand); every block an MBConv without SE and with ReLU6; five elastic stages of up to four
blocks and a last stage of exactly one (elastic kernel and expand, fixed depth); the first block
has no shortcut; BatchNorm eps 1e-3; the classifier (dropout + linear) after global pooling.

ofabench keeps its slot layout (``n_stages * max_depth`` kernel/expand entries): the last stage's
three unused slots hold the smallest choices and never run. OFA's dicts (21 kernel/expand
entries) are converted on the way in and out. The ProxylessNAS LUT keys give a block's expand
ratio, have no SE/h-swish flags, and time pooling with the classifier (``Logits-input:7x7xC``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..space import OFA_EVAL_RESOLUTIONS, ArchConfig, LayerGeom, SpaceSpec, StageSpec
from . import MBCONV_NAMES, SpaceFamily, block_layers, mbconv_net_config, register_family

if TYPE_CHECKING:
    from torch import nn

    from ..latency.table import OpSpec

PROXYLESS_STAGES = (
    StageSpec(24, 2, "relu6", False),
    StageSpec(40, 2, "relu6", False),
    StageSpec(80, 2, "relu6", False),
    StageSpec(96, 1, "relu6", False),
    StageSpec(192, 2, "relu6", False),
    StageSpec(320, 1, "relu6", False, depths=(1,)),
)


def proxyless_space(width_mult: float = 1.3, **changes: Any) -> SpaceSpec:
    """OFA's ProxylessNAS space at ``width_mult`` (kernels 3/5/7, expand 3/4/6, depth 2/3/4)."""
    spec = SpaceSpec(
        name=f"ofa_proxyless_d234_e346_k357_w{width_mult:g}",
        family="proxyless",
        width_mult=width_mult,
        stem_width=32,
        first_block_width=16,
        stages=PROXYLESS_STAGES,
        final_expand_width=1280,
        feature_mix_width=0,
        extra_resolutions=OFA_EVAL_RESOLUTIONS,
    )
    return dataclasses.replace(spec, **changes)


@register_family
class ProxylessFamily(SpaceFamily):
    name = "proxyless"
    title = "OFA-ProxylessNAS"
    bn_eps = 1e-3
    lut_expand_is_ratio = True
    lut_block_flags = ()
    ofa_top_level = {
        "first_conv.conv": "stem_conv",
        "first_conv.bn": "stem_bn",
        "feature_mix_layer.conv": "final_expand_conv",
        "feature_mix_layer.bn": "final_expand_bn",
        "classifier.linear": "classifier",
    }

    def presets(self) -> Mapping[str, Callable[[], SpaceSpec]]:
        return {
            "ofa_proxyless_d234_e346_k357_w1.3": lambda: proxyless_space(1.3),
            # the ProxylessNAS mobile space of the authors' Pixel1 table (224 px, expand 3/6)
            "ofa_proxyless_d234_e36_k357_w1.0": lambda: proxyless_space(
                1.0,
                name="ofa_proxyless_d234_e36_k357_w1.0",
                expand_choices=(3, 6),
                resolutions=(224,),
            ),
            "ofa_proxyless_d234_e346_k357_w1.0": lambda: proxyless_space(1.0),
            # for 28-32 px grey data sets, like the MobileNetV3 family's small32_w0.5
            "proxyless_small32_w0.5": lambda: proxyless_space(
                0.5,
                name="proxyless_small32_w0.5",
                in_channels=1,
                n_classes=10,
                stem_stride=1,
                resolutions=(24, 28, 32),
                extra_resolutions=(),
            ),
        }

    def layers(self, space: SpaceSpec, arch: ArchConfig) -> list[LayerGeom]:
        out = space.body_layers(arch, "relu6", "relu6", first_residual=False)
        hw, channels = out[-1].out_hw, out[-1].out_c
        final = space.final_expand_channels
        out.append(LayerGeom("final_expand", hw, channels, final, act="relu6"))
        out.append(LayerGeom("classifier", hw, final, space.n_classes))  # pooling included
        return out

    def claims_net_config(self, config: Mapping[str, Any]) -> bool:
        """MBConv blocks, all with ReLU6 (OFA's default activation of an MBConvLayer)."""
        layers = block_layers(config)
        names = {layer.get("name") for layer in layers}
        acts = {layer.get("act_func", "relu6") for layer in layers}
        return bool(layers) and names <= MBCONV_NAMES and acts == {"relu6"}

    # -- OFA's dict form: 21 kernel/expand entries, six depths --------------------------------------
    def arch_from_dict(self, space: SpaceSpec, data: Any) -> ArchConfig:
        arch = ArchConfig.from_dict(data)
        slots = space.slots()
        if len(arch.ks) == len(arch.e) == len(slots) != space.n_blocks:
            ks = _fill_unused(space, slots, arch.ks, space.kernel_choices)
            e = _fill_unused(space, slots, arch.e, space.expand_choices)
            depths = tuple(
                min(d, max(c)) for d, c in zip(arch.d, space.stage_depth_choices)
            )  # OFA clamps a stage's depth to its blocks
            arch = ArchConfig(ks, e, depths, arch.r)
        return arch

    def to_ofa_dict(self, space: SpaceSpec, arch: ArchConfig) -> dict[str, Any]:
        slots = space.slots()
        return {
            "ks": [arch.ks[s] for s in slots],
            "e": [arch.e[s] for s in slots],
            "d": list(arch.d),
            "r": [arch.r],
        }

    def to_net_config(self, space: SpaceSpec, arch: ArchConfig) -> dict[str, Any]:
        head = {"final_expand": "feature_mix_layer"}  # OFA's name for the 1x1 conv + BN + ReLU6
        return mbconv_net_config(space, space.validate(arch), "ProxylessNASNets", self.bn_eps, head)

    # -- torch ---------------------------------------------------------------------------------------
    def supernet(self, space: SpaceSpec) -> nn.Module:
        from ..supernet.ofa_mbv3 import OFAProxylessNASNet

        return OFAProxylessNASNet(space)

    def static_network(self, space: SpaceSpec, arch: ArchConfig) -> nn.Module:
        from ..supernet.static import ProxylessNASNet, set_bn_eps

        net = ProxylessNASNet(space.layers(arch), dropout=space.dropout)
        set_bn_eps(net, self.bn_eps)
        return net

    def build_op(self, spec: OpSpec) -> nn.Module:
        from ..latency.ops import build_proxyless_op

        return build_proxyless_op(spec)


def _fill_unused(
    space: SpaceSpec, slots: list[int], values: tuple[int, ...], choices: tuple[int, ...]
) -> tuple[int, ...]:
    """OFA's per-block values spread over ofabench's slots; unused slots get the smallest choice."""
    out = [min(choices)] * space.n_blocks
    for slot, value in zip(slots, values):
        out[slot] = value
    return tuple(out)

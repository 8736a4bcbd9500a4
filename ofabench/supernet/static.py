"""Plain (non-elastic) MobileNetV3 modules: what a subnet becomes once extracted.

Built from a subnet's :meth:`SpaceSpec.layers` geometry, so the static network, the counters and
the latency tables all read one description of the architecture.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..space import LayerGeom

BN_MOMENTUM = 0.1
BN_EPS = 1e-5


def activation(name: str, x: torch.Tensor) -> torch.Tensor:
    """ReLU, ReLU6 or h-swish (``x * relu6(x + 3) / 6``, as OFA and MobileNetV3 define it).

    ``x`` must be a fresh intermediate (a BN output): ReLU runs in place on it, which BN's
    backward allows; h-swish cannot (its backward needs its input)."""
    if name == "relu":
        return F.relu(x, inplace=True)
    if name == "relu6":
        return F.relu6(x, inplace=True)
    return F.hardswish(x)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def set_bn_eps(module: nn.Module, eps: float) -> None:
    """Set every BatchNorm's epsilon (a family's own, e.g. ProxylessNAS's 1e-3)."""
    for bn in module.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            bn.eps = eps


class SqueezeExcite(nn.Module):
    """SE with a ReLU bottleneck and an h-sigmoid gate (MobileNetV3)."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean((2, 3), keepdim=True)
        gate = F.hardsigmoid(self.expand(F.relu(self.reduce(gate))))
        return x * gate


class MBConv(nn.Module):
    """Inverted residual block: [1x1 expand + BN + act] → kxk depthwise + BN + act → [SE] →
    1x1 project + BN → [+ identity]."""

    def __init__(self, geom: LayerGeom) -> None:
        super().__init__()
        self.act = geom.act
        self.residual = geom.residual
        if geom.has_expand:
            self.expand_conv = nn.Conv2d(geom.in_c, geom.mid, 1, bias=False)
            self.expand_bn = batch_norm(geom.mid)
        else:
            self.expand_conv = None
            self.expand_bn = None
        self.dw_conv = nn.Conv2d(
            geom.mid,
            geom.mid,
            geom.kernel,
            geom.stride,
            geom.kernel // 2,
            groups=geom.mid,
            bias=False,
        )
        self.dw_bn = batch_norm(geom.mid)
        self.se = SqueezeExcite(geom.mid, geom.se_mid) if geom.se else None
        self.project_conv = nn.Conv2d(geom.mid, geom.out_c, 1, bias=False)
        self.project_bn = batch_norm(geom.out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand_conv is not None:
            h = activation(self.act, self.expand_bn(self.expand_conv(h)))
        h = activation(self.act, self.dw_bn(self.dw_conv(h)))
        if self.se is not None:
            h = self.se(h)
        h = self.project_bn(self.project_conv(h))
        return h + x if self.residual else h


class MobileNetV3(nn.Module):
    """A static subnet of an MBConv family: stem, MBConv blocks, final expand, pool, [feature
    mix,] classifier. The activations are the layers' own (h-swish for OFA-MobileNetV3, whose
    feature mix is a 1x1 conv without BN after pooling; ReLU6 and no feature mix for
    ProxylessNAS)."""

    def __init__(self, layers: Sequence[LayerGeom], dropout: float = 0.0) -> None:
        super().__init__()
        by_kind = {layer.kind: layer for layer in layers if layer.kind != "mbconv"}
        stem, final, head = (by_kind[k] for k in ("stem", "final_expand", "classifier"))
        mix = by_kind.get("feature_mix")
        self.acts = (stem.act, final.act, mix.act if mix is not None else "")
        self.stem_conv = nn.Conv2d(
            stem.in_c, stem.out_c, stem.kernel, stem.stride, stem.kernel // 2, bias=False
        )
        self.stem_bn = batch_norm(stem.out_c)
        self.blocks = nn.Sequential(*(MBConv(layer) for layer in layers if layer.kind == "mbconv"))
        self.final_expand_conv = nn.Conv2d(final.in_c, final.out_c, 1, bias=False)
        self.final_expand_bn = batch_norm(final.out_c)
        if mix is not None:
            self.feature_mix_conv = nn.Conv2d(mix.in_c, mix.out_c, 1, bias=False)
        else:
            self.feature_mix_conv = None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head.in_c, head.out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem_act, final_act, mix_act = self.acts
        x = activation(stem_act, self.stem_bn(self.stem_conv(x)))
        x = self.blocks(x)
        x = activation(final_act, self.final_expand_bn(self.final_expand_conv(x)))
        x = x.mean((2, 3), keepdim=True)
        if self.feature_mix_conv is not None:
            x = activation(mix_act, self.feature_mix_conv(x))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


class ProxylessNASNet(MobileNetV3):
    """A static OFA-ProxylessNAS subnet (the same module layout, no feature mix)."""

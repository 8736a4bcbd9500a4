"""Static PyTorch modules to time: one latency-table key (:class:`~ofabench.latency.table.OpSpec`),
built the way the same layer runs inside a whole subnet (:mod:`ofabench.supernet.static`), so a
backend can time it alone; and a whole subnet, to time it end to end.

Weights are random and every BatchNorm gets non-trivial statistics (a backend that folds BN must
fold something real); the module is returned in eval mode with the NCHW input shape it takes
(``(1, C)`` for the classifier, which runs on the flattened feature vector).

An MBConv key carries no "has expand conv" field: OFA's first block (expand ratio 1) is the only
one whose mid channels equal its input channels, so ``mid == in_c`` means no 1x1 expand conv.
The modules of a key depend on its space family (``OpSpec.family``): ProxylessNAS's ops use
ReLU6, and its ``Logits`` op pools the last feature map before the classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import LatencyTableError
from ..space import ArchConfig, LayerGeom, SpaceSpec
from ..supernet import build_static
from ..supernet.static import MBConv, batch_norm
from .table import OpSpec

STEM_KERNEL = 3


def conv_bn_hswish(in_c: int, out_c: int, kernel: int, stride: int) -> nn.Sequential:
    """Conv (no bias) + BN + h-swish: the stem (3x3) and the final expand (1x1) of a subnet."""
    conv = nn.Conv2d(in_c, out_c, kernel, stride, kernel // 2, bias=False)
    return nn.Sequential(conv, batch_norm(out_c), nn.Hardswish())


def conv_bn_relu6(in_c: int, out_c: int, kernel: int, stride: int) -> nn.Sequential:
    """Conv (no bias) + BN + ReLU6: ProxylessNAS's stem and its 1x1 conv before pooling."""
    conv = nn.Conv2d(in_c, out_c, kernel, stride, kernel // 2, bias=False)
    return nn.Sequential(conv, batch_norm(out_c), nn.ReLU6())


def feature_mix(in_c: int, out_c: int) -> nn.Sequential:
    """1x1 conv (no bias, no BN) + h-swish at 1x1."""
    return nn.Sequential(nn.Conv2d(in_c, out_c, 1, bias=False), nn.Hardswish())


def op_geometry(spec: OpSpec) -> LayerGeom:
    """The :class:`LayerGeom` of an MBConv key (the inverse of ``OpSpec.from_layer``)."""
    if spec.kind != "mbconv":
        raise LatencyTableError(f"op_geometry needs an mbconv op, got {spec.kind!r} ({spec})")
    act = "h_swish" if spec.h_swish else "relu"
    if spec.family == "proxyless":
        act = "relu6"
    return LayerGeom(
        "mbconv",
        spec.in_hw,
        spec.in_c,
        spec.out_c,
        mid=spec.mid,
        kernel=spec.kernel,
        stride=spec.stride,
        se=spec.se,
        act=act,
        residual=spec.residual,
        has_expand=spec.mid != spec.in_c,
    )


def _stem_stride(spec: OpSpec) -> int:
    return 1 if spec.out_hw == spec.in_hw else 2


def build_mbv3_op(spec: OpSpec) -> nn.Module:
    """Plain torch modules only (every backend's converter knows them; the TFLite writer
    dispatches on exact module types)."""
    if spec.kind == "mbconv":
        return MBConv(op_geometry(spec))
    if spec.kind == "stem":
        return conv_bn_hswish(spec.in_c, spec.out_c, STEM_KERNEL, _stem_stride(spec))
    if spec.kind == "final_expand":
        return conv_bn_hswish(spec.in_c, spec.out_c, 1, 1)
    if spec.kind == "pool":
        return nn.AdaptiveAvgPool2d(1)  # the global mean, keeping 1x1
    if spec.kind == "feature_mix":
        return feature_mix(spec.in_c, spec.out_c)
    return nn.Linear(spec.in_c, spec.out_c)  # classifier (OpSpec allows no other kind)


def build_proxyless_op(spec: OpSpec) -> nn.Module:
    """A ProxylessNAS op: ReLU6 stem and blocks, ``Conv_1`` (1x1 conv + BN + ReLU6) and
    ``Logits`` (global pooling, then the classifier)."""
    if spec.kind == "mbconv":
        return MBConv(op_geometry(spec))
    if spec.kind == "stem":
        return conv_bn_relu6(spec.in_c, spec.out_c, STEM_KERNEL, _stem_stride(spec))
    if spec.kind == "final_expand":
        return conv_bn_relu6(spec.in_c, spec.out_c, 1, 1)
    if spec.kind == "classifier":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(spec.in_c, spec.out_c))
    raise LatencyTableError(f"a ProxylessNAS latency table has no {spec.kind} op ({spec})")


class ResidualConv(nn.Module):
    """``x + layer(x)``: OFA-ResNet50's middle stem conv (keyed with equal input and output)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layer(x)


def build_resnet_op(spec: OpSpec) -> nn.Module:
    """An OFA-ResNet50 op, with the modules of its static subnet
    (:class:`~ofabench.supernet.ofa_resnet.ResNet`): 3x3 conv + BN + ReLU stem convs (residual
    when input and output shapes are equal), 3x3/2 max pooling, bottleneck blocks (downsample
    branch unless ``idskip``), global average pooling and the classifier on the pooled vector."""
    from ..supernet.ofa_resnet import Bottleneck, ConvBN

    if spec.kind == "stem":
        conv = ConvBN(spec.in_c, spec.out_c, STEM_KERNEL, _stem_stride(spec))
        same = (spec.in_hw, spec.in_c) == (spec.out_hw, spec.out_c)
        return ResidualConv(conv) if same else conv
    if spec.kind == "maxpool":
        return nn.MaxPool2d(3, 2, 1)
    if spec.kind == "bottleneck":
        return Bottleneck(spec.in_c, spec.mid, spec.out_c, spec.stride, not spec.residual)
    if spec.kind == "pool":
        return nn.AdaptiveAvgPool2d(1)
    if spec.kind == "classifier":
        return nn.Linear(spec.in_c, spec.out_c)
    raise LatencyTableError(f"an OFA-ResNet50 latency table has no {spec.kind} op ({spec})")


def _build(spec: OpSpec) -> nn.Module:
    from ..families import get_family

    return get_family(spec.family).build_op(spec)


def op_input_shape(spec: OpSpec) -> tuple[int, ...]:
    """The input shape the op's module takes: NCHW, or ``(1, C)`` for a classifier on the
    pooled vector (MobileNetV3's; ProxylessNAS's pools the feature map itself)."""
    if spec.kind == "classifier" and spec.in_hw == 1:
        return (1, spec.in_c)
    return (1, spec.in_c, spec.in_hw, spec.in_hw)


def randomize_batchnorm(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Give every BatchNorm of ``module`` non-trivial running statistics and affine parameters
    (close to identity, so activations stay in a normal range through a whole network)."""
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.copy_(torch.rand(bn.num_features, generator=generator) - 0.5)
                bn.running_var.copy_(0.5 + 1.5 * torch.rand(bn.num_features, generator=generator))
                bn.weight.copy_(0.5 + torch.rand(bn.num_features, generator=generator))
                bn.bias.copy_(0.4 * torch.rand(bn.num_features, generator=generator) - 0.2)


def build_op_module(spec: OpSpec, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """A static module computing the op ``spec`` (random weights from ``seed``, non-trivial BN
    statistics, eval mode) and its input shape (batch 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        module = _build(spec)
    randomize_batchnorm(module, generator)
    return module.eval(), op_input_shape(spec)


def build_subnet_module(
    space: SpaceSpec, arch: ArchConfig, seed: int = 0
) -> tuple[nn.Module, tuple[int, ...]]:
    """The static subnet ``arch`` of ``space`` (random weights, non-trivial BN statistics, eval
    mode), built straight from :meth:`SpaceSpec.layers`, and its input shape (batch 1). Weights
    do not change latency, so no supernet is needed to time a subnet end to end."""
    arch = space.validate(arch)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        module = build_static(space, arch)
    randomize_batchnorm(module, generator)
    return module.eval(), (1, space.in_channels, arch.r, arch.r)

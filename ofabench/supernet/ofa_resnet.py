"""The OFA-ResNet50 elastic supernet, its static subnets and the import of OFA's state dicts.

The supernet keeps one weight tensor per layer at its largest shape; a subnet uses the leading
channels of each (as OFA's dynamic layers do), so extracting a static subnet is slicing every
tensor to the static layer's shape. Module names follow OFA's (``input_stem.N``,
``blocks.N.conv1`` ... ``blocks.N.downsample``, ``classifier``) with its doubled wrappers folded.
Geometry and arch forms: :mod:`ofabench.families.resnet`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from ..families.resnet import BASE_DEPTHS, STAGE_STRIDES, ResNetShape
from ..space import ArchConfig, LayerGeom, SpaceSpec

BN_EPS = 1e-5


class ConvBN(nn.Module):
    """Conv (no bias) + BN, ReLU optional; also the weight holder of an elastic layer."""

    def __init__(self, in_c: int, out_c: int, kernel: int, stride: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_c, eps=BN_EPS)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.act else x

    def elastic(self, x: torch.Tensor, out_c: int) -> torch.Tensor:
        """The layer on its first ``out_c`` filters and the input's channels."""
        conv, bn = self.conv, self.bn
        weight = conv.weight
        if weight.shape[:2] != (out_c, x.shape[1]):
            weight = weight[:out_c, : x.shape[1]].contiguous()
        x = F.conv2d(x, weight, None, conv.stride, conv.padding)
        factor = 0.0
        if bn.training:
            bn.num_batches_tracked += 1
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        x = F.batch_norm(
            x,
            bn.running_mean[:out_c],
            bn.running_var[:out_c],
            bn.weight[:out_c],
            bn.bias[:out_c],
            bn.training,
            factor,
            bn.eps,
        )
        return F.relu(x, inplace=True) if self.act else x


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1, plus the identity or an avg-pool + 1x1 downsample branch."""

    def __init__(self, in_c: int, mid: int, out_c: int, stride: int, downsample: bool):
        super().__init__()
        self.conv1 = ConvBN(in_c, mid, 1)
        self.conv2 = ConvBN(mid, mid, 3, stride)
        self.conv3 = ConvBN(mid, out_c, 1, act=False)
        self.stride = stride
        self.downsample = ConvBN(in_c, out_c, 1, act=False) if downsample else None

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x
        return F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = x if self.downsample is None else self.downsample(self._shortcut(x))
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + short)

    def elastic(self, x: torch.Tensor, mid: int, out_c: int) -> torch.Tensor:
        down = self.downsample
        short = x if down is None else down.elastic(self._shortcut(x), out_c)
        y = self.conv3.elastic(self.conv2.elastic(self.conv1.elastic(x, mid), mid), out_c)
        return F.relu(y + short, inplace=True)


class ResNet(nn.Module):
    """A static OFA-ResNet subnet, built from its layer geometry."""

    def __init__(self, layers: list[LayerGeom]) -> None:
        super().__init__()
        stem = [g for g in layers if g.kind == "stem"]
        self.input_stem = nn.ModuleList(ConvBN(g.in_c, g.out_c, 3, g.stride) for g in stem)
        self.stem_residual = [g.residual for g in stem]
        self.blocks = nn.ModuleList(
            Bottleneck(g.in_c, g.mid, g.out_c, g.stride, not g.residual)
            for g in layers
            if g.kind == "bottleneck"
        )
        head = layers[-1]
        self.classifier = nn.Linear(head.in_c, head.out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, residual in zip(self.input_stem, self.stem_residual):
            x = layer(x) + x if residual else layer(x)
        x = F.max_pool2d(x, 3, 2, 1)
        for block in self.blocks:
            x = block(x)
        return self.classifier(x.mean((2, 3)))


class OFAResNet(nn.Module):
    """OFA's ``OFAResNets``: elastic depth, expand ratio and width multipliers."""

    def __init__(self, shape: ResNetShape | None = None, space: SpaceSpec | None = None) -> None:
        super().__init__()
        self.shape = shape = shape or ResNetShape()
        self.space = space  # the space it was built for (None: a bare shape)
        widest = len(shape.width_choices) - 1
        mid, out_c = shape.stem_mid_channels(widest), shape.stem_out_channels(widest)
        self.input_stem = nn.ModuleList(
            [
                ConvBN(shape.in_channels, mid, 3, 2),
                ConvBN(mid, mid, 3),
                ConvBN(mid, out_c, 3),
            ]
        )
        blocks, channels = [], out_c
        top = max(shape.extra_depths)
        for s, base in enumerate(BASE_DEPTHS):
            width = shape.stage_channels(s, widest)
            for j in range(base + top):
                middle = shape.mid_channels(width, max(shape.expand_percents))
                stride = STAGE_STRIDES[s] if j == 0 else 1
                blocks.append(Bottleneck(channels, middle, width, stride, downsample=j == 0))
                channels = width
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Linear(channels, shape.n_classes)
        self.block_slots = shape.slots()
        self.arch = shape.uniform(top, max(shape.expand_percents), widest, 224)

    def set_active_subnet(self, arch: ArchConfig | Mapping) -> ArchConfig:
        if self.space is not None:
            self.arch = self.space.validate(arch)
        elif isinstance(arch, ArchConfig):
            self.arch = self.shape.validate(arch)
        else:
            raise CheckpointError("a supernet built without a space takes ArchConfig archs only")
        return self.arch

    def active_blocks(self) -> list[tuple[int, int, int, int]]:
        """``(block index, stage, mid, out)`` of every block the active subnet runs."""
        shape, arch = self.shape, self.arch
        out = []
        for index, slot in enumerate(self.block_slots):
            s, j = divmod(slot, shape.max_depth)
            if j < arch.d[s]:
                width = shape.stage_channels(s, arch.extra[3 + s])
                out.append((index, s, shape.mid_channels(width, arch.e[slot]), width))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape, (stem_depth, w_mid, w_out, *_) = self.shape, self.arch.extra
        mid = shape.stem_mid_channels(w_mid)
        x = self.input_stem[0].elastic(x, mid)
        if stem_depth:
            x = self.input_stem[1].elastic(x, mid) + x
        x = self.input_stem[2].elastic(x, shape.stem_out_channels(w_out))
        x = F.max_pool2d(x, 3, 2, 1)
        for index, _, middle, width in self.active_blocks():
            x = self.blocks[index].elastic(x, middle, width)
        x = x.mean((2, 3))
        return F.linear(x, self.classifier.weight[:, : x.shape[1]], self.classifier.bias)

    def get_active_subnet(self) -> ResNet:
        """The active subnet as a static :class:`ResNet` holding (copies of) its weights."""
        static = ResNet(self.shape.layers(self.arch))
        stem = [0, 1, 2] if self.arch.extra[0] else [0, 2]
        names = {f"input_stem.{i}": f"input_stem.{j}" for i, j in enumerate(stem)}
        names.update(
            {f"blocks.{i}": f"blocks.{j}" for i, (j, *_) in enumerate(self.active_blocks())}
        )
        source = self.state_dict()
        with torch.no_grad():
            for key, tensor in static.state_dict().items():
                prefix, _, rest = key.partition(".")
                head = f"{prefix}.{rest.split('.')[0]}"
                src = source[f"{names[head]}{key[len(head) :]}" if head in names else key]
                tensor.copy_(src[tuple(slice(0, n) for n in tensor.shape)])
        return static


_STEM_KEY = re.compile(r"^input_stem\.(\d+)\.(?:conv\.)?(conv|bn)\.([^.]+)$")


def ofa_resnet_key(norm_key: str) -> str:
    """ofabench's name for an OFA-ResNet key (already normalised by
    :func:`~ofabench.supernet.ofa_import.normalize_ofa_key`): the stem's residual block loses
    its wrapper's ``conv.``, the classifier its ``linear.``."""
    match = _STEM_KEY.match(norm_key)
    if match:
        return f"input_stem.{match[1]}.{match[2]}.{match[3]}"
    return norm_key.replace("classifier.linear.", "classifier.")


def load_ofa_resnet_state_dict(
    model: OFAResNet, state_dict: Mapping[str, torch.Tensor]
) -> OFAResNet:
    """Load an OFA-ResNet state dict (any spelling OFA wrote) into ``model`` in place."""
    from .ofa_import import normalize_ofa_key, unwrap_state_dict

    target = model.state_dict()
    converted = {}
    for key, tensor in unwrap_state_dict(state_dict).items():
        name = ofa_resnet_key(normalize_ofa_key(key))
        if name not in target or tuple(target[name].shape) != tuple(tensor.shape):
            want = tuple(target[name].shape) if name in target else "no such tensor"
            raise CheckpointError(
                f"OFA key {key!r} (shape {tuple(tensor.shape)}) does not fit this OFA-ResNet "
                f"supernet ({name!r}: {want}); is the checkpoint of another width or depth?"
            )
        converted[name] = tensor
    missing = sorted(k for k in set(target) - set(converted) if "num_batches" not in k)
    if missing:
        raise CheckpointError(
            f"the OFA-ResNet checkpoint lacks {len(missing)} tensor(s), e.g. {missing[:3]}"
        )
    model.load_state_dict(converted, strict=False)
    return model

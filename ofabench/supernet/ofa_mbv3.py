"""OFAMobileNetV3: the elastic supernet of a :class:`SpaceSpec`.

Module layout mirrors OFA's (a flat ``blocks`` list: block 0 is the fixed first MBConv, block
``1 + stage * max_depth + j`` is slot ``j`` of an elastic stage), which keeps checkpoint import
a matter of renaming keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidArchError
from ..space import ArchConfig, SpaceSpec, as_rng
from .elastic import ElasticMBConv, _copy_bn
from .static import MBConv, MobileNetV3, batch_norm


class OFAMobileNetV3(nn.Module):
    """The elastic supernet. ``set_active_subnet(arch)`` picks a subnet; ``forward`` runs it;
    ``get_active_subnet()`` extracts it as a plain :class:`MobileNetV3`."""

    def __init__(self, space: SpaceSpec | None = None) -> None:
        super().__init__()
        self.space = space = space if space is not None else SpaceSpec()
        layers = space.layers(space.max_arch())
        stem, first = layers[0], layers[1]
        self.stem_conv = nn.Conv2d(stem.in_c, stem.out_c, 3, stem.stride, 1, bias=False)
        self.stem_bn = batch_norm(stem.out_c)
        blocks: list[nn.Module] = [MBConv(first)]
        in_c = first.out_c
        for stage, out_c in zip(space.stages, space.stage_channels):
            for j in range(space.max_depth):
                stride = stage.stride if j == 0 else 1
                blocks.append(
                    ElasticMBConv(
                        in_c,
                        out_c,
                        stride,
                        stage.act,
                        stage.se,
                        space.kernel_choices,
                        space.expand_choices,
                    )
                )
                in_c = out_c
        self.blocks = nn.ModuleList(blocks)
        self.final_expand_conv = nn.Conv2d(in_c, space.final_expand_channels, 1, bias=False)
        self.final_expand_bn = batch_norm(space.final_expand_channels)
        self.feature_mix_conv = nn.Conv2d(
            space.final_expand_channels, space.feature_mix_channels, 1, bias=False
        )
        self.dropout = nn.Dropout(space.dropout)
        self.classifier = nn.Linear(space.feature_mix_channels, space.n_classes)
        self.active_arch = space.max_arch()
        self.set_active_subnet(self.active_arch)

    # -- choosing a subnet -----------------------------------------------------------------------
    def set_active_subnet(self, arch: ArchConfig | dict) -> ArchConfig:
        """Make ``arch`` the subnet that ``forward`` runs (validated against the space)."""
        arch = self.space.validate(arch)
        for slot, block in enumerate(self.blocks[1:]):
            block.active_kernel = arch.ks[slot]
            block.active_expand = arch.e[slot]
        self.active_arch = arch
        return arch

    def sample_active_subnet(
        self, rng: int | np.random.Generator | None = None, space: SpaceSpec | None = None
    ) -> ArchConfig:
        """Sample a subnet uniformly from ``space`` (default: the whole space; pass a
        :meth:`SpaceSpec.restrict`-ed one for a progressive-shrinking stage) and activate it."""
        return self.set_active_subnet((space or self.space).sample(as_rng(rng)))

    def active_block_indices(self) -> list[int]:
        """Indices into ``self.blocks`` of the elastic blocks the active subnet runs."""
        return [1 + slot for _, slot, _, _ in self.space.active_blocks(self.active_arch)]

    # -- running -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hardswish(self.stem_bn(self.stem_conv(x)))
        x = self.blocks[0](x)
        for index in self.active_block_indices():
            x = self.blocks[index](x)
        x = F.hardswish(self.final_expand_bn(self.final_expand_conv(x)))
        x = x.mean((2, 3), keepdim=True)
        x = F.hardswish(self.feature_mix_conv(x))
        return self.classifier(self.dropout(torch.flatten(x, 1)))

    # -- extraction ---------------------------------------------------------------------------------
    @torch.no_grad()
    def get_active_subnet(self) -> MobileNetV3:
        """The active subnet as a static network holding copies of its weights."""
        arch = self.active_arch
        layers = self.space.layers(arch)
        net = MobileNetV3(layers, dropout=self.space.dropout)
        net.stem_conv.weight.copy_(self.stem_conv.weight)
        _copy_bn(net.stem_bn, self.stem_bn)
        net.blocks[0].load_state_dict(self.blocks[0].state_dict())
        block_layers = [layer for layer in layers if layer.kind == "mbconv"][1:]
        for target, index, layer in zip(net.blocks[1:], self.active_block_indices(), block_layers):
            target.load_state_dict(self.blocks[index].to_static(layer.hw).state_dict())
        net.final_expand_conv.weight.copy_(self.final_expand_conv.weight)
        _copy_bn(net.final_expand_bn, self.final_expand_bn)
        net.feature_mix_conv.weight.copy_(self.feature_mix_conv.weight)
        net.classifier.load_state_dict(self.classifier.state_dict())
        return net.train(self.training)

    # -- elastic width -------------------------------------------------------------------------------
    def sort_channels(self, protected_expands: Sequence[int] = ()) -> None:
        """Re-order every elastic block's middle channels by L1 importance (see
        :meth:`ElasticMBConv.sort_channels`); the full network's outputs do not change."""
        bad = sorted(set(protected_expands) - set(self.space.expand_choices))
        if bad:
            raise InvalidArchError(
                f"protected expand ratios {bad} are not in the space; allowed: {list(self.space.expand_choices)}"
            )
        for block in self.blocks[1:]:
            block.sort_channels(protected_expands)

"""OFAMobileNetV3: the elastic supernet of a :class:`SpaceSpec` of an MBConv family
(OFA-MobileNetV3, and OFA-ProxylessNAS as :class:`OFAProxylessNASNet`).

Module layout mirrors OFA's (a flat ``blocks`` list: block 0 is the fixed first MBConv, then one
block per slot a depth choice can run, in order: for MobileNetV3 block ``1 + stage * max_depth +
j`` is slot ``j`` of an elastic stage), which keeps checkpoint import a matter of renaming keys.
The stem, head and activations are the space's layer geometry (its family's).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InvalidArchError
from ..families import get_family
from ..space import ArchConfig, SpaceSpec, as_rng
from .elastic import ElasticMBConv, _copy_bn
from .static import MBConv, MobileNetV3, ProxylessNASNet, activation, batch_norm, set_bn_eps


class OFAMobileNetV3(nn.Module):
    """The elastic supernet. ``set_active_subnet(arch)`` picks a subnet; ``forward`` runs it;
    ``get_active_subnet()`` extracts it as a plain :class:`MobileNetV3`."""

    static_class: type[MobileNetV3] = MobileNetV3

    def __init__(self, space: SpaceSpec | None = None) -> None:
        super().__init__()
        self.space = space = space if space is not None else SpaceSpec()
        layers = space.layers(space.max_arch())
        by_kind = {layer.kind: layer for layer in layers}
        stem, first = layers[0], layers[1]
        final, mix = by_kind["final_expand"], by_kind.get("feature_mix")
        self.acts = (stem.act, final.act, mix.act if mix is not None else "")
        self.stem_conv = nn.Conv2d(stem.in_c, stem.out_c, 3, stem.stride, 1, bias=False)
        self.stem_bn = batch_norm(stem.out_c)
        blocks: list[nn.Module] = [MBConv(first)]
        in_c = first.out_c
        self.block_of_slot = {slot: 1 + i for i, slot in enumerate(space.slots())}
        for slot in space.slots():
            s, j = divmod(slot, space.max_depth)
            stage, out_c = space.stages[s], space.stage_channels[s]
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
        self.final_expand_conv = nn.Conv2d(in_c, final.out_c, 1, bias=False)
        self.final_expand_bn = batch_norm(final.out_c)
        if mix is not None:
            self.feature_mix_conv = nn.Conv2d(mix.in_c, mix.out_c, 1, bias=False)
        else:
            self.feature_mix_conv = None
        self.dropout = nn.Dropout(space.dropout)
        self.classifier = nn.Linear(layers[-1].in_c, space.n_classes)
        self.bn_eps = get_family(space.family).bn_eps
        set_bn_eps(self, self.bn_eps)
        self.active_arch = space.max_arch()
        self.set_active_subnet(self.active_arch)

    # -- choosing a subnet -----------------------------------------------------------------------
    def set_active_subnet(self, arch: ArchConfig | dict) -> ArchConfig:
        """Make ``arch`` the subnet that ``forward`` runs (validated against the space)."""
        arch = self.space.validate(arch)
        for slot, index in self.block_of_slot.items():
            self.blocks[index].active_kernel = arch.ks[slot]
            self.blocks[index].active_expand = arch.e[slot]
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
        return [self.block_of_slot[slot] for _, slot, _, _ in self.space.active_blocks(self.active_arch)]

    # -- running -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem_act, final_act, mix_act = self.acts
        x = activation(stem_act, self.stem_bn(self.stem_conv(x)))
        x = self.blocks[0](x)
        for index in self.active_block_indices():
            x = self.blocks[index](x)
        x = activation(final_act, self.final_expand_bn(self.final_expand_conv(x)))
        x = x.mean((2, 3), keepdim=True)
        if self.feature_mix_conv is not None:
            x = activation(mix_act, self.feature_mix_conv(x))
        return self.classifier(self.dropout(torch.flatten(x, 1)))

    # -- extraction ---------------------------------------------------------------------------------
    @torch.no_grad()
    def get_active_subnet(self) -> MobileNetV3:
        """The active subnet as a static network holding copies of its weights."""
        arch = self.active_arch
        layers = self.space.layers(arch)
        net = self.static_class(layers, dropout=self.space.dropout)
        set_bn_eps(net, self.bn_eps)
        net.stem_conv.weight.copy_(self.stem_conv.weight)
        _copy_bn(net.stem_bn, self.stem_bn)
        net.blocks[0].load_state_dict(self.blocks[0].state_dict())
        block_layers = [layer for layer in layers if layer.kind == "mbconv"][1:]
        for target, index, layer in zip(net.blocks[1:], self.active_block_indices(), block_layers):
            target.load_state_dict(self.blocks[index].to_static(layer.hw).state_dict())
        net.final_expand_conv.weight.copy_(self.final_expand_conv.weight)
        _copy_bn(net.final_expand_bn, self.final_expand_bn)
        if self.feature_mix_conv is not None:
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


class OFAProxylessNASNet(OFAMobileNetV3):
    """The elastic OFA-ProxylessNAS supernet (a space of the ``proxyless`` family): ReLU6, no SE,
    no feature mix after pooling, BN eps 1e-3; its static subnets are :class:`ProxylessNASNet`."""

    static_class = ProxylessNASNet

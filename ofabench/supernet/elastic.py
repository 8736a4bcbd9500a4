"""The elastic MBConv block: elastic kernel (centre patch through learned transforms), elastic
expand ratio (sliced convs, sliced BN statistics, sliced SE) and L1 channel sorting."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..space import LayerGeom, make_divisible
from .static import MBConv, activation, batch_norm


def sliced_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm over the first ``x.shape[1]`` channels of ``bn``; in training the running
    statistics of those channels are updated in place (the rest stay untouched)."""
    channels = x.shape[1]
    if channels == bn.num_features:
        return bn(x)
    factor = 0.0
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return F.batch_norm(
        x,
        bn.running_mean[:channels],
        bn.running_var[:channels],
        bn.weight[:channels],
        bn.bias[:channels],
        bn.training or not bn.track_running_stats,
        factor,
        bn.eps,
    )


class ElasticMBConv(nn.Module):
    """An MBConv whose kernel size and expand ratio are chosen per forward pass.

    Weights are held at the largest size; ``active_kernel``/``active_expand`` select the subnet.
    """

    def __init__(
        self,
        in_c: int,
        out_c: int,
        stride: int,
        act: str,
        se: bool,
        kernel_choices: Sequence[int],
        expand_choices: Sequence[int],
    ) -> None:
        super().__init__()
        self.in_c, self.out_c, self.stride, self.act, self.use_se = in_c, out_c, stride, act, se
        self.kernel_choices = tuple(sorted(kernel_choices))
        self.expand_choices = tuple(sorted(expand_choices))
        self.residual = stride == 1 and in_c == out_c
        max_k = self.kernel_choices[-1]
        max_mid = self.mid_channels(self.expand_choices[-1])
        self.expand_conv = nn.Conv2d(in_c, max_mid, 1, bias=False)
        self.expand_bn = batch_norm(max_mid)
        self.dw_conv = nn.Conv2d(
            max_mid, max_mid, max_k, stride, max_k // 2, groups=max_mid, bias=False
        )
        self.dw_bn = batch_norm(max_mid)
        for big, small in self._transform_pairs(self.kernel_choices[0]):
            self.register_parameter(
                f"transform_{big}to{small}", nn.Parameter(torch.eye(small * small))
            )
        if se:
            se_max = make_divisible(max_mid // 4, 8)
            self.se_reduce = nn.Conv2d(max_mid, se_max, 1, bias=True)
            self.se_expand = nn.Conv2d(se_max, max_mid, 1, bias=True)
        self.project_conv = nn.Conv2d(max_mid, out_c, 1, bias=False)
        self.project_bn = batch_norm(out_c)
        self.active_kernel = max_k
        self.active_expand = self.expand_choices[-1]

    def mid_channels(self, expand: int) -> int:
        return make_divisible(round(self.in_c * expand), 8)

    def _transform_pairs(self, down_to: int) -> list[tuple[int, int]]:
        """(bigger, smaller) kernel pairs walked from the largest kernel down to ``down_to``."""
        ks = self.kernel_choices
        return [(ks[i], ks[i - 1]) for i in range(len(ks) - 1, 0, -1) if ks[i - 1] >= down_to]

    def depthwise_weight(self, mid: int, kernel: int) -> torch.Tensor:
        """Depthwise filters of the first ``mid`` channels at ``kernel``: the centre patch of the
        bigger kernel, each step down through its learned (initially identity) transform."""
        weight = self.dw_conv.weight[:mid]
        size = self.kernel_choices[-1]
        for big, small in self._transform_pairs(kernel):
            start = (big - small) // 2
            patch = weight[:, :, start : start + small, start : start + small].reshape(
                mid, small * small
            )
            weight = F.linear(patch, getattr(self, f"transform_{big}to{small}")).view(
                mid, 1, small, small
            )
            size = small
        assert size == kernel, f"kernel {kernel} is not one of {self.kernel_choices}"
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.mid_channels(self.active_expand)
        kernel = self.active_kernel
        h = F.conv2d(x, self.expand_conv.weight[:mid])
        h = activation(self.act, sliced_batch_norm(self.expand_bn, h))
        h = F.conv2d(h, self.depthwise_weight(mid, kernel), None, self.stride, kernel // 2, 1, mid)
        h = activation(self.act, sliced_batch_norm(self.dw_bn, h))
        if self.use_se:
            h = self._squeeze_excite(h, mid)
        h = self.project_bn(F.conv2d(h, self.project_conv.weight[:, :mid]))
        return h + x if self.residual else h

    def _squeeze_excite(self, h: torch.Tensor, mid: int) -> torch.Tensor:
        se_mid = make_divisible(mid // 4, 8)
        gate = h.mean((2, 3), keepdim=True)
        gate = F.relu(
            F.conv2d(gate, self.se_reduce.weight[:se_mid, :mid], self.se_reduce.bias[:se_mid])
        )
        gate = F.conv2d(gate, self.se_expand.weight[:mid, :se_mid], self.se_expand.bias[:mid])
        return h * F.hardsigmoid(gate)

    # -- subnet extraction -------------------------------------------------------------------
    def geometry(self, hw: int) -> LayerGeom:
        return LayerGeom(
            "mbconv",
            hw,
            self.in_c,
            self.out_c,
            mid=self.mid_channels(self.active_expand),
            kernel=self.active_kernel,
            stride=self.stride,
            se=self.use_se,
            act=self.act,
            residual=self.residual,
        )

    @torch.no_grad()
    def to_static(self, hw: int) -> MBConv:
        """A plain :class:`MBConv` with copies of the active weights."""
        geom = self.geometry(hw)
        mid, block = geom.mid, MBConv(geom)
        block.expand_conv.weight.copy_(self.expand_conv.weight[:mid])
        _copy_bn(block.expand_bn, self.expand_bn)
        block.dw_conv.weight.copy_(self.depthwise_weight(mid, geom.kernel))
        _copy_bn(block.dw_bn, self.dw_bn)
        if self.use_se:
            se_mid = geom.se_mid
            block.se.reduce.weight.copy_(self.se_reduce.weight[:se_mid, :mid])
            block.se.reduce.bias.copy_(self.se_reduce.bias[:se_mid])
            block.se.expand.weight.copy_(self.se_expand.weight[:mid, :se_mid])
            block.se.expand.bias.copy_(self.se_expand.bias[:mid])
        block.project_conv.weight.copy_(self.project_conv.weight[:, :mid])
        _copy_bn(block.project_bn, self.project_bn)
        return block

    # -- elastic width -------------------------------------------------------------------------
    @torch.no_grad()
    def sort_channels(self, protected_expands: Sequence[int] = ()) -> None:
        """Re-order the middle channels by the L1 norm of the projection's input weights,
        most important first. Channels inside the width of each ``protected_expands`` ratio stay
        inside it (so a width trained in an earlier phase keeps its channels). The full network's
        outputs are unchanged: every per-channel tensor is permuted the same way."""
        importance = self.project_conv.weight.abs().sum(dim=(0, 2, 3))
        group = torch.zeros_like(importance)
        for width in sorted({self.mid_channels(e) for e in protected_expands}, reverse=True):
            group[width:] += 1
        order = torch.argsort(group * (importance.max() + 1) * 2 - importance, stable=True)
        self.project_conv.weight.copy_(self.project_conv.weight[:, order])
        self.expand_conv.weight.copy_(self.expand_conv.weight[order])
        self.dw_conv.weight.copy_(self.dw_conv.weight[order])
        _permute_bn(self.expand_bn, order)
        _permute_bn(self.dw_bn, order)
        if self.use_se:
            self.se_reduce.weight.copy_(self.se_reduce.weight[:, order])
            self.se_expand.weight.copy_(self.se_expand.weight[order])
            self.se_expand.bias.copy_(self.se_expand.bias[order])
            se_order = torch.argsort(
                self.se_expand.weight.abs().sum(dim=(0, 2, 3)), descending=True, stable=True
            )
            self.se_expand.weight.copy_(self.se_expand.weight[:, se_order])
            self.se_reduce.weight.copy_(self.se_reduce.weight[se_order])
            self.se_reduce.bias.copy_(self.se_reduce.bias[se_order])


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d) -> None:
    n = dst.num_features
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[:n])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
    dst.eps, dst.momentum = src.eps, src.momentum


def _permute_bn(bn: nn.BatchNorm2d, order: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        tensor = getattr(bn, name)
        tensor.copy_(tensor[order])

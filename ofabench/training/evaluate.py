"""BN recalibration and accuracy of subnets (of a supernet) and of static networks.

Networks are evaluated on private copies in ``channels_last`` memory format: oneDNN's CPU
convolutions (the depthwise ones above all) run 1.3-1.6x faster in it than in NCHW, with
identical results, and the caller's network is left untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..space import ArchConfig
from ..supernet import OFAMobileNetV3
from .data import Dataset, Split, resize_batch

DEFAULT_RECAL_IMAGES = 2000
RECAL_SEED = 0


def channels_last(module: nn.Module) -> nn.Module:
    """``module`` with its 4-d parameters and buffers in ``channels_last`` format (in place)."""
    return module.to(memory_format=torch.channels_last)


def recal_subset(
    split: Split, n: int = DEFAULT_RECAL_IMAGES, seed: int = RECAL_SEED
) -> torch.Tensor:
    """A fixed (seeded) subset of ``n`` images of ``split`` for BN recalibration."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"BN recalibration needs at least 1 image (recal_images), got {n!r}")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    return split.images[order[:n]]


@torch.no_grad()
def recompute_bn_statistics(
    module: nn.Module, images: torch.Tensor, resolution: int, batch_size: int = 500
) -> int:
    """Reset every BN layer of ``module`` and recompute its running statistics as the cumulative
    average (``momentum=None``) over ``images`` resized to ``resolution``. Leaves ``module`` in
    eval mode; returns the number of images used."""
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    module.train()
    try:
        for start in range(0, len(images), batch_size):
            module(resize_batch(images[start : start + batch_size], resolution))
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        module.eval()
    return len(images)


def recalibrate_bn(
    net: OFAMobileNetV3,
    arch: ArchConfig,
    images: torch.Tensor,
    n: int = DEFAULT_RECAL_IMAGES,
    batch_size: int = 500,
) -> int:
    """Recompute the BN running statistics of subnet ``arch`` in place over the first ``n`` of
    ``images`` resized to ``arch.r`` (see :func:`recompute_bn_statistics`). Leaves ``net`` in
    eval mode with ``arch`` active; returns the number of images used. Work on a copy
    (:func:`evaluate_subnet` does) to keep the supernet's own statistics."""
    net.set_active_subnet(arch)
    return recompute_bn_statistics(net, images[:n], arch.r, batch_size)


@torch.no_grad()
def correct_predictions(
    module: nn.Module, split: Split, resolution: int, batch_size: int = 500
) -> torch.Tensor:
    """Whether ``module`` (in eval mode) classifies each image of ``split`` right, at
    ``resolution`` (a bool tensor, one entry per image, in the split's order)."""
    module.eval()
    out = torch.zeros(len(split), dtype=torch.bool)
    for start in range(0, len(split), batch_size):
        images = resize_batch(split.images[start : start + batch_size], resolution)
        predicted = module(images).argmax(1)
        out[start : start + len(predicted)] = predicted == split.labels[start : start + batch_size]
    return out


def accuracy(module: nn.Module, split: Split, resolution: int, batch_size: int = 500) -> float:
    """Top-1 accuracy (0..1) of ``module`` (in eval mode) on ``split`` at ``resolution``."""
    if not len(split):
        return 0.0
    return float(correct_predictions(module, split, resolution, batch_size).float().mean())


def evaluate(net: OFAMobileNetV3, arch: ArchConfig, split: Split, batch_size: int = 500) -> float:
    """Top-1 accuracy (0..1) of subnet ``arch`` on ``split`` at ``arch.r``, with the BN statistics
    the network holds (recalibrate first)."""
    net.set_active_subnet(arch)
    return accuracy(net, split, arch.r, batch_size)


class SubnetEvaluator:
    """Accuracy of any number of subnets of one supernet, each after BN recalibration on the same
    fixed subset of training images, on the chosen splits (``max_images``: only their first
    images). Works on one private ``channels_last`` copy of the supernet, made once: every call
    resets and recomputes all the statistics it reads, so results do not depend on call order."""

    def __init__(
        self,
        net: OFAMobileNetV3,
        dataset: Dataset,
        splits: Sequence[str] = ("val", "test"),
        recal_images: int = DEFAULT_RECAL_IMAGES,
        max_images: int | None = None,
        batch_size: int = 500,
    ) -> None:
        self.net = channels_last(copy.deepcopy(net))
        self.recal = recal_subset(dataset.train, recal_images)
        self.splits = {name: _head(dataset.split(name), max_images) for name in splits}
        self.batch_size = batch_size

    @property
    def recal_images(self) -> int:
        return len(self.recal)

    def __call__(self, arch: ArchConfig) -> dict[str, float]:
        """``{"<split>_acc": accuracy}`` of subnet ``arch``."""
        return {
            f"{name}_acc": float(hits.float().mean()) if len(hits) else 0.0
            for name, hits in self.correct(arch).items()
        }

    def correct(self, arch: ArchConfig) -> dict[str, torch.Tensor]:
        """``{"<split>": per-image correctness}`` of subnet ``arch`` (see
        :func:`correct_predictions`), after its BN recalibration."""
        recalibrate_bn(self.net, arch, self.recal, len(self.recal), self.batch_size)
        return {
            name: correct_predictions(self.net, split, arch.r, self.batch_size)
            for name, split in self.splits.items()
        }


def evaluate_subnet(
    net: OFAMobileNetV3,
    arch: ArchConfig,
    dataset: Dataset,
    splits: Sequence[str] = ("val", "test"),
    recal_images: int = DEFAULT_RECAL_IMAGES,
    max_images: int | None = None,
    batch_size: int = 500,
) -> dict[str, float]:
    """Accuracy of ``arch`` on each split after BN recalibration on a copy of ``net`` (the
    supernet is left untouched). ``max_images`` evaluates only the first images of each split."""
    evaluator = SubnetEvaluator(net, dataset, splits, recal_images, max_images, batch_size)
    return evaluator(arch)


def evaluate_static(
    module: nn.Module,
    resolution: int,
    dataset: Dataset,
    splits: Sequence[str] = ("val", "test"),
    recal_images: int = DEFAULT_RECAL_IMAGES,
    max_images: int | None = None,
    batch_size: int = 500,
) -> dict[str, float]:
    """Accuracy of a static network (e.g. a from-scratch baseline) at ``resolution`` on each
    split, after the same BN recalibration subnets get, on a copy (``module`` is untouched)."""
    net = channels_last(copy.deepcopy(module))
    recompute_bn_statistics(net, recal_subset(dataset.train, recal_images), resolution, batch_size)
    return {
        f"{name}_acc": accuracy(net, _head(dataset.split(name), max_images), resolution, batch_size)
        for name in splits
    }


def _head(split: Split, max_images: int | None) -> Split:
    return split if max_images is None else split.take(slice(0, max_images))

"""BN recalibration and accuracy of one subnet of a supernet."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..space import ArchConfig
from ..supernet import OFAMobileNetV3
from .data import Dataset, Split, resize_batch

DEFAULT_RECAL_IMAGES = 2000
RECAL_SEED = 0


def recal_subset(
    split: Split, n: int = DEFAULT_RECAL_IMAGES, seed: int = RECAL_SEED
) -> torch.Tensor:
    """A fixed (seeded) subset of ``n`` images of ``split`` for BN recalibration."""
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    return split.images[order[:n]]


@torch.no_grad()
def recalibrate_bn(
    net: OFAMobileNetV3,
    arch: ArchConfig,
    images: torch.Tensor,
    n: int = DEFAULT_RECAL_IMAGES,
    batch_size: int = 500,
) -> int:
    """Recompute the BN running statistics of subnet ``arch`` in place, as the cumulative average
    (``momentum=None``) over the first ``n`` of ``images`` resized to ``arch.r``. Leaves ``net``
    in eval mode with ``arch`` active; returns the number of images used. Work on a copy
    (:func:`evaluate_subnet` does) to keep the supernet's own statistics."""
    net.set_active_subnet(arch)
    images = images[:n]
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    try:
        for start in range(0, len(images), batch_size):
            net(resize_batch(images[start : start + batch_size], arch.r))
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        net.eval()
    return len(images)


@torch.no_grad()
def evaluate(net: OFAMobileNetV3, arch: ArchConfig, split: Split, batch_size: int = 500) -> float:
    """Top-1 accuracy (0..1) of subnet ``arch`` on ``split`` at ``arch.r``, with the BN statistics
    the network holds (recalibrate first)."""
    net.set_active_subnet(arch)
    net.eval()
    correct = 0
    for start in range(0, len(split), batch_size):
        images = resize_batch(split.images[start : start + batch_size], arch.r)
        logits = net(images)
        correct += int((logits.argmax(1) == split.labels[start : start + batch_size]).sum())
    return correct / max(1, len(split))


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
    subnet = copy.deepcopy(net)
    recalibrate_bn(
        subnet, arch, recal_subset(dataset.train, recal_images), recal_images, batch_size
    )
    out = {}
    for name in splits:
        split = dataset.split(name)
        if max_images is not None:
            split = split.take(slice(0, max_images))
        out[f"{name}_acc"] = evaluate(subnet, arch, split, batch_size)
    return out

"""Shared fixtures: the reference data folder, small spaces, deterministic seeds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
OFA_REFERENCE = REPO.parent / "shared" / "data" / "ofa_reference"


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for the test: tiny convolutions and MLPs run fastest (and steadiest
    on a shared 2-core box) without a second intra-op thread. Modules that want it for every
    test say ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ofa_reference() -> Path:
    """The OFA authors' published data (never copied into the repo); skip where it is absent."""
    if not OFA_REFERENCE.is_dir():
        pytest.skip(f"OFA reference data not found at {OFA_REFERENCE}")
    return OFA_REFERENCE


def randomize_bn_and_transforms(net: torch.nn.Module, scale: float = 0.05) -> None:
    """Non-trivial BN statistics and kernel transforms, so equality tests can fail."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        for name, param in net.named_parameters():
            if "transform_" in name or "matrix" in name:
                param.add_(scale * torch.randn_like(param))


# A two-stage 1-channel space small enough to train, profile and search in seconds.
TINY_SPACE = {
    "name": "tiny_study",
    "width_mult": 1.0,
    "in_channels": 1,
    "n_classes": 10,
    "stem_width": 8,
    "stem_stride": 1,
    "first_block_width": 8,
    "stages": [
        {"width": 8, "stride": 2, "act": "relu", "se": False},
        {"width": 16, "stride": 2, "act": "h_swish", "se": True},
    ],
    "final_expand_width": 48,
    "feature_mix_width": 64,
    "kernel_choices": [3, 5],
    "expand_choices": [3, 4],
    "depth_choices": [1, 2],
    "resolutions": [16, 24],
    "dropout": 0.0,
    "max_depth": 2,
}


def randomize_biases(net: torch.nn.Module, low: float = -0.3, high: float = 0.3) -> None:
    """Every ``*.bias`` parameter drawn uniformly (zero biases would hide a wrong mapping)."""
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith(".bias"):
                param.uniform_(low, high)


def recalibrate_bn(net: torch.nn.Module, images: torch.Tensor) -> None:
    """``net``'s BN statistics recomputed on ``images`` (cumulative average), then eval mode:
    random running statistics alone make a deep network's logits input-independent, and an
    output-equality check on such logits could not fail."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    net.train()
    with torch.no_grad():
        net(images)
    for bn in norms:
        bn.momentum = 0.1
    net.eval()

"""Elastic supernet: subnet extraction, elastic kernel/width/depth, BN slicing, counting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ofabench.errors import InvalidArchError
from ofabench.latency.counting import count_macs, count_params, supernet_params
from ofabench.space import get_space
from ofabench.supernet import OFAMobileNetV3
from ofabench.supernet.elastic import sliced_batch_norm

from .conftest import randomize_bn_and_transforms

SMALL = get_space("small32_w0.5")


@pytest.fixture(scope="module")
def small_net() -> OFAMobileNetV3:
    torch.manual_seed(1)
    net = OFAMobileNetV3(SMALL)
    randomize_bn_and_transforms(net)
    return net.eval()


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("seed", range(12))
def test_extracted_subnet_matches_supernet(small_net: OFAMobileNetV3, seed: int) -> None:
    arch = small_net.sample_active_subnet(seed)
    x = torch.randn(3, SMALL.in_channels, arch.r, arch.r)
    with torch.no_grad():
        want = small_net(x)
        subnet = small_net.get_active_subnet().eval()
        got = subnet(x)
    assert _max_diff(want, got) <= 1e-5
    # the static subnet holds exactly the parameters the counter predicts
    assert sum(p.numel() for p in subnet.parameters()) == count_params(SMALL, arch)


@pytest.mark.parametrize("seed", range(3))
def test_extraction_on_imagenet_space(seed: int) -> None:
    space = get_space("ofa_mbv3_w1.0")
    net = OFAMobileNetV3(space)
    randomize_bn_and_transforms(net)
    net.eval()
    arch = net.set_active_subnet(dataclasses.replace(space.sample(seed), r=128))
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert _max_diff(net(x), net.get_active_subnet().eval()(x)) <= 1e-5
    assert arch.r == 128


def test_extracted_subnet_is_independent_copy(small_net: OFAMobileNetV3) -> None:
    small_net.set_active_subnet(SMALL.max_arch())
    subnet = small_net.get_active_subnet()
    with torch.no_grad():
        subnet.blocks[1].project_conv.weight.zero_()
    assert small_net.blocks[1].project_conv.weight.abs().sum() > 0


def test_kernel_transform_identity_gives_centre_crop() -> None:
    net = OFAMobileNetV3(SMALL)
    block = net.blocks[1]
    full = block.dw_conv.weight
    mid = block.mid_channels(3)
    assert torch.equal(block.depthwise_weight(mid, 7), full[:mid])
    assert torch.allclose(block.depthwise_weight(mid, 5), full[:mid, :, 1:6, 1:6])
    assert torch.allclose(block.depthwise_weight(mid, 3), full[:mid, :, 2:5, 2:5])


def test_kernel_transform_is_applied_and_chained() -> None:
    net = OFAMobileNetV3(SMALL)
    block = net.blocks[1]
    with torch.no_grad():
        block.transform_7to5.copy_(torch.randn(25, 25))
        block.transform_5to3.copy_(torch.randn(9, 9))
    mid = block.mid_channels(6)
    w = block.dw_conv.weight[:mid]
    five = (w[:, :, 1:6, 1:6].reshape(mid, 25) @ block.transform_7to5.T).reshape(mid, 1, 5, 5)
    three = (five[:, :, 1:4, 1:4].reshape(mid, 9) @ block.transform_5to3.T).reshape(mid, 1, 3, 3)
    assert torch.allclose(block.depthwise_weight(mid, 5), five, atol=1e-5)
    assert torch.allclose(block.depthwise_weight(mid, 3), three, atol=1e-5)
    # and gradients reach the transforms
    block.depthwise_weight(mid, 3).sum().backward()
    assert block.transform_5to3.grad is not None and block.transform_7to5.grad.abs().sum() > 0


def test_elastic_depth_runs_first_blocks_of_each_stage(small_net: OFAMobileNetV3) -> None:
    arch = SMALL.validate({**SMALL.max_arch().to_dict(), "d": [2, 3, 4, 2, 3]})
    small_net.set_active_subnet(arch)
    per_stage = SMALL.max_depth
    assert small_net.active_block_indices() == [
        1 + s * per_stage + j for s, d in enumerate(arch.d) for j in range(d)
    ]


def test_sliced_batch_norm_matches_a_small_bn_and_updates_only_its_slice() -> None:
    bn = torch.nn.BatchNorm2d(16)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    reference = torch.nn.BatchNorm2d(8)
    reference.load_state_dict({k: (v[:8] if v.dim() else v) for k, v in bn.state_dict().items()})
    x = torch.randn(4, 8, 5, 5) * 3 + 1
    before_tail = bn.running_mean[8:].clone()
    bn.train(), reference.train()
    assert torch.allclose(sliced_batch_norm(bn, x), reference(x), atol=1e-5)
    assert torch.allclose(bn.running_mean[:8], reference.running_mean)
    assert torch.allclose(bn.running_var[:8], reference.running_var)
    assert torch.equal(bn.running_mean[8:], before_tail)
    bn.eval(), reference.eval()
    assert torch.allclose(sliced_batch_norm(bn, x), reference(x), atol=1e-5)
    # cumulative averaging (momentum None), as BN recalibration uses
    bn.momentum = reference.momentum = None
    bn.reset_running_stats(), reference.reset_running_stats()
    bn.train(), reference.train()
    for _ in range(3):
        batch = torch.randn(4, 8, 5, 5) * 2
        sliced_batch_norm(bn, batch), reference(batch)
    assert torch.allclose(bn.running_var[:8], reference.running_var, atol=1e-6)


def test_sort_channels_keeps_full_network_outputs() -> None:
    torch.manual_seed(2)
    net = OFAMobileNetV3(SMALL)
    randomize_bn_and_transforms(net)
    net.eval().set_active_subnet({**SMALL.max_arch().to_dict(), "ks": [5] * SMALL.n_blocks})
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        before = net(x)
        net.sort_channels()
        after = net(x)
    assert _max_diff(before, after) < 1e-4
    block = net.blocks[5]
    importance = block.project_conv.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])
    se_importance = block.se_expand.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(se_importance[:-1] >= se_importance[1:])


def test_sort_channels_protects_earlier_widths() -> None:
    net = OFAMobileNetV3(SMALL)
    block = net.blocks[2]
    small = block.mid_channels(4)
    with torch.no_grad():
        # make every channel outside the e=4 width more important than every channel inside it
        block.project_conv.weight[:, small:] += 100.0
        inside = block.expand_conv.weight[:small].clone()
    net.sort_channels(protected_expands=[4])
    kept = block.expand_conv.weight[:small]
    # the same set of channels stays inside the e=4 width, now ordered by importance
    assert sorted(map(tuple, kept[:, :, 0, 0].tolist())) == sorted(
        map(tuple, inside[:, :, 0, 0].tolist())
    )
    with pytest.raises(InvalidArchError):
        net.sort_channels(protected_expands=[5])


def test_training_step_updates_only_active_weights() -> None:
    net = OFAMobileNetV3(SMALL).train()
    arch = SMALL.validate({**SMALL.min_arch().to_dict(), "r": 32})
    net.set_active_subnet(arch)
    x, y = torch.randn(4, 1, 32, 32), torch.randint(0, 10, (4,))
    F.cross_entropy(net(x), y).backward()
    skipped = net.blocks[1 + SMALL.max_depth - 1]  # last slot of stage 1 (depth 2 active)
    assert skipped.expand_conv.weight.grad is None
    active = net.blocks[1]
    mid = active.mid_channels(3)
    grad = active.expand_conv.weight.grad
    assert grad[:mid].abs().sum() > 0 and grad[mid:].abs().sum() == 0


def test_published_macs_and_params() -> None:
    w10, w12 = get_space("ofa_mbv3_w1.0"), get_space("ofa_mbv3_w1.2")
    assert count_macs(w10, w10.uniform(3, 3, 4, 224)) == 226_193_808  # "226M" in the OFA paper
    assert round(supernet_params(w10) / 1e6, 2) == 7.68
    assert round(supernet_params(w12) / 1e6, 2) == 10.72
    assert sum(p.numel() for p in OFAMobileNetV3(w10).parameters()) == supernet_params(w10)


def test_set_active_subnet_validates() -> None:
    net = OFAMobileNetV3(SMALL)
    with pytest.raises(InvalidArchError, match="'d'"):
        net.set_active_subnet({**SMALL.max_arch().to_dict(), "d": [5] * 5})
    assert net.sample_active_subnet(np.random.default_rng(0)) == SMALL.sample(
        np.random.default_rng(0)
    )

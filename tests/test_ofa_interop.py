"""Interoperability with the reference OFA implementation (PyPI ``ofa``, installed --no-deps)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ofabench.errors import CheckpointError, InvalidArchError
from ofabench.latency.counting import count_macs, count_params
from ofabench.space import get_space
from ofabench.supernet import OFAMobileNetV3
from ofabench.supernet.checkpoint import load_supernet, save_supernet
from ofabench.supernet.ofa_import import load_ofa_state_dict, normalize_ofa_key, ofa_key_to_ofabench

from .conftest import randomize_biases, randomize_bn_and_transforms

ofa_networks = pytest.importorskip(
    "ofa.imagenet_classification.elastic_nn.networks",
    reason="the reference `ofa` package is not installed (pip install ofa --no-deps)",
)


def reference_supernet(width: float) -> torch.nn.Module:
    torch.manual_seed(3)
    ref = ofa_networks.OFAMobileNetV3(
        width_mult=width, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    randomize_bn_and_transforms(ref)
    randomize_biases(ref)
    return ref.eval()


@pytest.fixture(scope="module", params=["1.0", "1.2"])
def pair(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, OFAMobileNetV3]:
    ref = reference_supernet(float(request.param))
    net = OFAMobileNetV3(get_space(f"ofa_mbv3_w{request.param}"))
    return ref, load_ofa_state_dict(net, ref.state_dict()).eval()


def real_looking_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth images with their own contrast and colour (upsampled low-frequency noise plus a
    little fine noise): statistics computed on them keep a network's output input-dependent."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, 6, 6, generator=gen)
    images = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    contrast = 0.5 + 1.5 * torch.rand(n, 1, 1, 1, generator=gen)
    return contrast * images + 0.3 * torch.randn(n, 3, size, size, generator=gen)


def recalibrate(ref: torch.nn.Module, arch, resolution: int) -> None:
    """Recompute the BN running statistics of ``ref``'s subnet ``arch`` on real-looking images.
    With the random statistics of :func:`reference_supernet` alone, the deep random network's
    logits do not depend on the input (two inputs differ by 6e-8), so equal outputs prove little."""
    ref.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))
    norms = [m for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # a cumulative average: the statistics of the batch
    ref.train()
    with torch.no_grad():
        ref(real_looking_images(16, resolution, seed=1))
    for module in norms:
        module.momentum = 0.1
    ref.eval()


def _outputs(
    ref: torch.nn.Module, net: OFAMobileNetV3, arch, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both networks' logits on ``x`` for ``arch``, with BN statistics recomputed for it in the
    reference and copied over with the weights."""
    recalibrate(ref, arch, x.shape[-1])
    load_ofa_state_dict(net, ref.state_dict())
    net.set_active_subnet(arch)
    with torch.no_grad():
        return ref(x), net.eval()(x)


def assert_input_dependent(logits: torch.Tensor) -> None:
    """Two different inputs give clearly different logits (else equality says nothing)."""
    assert float((logits[0] - logits[1]).abs().max()) > 1e-2


def assert_same_logits(ref: torch.nn.Module, net: Any, x: torch.Tensor) -> torch.Tensor:
    """The reference's logits on ``x`` (input-dependent) equal ofabench's supernet's at its
    active subnet and the extracted static subnet's, within 1e-5; returns the reference's."""
    with torch.no_grad():
        want, got = ref(x), net.eval()(x)
        static = net.get_active_subnet().eval()(x)
    assert_input_dependent(want)
    assert float((want - got).abs().max()) <= 1e-5
    assert float((static - got).abs().max()) <= 1e-5
    return want


@pytest.mark.parametrize("seed", range(4))
def test_same_weights_same_subnet_same_outputs(pair, seed: int) -> None:
    ref, net = pair
    arch = net.space.sample(np.random.default_rng(seed))
    x = real_looking_images(2, 128, seed=10 + seed)
    want, got = _outputs(ref, net, arch, x)
    assert_input_dependent(want)
    assert float((want - got).abs().max()) <= 1e-5


def test_max_and_min_subnets_match(pair) -> None:
    ref, net = pair
    x = real_looking_images(2, 160, seed=20)
    for arch in (net.space.max_arch(), net.space.min_arch()):
        want, got = _outputs(ref, net, arch, x)
        assert_input_dependent(want)
        assert float((want - got).abs().max()) <= 1e-5


@pytest.mark.parametrize("where", ["stem_conv.weight", "blocks.1.dw_conv.weight", "classifier.weight"])
def test_the_comparison_fails_when_one_weight_differs(pair, where: str) -> None:
    """The equality check can fail: one weight of ofabench's copy changed by 0.05 changes the
    logits by far more than the 1e-5 tolerance."""
    ref, net = pair
    arch = net.space.max_arch()
    recalibrate(ref, arch, 128)
    load_ofa_state_dict(net, ref.state_dict())
    net.set_active_subnet(arch)
    with torch.no_grad():
        net.get_parameter(where).view(-1)[0] += 0.05
        x = real_looking_images(2, 128, seed=30)
        want, got = ref(x), net.eval()(x)
    assert float((want - got).abs().max()) > 1e-4


def _legacy(key: str) -> str:
    """Rewrite a current OFA key in the legacy spelling (mobile_inverted_conv, single nesting)."""
    key = key.replace(".conv.inverted_bottleneck", ".mobile_inverted_conv.inverted_bottleneck")
    key = key.replace(".conv.depth_conv", ".mobile_inverted_conv.depth_conv")
    key = key.replace(".conv.point_linear", ".mobile_inverted_conv.point_linear")
    return key.replace(".bn.bn.", ".bn.").replace(".conv.conv.", ".conv.")


def test_legacy_and_wrapped_state_dicts_load_equal(tmp_path) -> None:
    ref = reference_supernet(1.0)
    current = ref.state_dict()
    legacy = {_legacy(k): v for k, v in current.items()}
    assert any(".mobile_inverted_conv." in k for k in legacy) and not any(
        ".bn.bn." in k for k in legacy
    )
    # the classifier nested twice, as some checkpoints have it
    legacy["classifier.linear.linear.weight"] = legacy.pop("classifier.linear.weight")
    wrapped = {"state_dict": {f"module.{k}": v for k, v in legacy.items()}, "epoch": 3}
    space = get_space("ofa_mbv3_w1.0")
    a = load_ofa_state_dict(OFAMobileNetV3(space), current).eval()
    b = load_ofa_state_dict(OFAMobileNetV3(space), wrapped).eval()
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    # an OFA checkpoint on disk loads through the generic checkpoint loader too
    path = tmp_path / "ofa_mbv3_d234_e346_k357_w1.0"
    torch.save({"state_dict": current}, path)
    c = load_supernet(path, space)
    assert torch.equal(c.blocks[7].transform_7to5, a.blocks[7].transform_7to5)


def test_key_normalisation() -> None:
    assert normalize_ofa_key("blocks.3.mobile_inverted_conv.depth_conv.bn.bn.weight") == (
        "blocks.3.conv.depth_conv.bn.weight"
    )
    assert (
        ofa_key_to_ofabench("blocks.5.conv.depth_conv.conv.7to5_matrix")
        == "blocks.5.transform_7to5"
    )
    assert (
        ofa_key_to_ofabench("blocks.5.conv.depth_conv.se.fc.reduce.bias")
        == "blocks.5.se_reduce.bias"
    )
    assert ofa_key_to_ofabench("first_conv.bn.running_var") == "stem_bn.running_var"
    with pytest.raises(CheckpointError, match="not an OFA-MobileNetV3"):
        ofa_key_to_ofabench("encoder.layer.0.weight")


def test_checkpoint_from_another_space_is_refused(tmp_path) -> None:
    ref = reference_supernet(1.2)
    with pytest.raises(CheckpointError, match="another space"):
        load_ofa_state_dict(OFAMobileNetV3(get_space("ofa_mbv3_w1.0")), ref.state_dict())
    native = tmp_path / "supernet.pt"
    save_supernet(OFAMobileNetV3(get_space("small32_w0.5")), native)
    with pytest.raises(CheckpointError, match="pass the space"):
        load_supernet(native, get_space("small32"))
    assert isinstance(load_supernet(native, get_space("small32_w0.5")), OFAMobileNetV3)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_supernet(tmp_path / "junk.pt", get_space("small32_w0.5"))


@pytest.mark.parametrize("seed", range(3))
def test_counts_match_reference_counter(seed: int) -> None:
    from ofa.utils.pytorch_utils import count_net_flops, count_parameters

    space = get_space("ofa_mbv3_w1.0")
    ref = ofa_networks.OFAMobileNetV3(
        width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    arch = space.sample(seed)
    ref.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))
    subnet = ref.get_active_subnet()
    # the reference accumulates in float32: equal to 1e-6 relative
    assert count_macs(space, arch) == pytest.approx(
        count_net_flops(subnet, (1, 3, arch.r, arch.r)), rel=1e-6
    )
    assert count_params(space, arch) == count_parameters(subnet)


def test_arch_from_ofa_net_config() -> None:
    space = get_space("ofa_mbv3_w1.0")
    ref = ofa_networks.OFAMobileNetV3(
        width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    arch = space.sample(11)
    ref.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))
    config = ref.get_active_subnet().config
    got = space.arch_from_ofa_net_config(config, r=arch.r)
    assert got.d == arch.d and got.r == arch.r
    assert space.active_blocks(got) == space.active_blocks(arch)
    with pytest.raises(InvalidArchError, match="does not fit"):
        get_space("ofa_mbv3_w1.2").arch_from_ofa_net_config(config, r=224)

"""The TFLite writer checked numerically against PyTorch on LiteRT, and the ``litert`` backend."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip(
    "ai_edge_litert.interpreter",
    reason="ai-edge-litert is not installed (pip install 'ofabench[tflite]')",
)

from ofabench.devices import MeasureSettings, get_backend  # noqa: E402
from ofabench.devices.litert_backend import LiteRTBackend, run_tflite  # noqa: E402
from ofabench.devices.tflite_writer import (  # noqa: E402
    module_to_tflite,
    supported_modules,
    write_tflite,
)
from ofabench.errors import BackendError, ConfigError, ExportError  # noqa: E402
from ofabench.space import LayerGeom, get_space  # noqa: E402
from ofabench.supernet.ofa_mbv3 import OFAMobileNetV3  # noqa: E402
from ofabench.supernet.static import MBConv  # noqa: E402

from .conftest import randomize_bn_and_transforms  # noqa: E402

QUICK = MeasureSettings(warmup=3, repeats=10, max_rounds=1)


def relative_error(model: nn.Module, input_shape: tuple[int, ...], seed: int = 0) -> float:
    """Max |LiteRT - PyTorch| over the PyTorch output's max magnitude, on a random input."""
    model = model.eval()
    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_tflite(module_to_tflite(model, input_shape), x.numpy())
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-6))


def make_block(
    in_c: int, out_c: int, hw: int, expand: int, kernel: int, stride: int, se: bool, act: str
) -> MBConv:
    geom = LayerGeom(
        "mbconv",
        hw,
        in_c,
        out_c,
        mid=in_c * expand,
        kernel=kernel,
        stride=stride,
        se=se,
        act=act,
        residual=stride == 1 and in_c == out_c,
        has_expand=expand != 1,
    )
    block = MBConv(geom)
    randomize_bn_and_transforms(block)
    return block


BLOCK_CASES = [
    (kernel, stride, se, act, out_c)
    for kernel, stride, se, act, out_c in itertools.product(
        (3, 5, 7), (1, 2), (False, True), ("relu", "h_swish"), (16, 24)
    )
    if not (stride == 2 and out_c == 16)  # stride 2 has no residual anyway
]


@pytest.mark.parametrize(("kernel", "stride", "se", "act", "out_c"), BLOCK_CASES)
def test_mbconv_matches_pytorch(kernel: int, stride: int, se: bool, act: str, out_c: int) -> None:
    block = make_block(16, out_c, 12, 3, kernel, stride, se, act)
    assert relative_error(block, (1, 16, 12, 12)) <= 1e-4


@pytest.mark.parametrize("hw", [11, 12])
def test_block_without_expand_and_odd_input(hw: int) -> None:
    """No expand conv (OFA's first block), stride 2 on odd and even sizes, batch of 2."""
    block = make_block(16, 16, hw, 1, 3, 1, False, "relu")
    assert relative_error(block, (2, 16, hw, hw)) <= 1e-4
    strided = make_block(16, 24, hw, 4, 5, 2, True, "h_swish")
    assert relative_error(strided, (2, 16, hw, hw)) <= 1e-4


def test_imagenet_block_matches_pytorch() -> None:
    """An OFA ImageNet-space block at its real size: 40->240->40, k5, SE, 28x28."""
    block = make_block(40, 40, 28, 6, 5, 1, True, "relu")
    assert block.residual and block.se is not None
    assert relative_error(block, (1, 40, 28, 28)) <= 1e-4


@pytest.fixture(scope="module")
def small_subnet() -> nn.Module:
    torch.manual_seed(1)
    supernet = OFAMobileNetV3(get_space("small32_w0.5"))
    randomize_bn_and_transforms(supernet)
    supernet.sample_active_subnet(rng=3)
    return supernet.get_active_subnet().eval()


def test_whole_small_subnet_matches_pytorch(small_subnet: nn.Module) -> None:
    assert small_subnet.stem_conv.in_channels == 1
    assert relative_error(small_subnet, (1, 1, 32, 32)) <= 1e-4


def test_sequential_of_plain_layers_matches_pytorch() -> None:
    """The layers outside blocks, as nn.Sequential: conv+BN+act fused, stride-2 pad, head."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1, bias=False),
        nn.BatchNorm2d(8),
        nn.Hardswish(),
        nn.Conv2d(8, 8, 3, 1, 1, groups=8),
        nn.ReLU6(),
        nn.BatchNorm2d(8),
        nn.Hardsigmoid(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 5),
    )
    randomize_bn_and_transforms(model)
    assert relative_error(model, (1, 3, 16, 16)) <= 1e-4


def test_written_file_carries_provenance(tmp_path, small_subnet: nn.Module) -> None:
    from ai_edge_litert import schema_py_generated as schema

    path = write_tflite(small_subnet, (1, 1, 32, 32), tmp_path / "net.tflite")
    data = path.read_bytes()
    assert data[4:8] == b"TFL3"
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    assert b'"provenance"' in model.description and b'"input_layout": "NHWC"' in model.description
    assert model.buffers[0].data is None
    assert not list(tmp_path.glob(".*.tmp"))


def test_unsupported_module_is_named() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU())
    with pytest.raises(ExportError, match="cannot convert GELU to TFLite; supported: .*MBConv"):
        module_to_tflite(model, (1, 3, 8, 8))
    with pytest.raises(BackendError, match="GELU"):
        LiteRTBackend().measure(model, (1, 3, 8, 8), QUICK)
    assert "MobileNetV3" in supported_modules()


def test_grouped_conv_matches_and_reflect_padding_is_refused() -> None:
    """Grouped convolutions are CONV_2D with in/groups weight depth (LiteRT runs them);
    padding modes other than zeros have no TFLite form."""
    assert relative_error(nn.Conv2d(8, 8, 3, padding=1, groups=2), (1, 8, 8, 8)) <= 1e-4
    with pytest.raises(ExportError, match="padding_mode 'reflect' is not supported"):
        module_to_tflite(nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), (1, 8, 8, 8))


def test_measure_imagenet_block() -> None:
    block = make_block(40, 40, 28, 6, 5, 1, True, "relu").eval()
    result = get_backend("litert", threads=1).measure(block, (1, 40, 28, 28), QUICK)
    assert 0 < result.median_ms < 100
    assert result.n >= 5 and result.backend == "litert"
    assert result.info["threads"] == 1 and result.info["xnnpack"] is True
    assert result.info["runtime"] in result.info


def test_measure_file_bytes_and_without_xnnpack(tmp_path, small_subnet: nn.Module) -> None:
    shape = (1, 1, 32, 32)
    path = write_tflite(small_subnet, shape, tmp_path / "net.tflite")
    from_file = LiteRTBackend().measure(str(path), shape, QUICK)
    from_bytes = LiteRTBackend(use_xnnpack=False).measure(path.read_bytes(), shape, QUICK)
    assert from_file.median_ms > 0 and from_bytes.median_ms > 0
    assert from_bytes.info["xnnpack"] is False


def test_bad_inputs_and_settings(tmp_path, small_subnet: nn.Module) -> None:
    path = write_tflite(small_subnet, (1, 1, 32, 32), tmp_path / "net.tflite")
    with pytest.raises(BackendError, match="input has shape"):
        LiteRTBackend().measure(path, (1, 1, 28, 28), QUICK)
    with pytest.raises(BackendError, match="does not exist"):
        LiteRTBackend().measure(tmp_path / "missing.tflite", (1, 1, 32, 32), QUICK)
    with pytest.raises(ConfigError, match="threads"):
        LiteRTBackend(threads=0)
    with pytest.raises(ConfigError, match="allowed"):
        LiteRTBackend(num_threads=2)

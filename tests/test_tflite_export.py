"""The torch.fx graph converter to TFLite, checked in LiteRT against PyTorch: small hand-built
modules op by op, torchvision networks at a small input, ``export_tflite`` and
``ofabench export --format tflite``, and LiteRT measuring the reference networks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip(
    "ai_edge_litert.interpreter",
    reason="ai-edge-litert is not installed (pip install 'ofabench[tflite]')",
)

from ofabench.cli import main  # noqa: E402
from ofabench.devices.litert_backend import LiteRTBackend, run_tflite  # noqa: E402
from ofabench.devices.tflite_graph import supported_ops  # noqa: E402
from ofabench.devices.tflite_writer import TFLiteGraph, convert_module, module_to_tflite  # noqa: E402
from ofabench.errors import ExportError  # noqa: E402
from ofabench.export import export_tflite  # noqa: E402
from ofabench.space import get_space  # noqa: E402
from ofabench.supernet import OFAMobileNetV3  # noqa: E402
from ofabench.supernet.checkpoint import save_supernet  # noqa: E402

from .conftest import randomize_bn_and_transforms  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


# -- helpers ----------------------------------------------------------------------------------------
def litert_and_torch(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> tuple:
    """LiteRT's and PyTorch's outputs (PyTorch layout) of ``model`` on a seeded normal input."""
    model = model.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = model(x).numpy()
    got = run_tflite(module_to_tflite(model, shape), x.numpy())
    return got, want


def assert_matches(model: nn.Module, shape: tuple[int, ...], rel: float = 1e-4) -> float:
    """LiteRT agrees with PyTorch to ``rel`` of the output's largest magnitude; the output is
    not constant across the batch (a degenerate output could not show a wrong conversion)."""
    got, want = litert_and_torch(model, shape)
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    diff = float(np.abs(got - want).max())
    assert diff <= rel * max(scale, 1e-3), (diff, scale)
    if want.shape[0] > 1:
        assert np.abs(want[0] - want[1]).max() > 1e-2 * scale
    return diff


def op_names(content: bytes) -> list[str]:
    """The builtin op names of a flatbuffer's operators, in order."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    codes = [names[c.builtinCode] for c in model.operatorCodes]
    return [codes[op.opcodeIndex] for op in model.subgraphs[0].operators]


def randomized(model: nn.Module) -> nn.Module:
    randomize_bn_and_transforms(model)
    return model.eval()


def calibrate_bn(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """BN statistics of a random batch: a deep net's logits stay input-dependent (random running
    statistics make them nearly constant, and a constant output cannot show a wrong conversion)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train()(torch.randn(*shape, generator=torch.Generator().manual_seed(9)))
    return model.eval()


# -- hand-built modules -----------------------------------------------------------------------------
class Residual(nn.Module):
    """conv-BN-ReLU, conv-BN, ``out += identity`` then ReLU (ResNet's basic block)."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


def test_residual_block_folds_bn_and_fuses_relus() -> None:
    model = randomized(Residual())
    assert_matches(model, (2, 8, 10, 10))
    ops = op_names(module_to_tflite(model, (1, 8, 10, 10)))
    assert ops == ["CONV_2D", "CONV_2D", "ADD"]  # BN folded, both ReLUs fused


class SharedConvOutput(nn.Module):
    """A conv output read by BN and by the add: BN cannot be folded, ReLU cannot be fused."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return F.relu(self.bn(h)) + h


def test_bn_not_folded_when_the_conv_output_is_shared() -> None:
    model = randomized(SharedConvOutput())
    assert_matches(model, (2, 4, 6, 6))
    assert op_names(module_to_tflite(model, (1, 4, 6, 6))) == [
        "CONV_2D",
        "MUL",
        "ADD",
        "ADD",
    ]  # ReLU fused into BN's ADD


class Activations(nn.Module):
    """Every activation of the vocabulary as module, functional and method forms."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.mods = nn.ModuleList(
            [nn.Hardswish(), nn.Hardsigmoid(), nn.Sigmoid(), nn.SiLU(), nn.ReLU6()]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = 3 * self.conv(x)
        outs = [m(h) for m in self.mods]
        outs += [F.silu(h), F.relu6(h), torch.sigmoid(h), F.hardtanh(h, 0.0, 6.0), h.relu()]
        outs += [F.hardswish(h), F.hardsigmoid(h), F.relu(h), h.sigmoid()]
        total = outs[0]
        for i, o in enumerate(outs[1:]):
            total = total + (i + 2) * o  # weights so that a swapped activation shows
        return total


def test_activations_in_every_form() -> None:
    assert_matches(randomized(Activations()), (2, 3, 5, 5))


@pytest.mark.parametrize(
    ("pool", "hw", "after_relu"),
    [
        (nn.MaxPool2d(3, 2, 1), 12, True),  # ResNet's stem pool on an even input: zeros pad
        (nn.MaxPool2d(3, 2, 1), 12, False),  # the same on signed input: -inf pad
        (nn.MaxPool2d(3, 2, 1), 11, False),  # odd input: SAME
        (nn.MaxPool2d(2), 7, False),  # VALID, the last row dropped
        (nn.MaxPool2d(3, 2, ceil_mode=True), 10, False),  # ceil_mode: pad after
        (nn.AvgPool2d(3, 1, 1), 6, False),  # padding counts: zeros pad
        (nn.AvgPool2d(3, 1, 1, count_include_pad=False), 6, False),  # SAME excludes padding
        (nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False), 7, False),  # OFA ResNet
        (nn.AvgPool2d(2, 2, ceil_mode=True), 7, False),
        (nn.AdaptiveAvgPool2d(1), 5, False),
        (nn.AdaptiveAvgPool2d((2, 3)), 6, False),
        (nn.AdaptiveAvgPool2d(6), 6, False),
    ],
)
def test_pools_match_pytorch(pool: nn.Module, hw: int, after_relu: bool) -> None:
    conv = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), pool) if after_relu else nn.Sequential(conv, pool)
    assert_matches(model, (2, 3, hw, hw))
    ops = op_names(module_to_tflite(model, (1, 3, hw, hw)))
    if isinstance(pool, nn.MaxPool2d) and hw == 12:
        assert ("PAD" if after_relu else "PADV2") in ops


def test_pool_padding_tflite_cannot_express_is_refused() -> None:
    pool = nn.AvgPool2d(3, 2, 1, count_include_pad=False)  # even input: PyTorch pads the top
    with pytest.raises(ExportError, match=r"AvgPool2d\(kernel .* has no TFLite form"):
        module_to_tflite(pool, (1, 3, 8, 8))
    with pytest.raises(ExportError, match="AdaptiveAvgPool2d to \\[3, 3\\] from \\[8, 8\\]"):
        module_to_tflite(nn.AdaptiveAvgPool2d(3), (1, 3, 8, 8))


@pytest.mark.parametrize(("groups", "out_c"), [(2, 8), (4, 4), (8, 16)])
def test_grouped_and_multiplier_depthwise_convs(groups: int, out_c: int) -> None:
    model = randomized(
        nn.Sequential(nn.Conv2d(8, out_c, 3, 2, 1, groups=groups), nn.BatchNorm2d(out_c))
    )
    assert_matches(model, (2, 8, 9, 9))


class Gates(nn.Module):
    """SE scaling, constants in every position, a parameter broadcast over NCHW, mean forms."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.fc1, self.fc2 = nn.Conv2d(4, 2, 1), nn.Conv2d(2, 4, 1)
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, 4).view(4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(h, 1)))))
        h = h * gate
        h = (1.0 - h) * self.scale + h.mean([2, 3], keepdim=True) / 2
        h = h - 0.5
        return torch.cat([h.mean((2, 3)), h.mean(-1).flatten(1), h.mean(1).flatten(1)], dim=1)


def test_gates_constants_and_means() -> None:
    assert_matches(randomized(Gates()), (2, 4, 5, 6))


class Shuffle(nn.Module):
    """ShuffleNetV2's stride-1 unit: chunk, branch, cat, channel shuffle by view/transpose."""

    def __init__(self) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, self.branch(x2)), dim=1)
        batch, channels, height, width = out.size()
        out = out.view(batch, 2, channels // 2, height, width)
        out = torch.transpose(out, 1, 2).contiguous()
        return out.view(batch, -1, height, width).permute(0, 2, 3, 1)


def test_channel_shuffle_and_4d_output() -> None:
    assert_matches(randomized(Shuffle()), (2, 8, 3, 5))


class OFAResNetLike(nn.Module):
    """OFA-ResNet50's shapes: stem, max pool, a bottleneck whose shortcut is avg pool
    (ceil_mode) + 1x1 conv, OFA's two-step global average and ``view(size(0), -1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.body = nn.Sequential(
            nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
            nn.Conv2d(4, 4, 3, 2, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
            nn.Conv2d(4, 16, 1, bias=False), nn.BatchNorm2d(16),
        )  # fmt: skip
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(8, 16, 1, bias=False),
            nn.BatchNorm2d(16),
        )
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))
        x = F.relu(self.body(x) + self.shortcut(x))
        x = x.mean(3, keepdim=True).mean(2, keepdim=True)
        return self.fc(x.view(x.size(0), -1))


@pytest.mark.parametrize("hw", [24, 26])  # the shortcut pool sees a 6 px map, then a 7 px one
def test_ofa_resnet_like_network(hw: int) -> None:
    assert_matches(randomized(OFAResNetLike()), (2, 3, hw, hw))


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: nn.Conv2d(8, 8, 3, padding=1, groups=2), (2, 8, 9, 9)),
        (lambda: randomized(Shuffle()), (2, 8, 3, 5)),
        (lambda: randomized(OFAResNetLike()), (2, 3, 24, 24)),
    ],
)
def test_builtin_kernels_without_xnnpack_agree(make, shape: tuple[int, ...]) -> None:
    """LiteRT's own kernels (what ``use_xnnpack: false`` measures) run the written ops too:
    grouped CONV_2D, 5-D TRANSPOSE, PADV2, pools."""
    model = make().eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(x).numpy()
    interpreter = LiteRTBackend(use_xnnpack=False).interpreter(module_to_tflite(model, shape))
    interpreter.set_tensor(
        interpreter.get_input_details()[0]["index"], x.numpy().transpose(0, 2, 3, 1).copy()
    )
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    got = got.transpose(0, 3, 1, 2) if got.ndim == 4 else got
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


class Head(nn.Module):
    """Flatten of a non-1x1 map (PyTorch's CHW order), Linear, Dropout, Identity."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)
        self.drop, self.ident = nn.Dropout(0.5), nn.Identity()
        self.fc = nn.Linear(4 * 3 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ident(self.drop(self.conv(x)))
        return self.fc(F.dropout(h.view(h.size(0), -1), 0.2, training=False))


def test_flatten_order_and_identities() -> None:
    model = Head()
    model.train()  # converted as in eval mode; the module's own modes are left as they were
    assert_matches(model.eval(), (2, 3, 6, 8))
    model.train()
    module_to_tflite(model, (1, 3, 6, 8))
    assert model.training and model.drop.training


def test_ofabench_subnet_through_the_graph_path_equals_its_own_converter() -> None:
    """The fx path (MBConv blocks as leaves of ofabench's converter) and the dedicated
    MobileNetV3 converter agree, and a module wrapping a subnet converts."""
    net = OFAMobileNetV3(get_space("small32_w0.5"))
    randomize_bn_and_transforms(net)
    net.sample_active_subnet(rng=2)
    subnet = calibrate_bn(net.get_active_subnet(), (8, 1, 32, 32))

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = subnet

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.silu(self.net(x))

    assert_matches(Wrapped(), (2, 1, 32, 32))
    from ofabench.devices.tflite_graph import convert_traced

    g = TFLiteGraph()
    x = g.activation("input", (1, 32, 32, 1))
    y = convert_traced(g, subnet, x)
    traced = g.serialize([x], [y], "")
    inp = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    direct = run_tflite(module_to_tflite(subnet, (1, 1, 32, 32)), inp)
    assert np.abs(run_tflite(traced, inp) - direct).max() <= 1e-5 * max(1, np.abs(direct).max())


def test_proxylessnas_subnet_converts() -> None:
    """Another space family's static subnet (ReLU6 MBConv blocks, no SE) through the writer."""
    from ofabench.supernet import build_supernet

    space = get_space("proxyless_small32_w0.5")
    net = build_supernet(space)
    arch = space.sample(5)
    net.set_active_subnet(arch)
    subnet = calibrate_bn(net.get_active_subnet(), (8, space.in_channels, arch.r, arch.r))
    assert_matches(subnet, (2, space.in_channels, arch.r, arch.r))


# -- refusals -----------------------------------------------------------------------------------
class WithGelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 1), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Branchy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x


class TwoOutputs(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x + 1, x * 2


class Sliced(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2] + 1


class Gelu(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x) + 1


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (WithGelu(), r"cannot convert GELU \(module 'body.1'\) to TFLite; supported: .*Conv2d"),
        (Gelu(), r"cannot convert [\w.]*gelu \(node 'gelu'\) to TFLite"),
        (Branchy(), "torch.fx cannot trace Branchy for TFLite"),
        (TwoOutputs(), "returns 2 outputs; TFLite export takes one tensor output"),
        (Sliced(), r"indexes a tensor; slicing is not supported"),
    ],
)
def test_unsupported_modules_name_the_op(model: nn.Module, message: str) -> None:
    with pytest.raises(ExportError, match=message) as info:
        module_to_tflite(model, (1, 3, 4, 4))
    assert "\n" not in str(info.value)


def test_supported_ops_lists_the_vocabulary() -> None:
    ops = supported_ops()
    for name in ("Conv2d", "BatchNorm2d", "SiLU", "MaxPool2d", "operator.add", "Tensor.mean",
                 "torch.flatten", "StochasticDepth", "MBConv"):  # fmt: skip
        assert name in ops, name


# -- torchvision networks ---------------------------------------------------------------------------
def torchvision_net(name: str) -> nn.Module:
    """A torchvision network with random weights and BN statistics of a random batch (so the
    folded BN is not the identity and the logits depend on the input)."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10)
    return calibrate_bn(model, (4, 3, 64, 64))


@pytest.mark.parametrize(
    "name",
    [
        "mobilenet_v3_small",
        "resnet18",
        pytest.param("mobilenet_v2", marks=pytest.mark.slow),
        pytest.param("mobilenet_v3_large", marks=pytest.mark.slow),
        pytest.param("mnasnet0_5", marks=pytest.mark.slow),
        pytest.param("efficientnet_b0", marks=pytest.mark.slow),
        pytest.param("resnet50", marks=pytest.mark.slow),
        pytest.param("shufflenet_v2_x0_5", marks=pytest.mark.slow),
    ],
)
def test_torchvision_network_matches_pytorch(name: str) -> None:
    assert_matches(torchvision_net(name), (2, 3, 64, 64))


# -- export_tflite and the CLI -----------------------------------------------------------------------
def test_export_tflite_writes_checked_file_with_provenance(tmp_path: Path) -> None:
    from ai_edge_litert import schema_py_generated as schema

    model = randomized(Residual())
    out = tmp_path / "block.tflite"
    report = export_tflite(model, (1, 8, 6, 6), out, metadata={"arch": {"ks": [3]}})
    assert report.format == "tflite" and report.input_layout == "NHWC"
    assert report.input_shape == (1, 6, 6, 8) and report.size_bytes == out.stat().st_size
    assert report.max_abs_diff is not None and report.max_abs_diff <= report.tolerance
    description = json.loads(schema.ModelT.InitFromPackedBuf(out.read_bytes(), 0).description)
    assert description["provenance"]["arch"] == {"ks": [3]}
    assert description["provenance"]["versions"]["torch"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["block.tflite"]


def test_export_tflite_refuses_a_mismatch_and_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    import ofabench.devices.litert_backend as litert

    real = litert.run_tflite
    monkeypatch.setattr(litert, "run_tflite", lambda content, x: real(content, x) + 1e-2)
    out = tmp_path / "block.tflite"
    out.write_bytes(b"previous")
    with pytest.raises(ExportError, match="LiteRT output differs from PyTorch by 0.01"):
        export_tflite(randomized(Residual()), (1, 8, 6, 6), out)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["block.tflite"]


def test_cli_export_tflite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = get_space("small32_w0.5")
    net = OFAMobileNetV3(space)
    randomize_bn_and_transforms(net)
    ckpt = tmp_path / "supernet.pt"
    save_supernet(net, ckpt)
    arch = space.sample(4)
    out = tmp_path / "sub.tflite"
    argv = ["export", "--space", space.name, "--arch", json.dumps(arch.to_dict()),
            "--checkpoint", str(ckpt), "--format", "tflite", "--out", str(out)]  # fmt: skip
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "tflite" and report["max_abs_diff"] <= report["tolerance"]
    assert report["input_shape"] == [1, arch.r, arch.r, 1] and report["arch"] == arch.to_dict()
    net.eval().set_active_subnet(arch)
    x = np.random.default_rng(1).standard_normal((1, 1, arch.r, arch.r)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert np.abs(run_tflite(out.read_bytes(), x) - want).max() <= 1e-4 * max(1, np.abs(want).max())
    assert main(argv) == 0
    assert "LiteRT max abs diff" in capsys.readouterr().out

    before = ckpt.read_bytes()
    code = main([*argv[:-1], str(ckpt)])  # the output is the checkpoint it reads
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("ofabench: error:")
    assert ckpt.read_bytes() == before


# -- reference networks on LiteRT ---------------------------------------------------------------------
def test_litert_measures_reference_nets_and_a_failing_net_fails_alone(monkeypatch) -> None:
    from ofabench.baselines import reference_nets
    from ofabench.devices.base import MeasureSettings

    real_build = reference_nets.build

    def build(name: str) -> nn.Module:
        return WithGelu() if name == "mnasnet0_5" else real_build(name)

    monkeypatch.setattr(reference_nets, "build", build)
    if reference_nets.importlib.util.find_spec("litert_torch") is not None:
        pytest.skip("litert-torch is installed: LiteRT measures through it, not the writer")
    tiny = MeasureSettings(warmup=1, repeats=3, max_rounds=1)
    good, bad = reference_nets.measure_reference_nets(
        LiteRTBackend(), "cpu-litert", ["mobilenet_v3_small", "mnasnet0_5"], 32, tiny
    )
    assert good.error is None and good.median_ms > 0
    assert good.converter.startswith("ofabench TFLite writer")
    assert bad.median_ms is None and "cannot convert GELU" in bad.error
    assert [p.model for p in reference_nets.reference_points([good, bad])] == ["mobilenet_v3_small"]


def test_convert_module_falls_back_to_the_graph_for_custom_children() -> None:
    """A plain Sequential holding torchvision-style blocks: each custom child is traced."""
    model = randomized(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Residual(), nn.SiLU(), nn.Flatten())
    )
    assert_matches(model, (2, 3, 4, 4))
    g = TFLiteGraph()
    with pytest.raises(ExportError, match="cannot convert GELU to TFLite"):
        convert_module(g, nn.GELU(), g.activation("input", (1, 4, 4, 3)))

"""OFA-ResNet50 against the reference ``ofa`` package's ``OFAResNets``: the same random weights
give the same logits (after the reference's BN statistics are recalibrated on real-looking
images, so the logits depend on the input), the extracted static subnet equals the supernet,
MACs and parameters equal its counters, and its arch dicts and state dicts are read."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ofabench.cli import main
from ofabench.errors import CheckpointError, ConfigError, InvalidArchError
from ofabench.families import get_family
from ofabench.families.resnet import ResNetShape
from ofabench.latency.counting import layer_macs, layer_params
from ofabench.space import ArchConfig, SpaceSpec, get_space, load_arch
from ofabench.supernet import build_supernet
from ofabench.supernet.ofa_resnet import OFAResNet, load_ofa_resnet_state_dict

from .conftest import randomize_bn_and_transforms, recalibrate_bn
from .test_ofa_interop import assert_input_dependent, assert_same_logits, real_looking_images

ofa_networks = pytest.importorskip(
    "ofa.imagenet_classification.elastic_nn.networks",
    reason="the reference `ofa` package is not installed (pip install ofa --no-deps)",
)
pytestmark = pytest.mark.usefixtures("one_thread")
SHAPE = ResNetShape()
SIZE = 72  # small images keep the 50-layer reference fast; 9 px maps try ceil_mode


def reference_resnet50(seed: int = 5) -> torch.nn.Module:
    """OFA's ``ofa_resnet50`` supernet with random weights and BN parameters, in eval mode."""
    torch.manual_seed(seed)
    ref = ofa_networks.OFAResNets(
        depth_list=[0, 1, 2], expand_ratio_list=[0.2, 0.25, 0.35], width_mult_list=[0.65, 0.8, 1.0]
    )
    randomize_bn_and_transforms(ref)
    return ref.eval()


def three_archs(seed: int) -> ArchConfig:
    if seed == 0:
        return SHAPE.uniform(2, 35, 2, SIZE)
    if seed == 1:
        return SHAPE.uniform(0, 20, 0, SIZE)
    return SHAPE.sample(np.random.default_rng(seed), SIZE)


def set_reference_subnet(ref: torch.nn.Module, arch: ArchConfig) -> None:
    ofa = SHAPE.to_ofa_dict(arch)
    ref.set_active_subnet(d=ofa["d"], e=ofa["e"], w=ofa["w"])


def recalibrate(ref: torch.nn.Module, arch: ArchConfig) -> None:
    """The reference subnet's BN statistics recomputed on real-looking images."""
    set_reference_subnet(ref, arch)
    recalibrate_bn(ref, real_looking_images(16, SIZE, seed=1))


@pytest.fixture(scope="module")
def resnet_pair() -> tuple[torch.nn.Module, OFAResNet]:
    ref = reference_resnet50()
    return ref, load_ofa_resnet_state_dict(OFAResNet(SHAPE), ref.state_dict()).eval()


@pytest.mark.parametrize("seed", range(3))
def test_resnet_same_weights_same_logits(resnet_pair, seed: int) -> None:
    """Max, min and a sampled subnet: ofabench's supernet and its extracted static subnet give
    the reference's logits (1e-5). Not vacuous: the logits depend on the input, and one stage at
    another width or one block at another expand ratio changes them by far more."""
    ref, net = resnet_pair
    arch = three_archs(seed)
    recalibrate(ref, arch)
    load_ofa_resnet_state_dict(net, ref.state_dict())
    net.set_active_subnet(arch)
    x = real_looking_images(3, SIZE, seed=10 + seed)
    want = assert_same_logits(ref, net, x)
    extra = list(arch.extra)
    extra[4] = 1 if extra[4] != 1 else 2  # stage 1 at another width multiplier
    e = list(arch.e)
    e[6] = 25 if e[6] != 25 else 35  # the first block of stage 1 at another expand ratio
    for wrong in (
        ArchConfig(arch.ks, arch.e, arch.d, arch.r, tuple(extra)),
        ArchConfig(arch.ks, tuple(e), arch.d, arch.r, arch.extra),
    ):
        net.set_active_subnet(wrong)
        with torch.no_grad():
            assert float((want - net(x)).abs().max()) > 1e-2


@pytest.mark.parametrize("seed", range(3))
def test_resnet_counts_equal_the_reference_counters(resnet_pair, seed: int) -> None:
    from ofa.utils.pytorch_utils import count_net_flops, count_parameters

    ref, net = resnet_pair
    arch = three_archs(seed)
    set_reference_subnet(ref, arch)
    subnet = ref.get_active_subnet()
    layers = SHAPE.layers(arch)
    assert sum(map(layer_macs, layers)) == count_net_flops(subnet, (1, 3, SIZE, SIZE))
    assert sum(map(layer_params, layers)) == count_parameters(subnet)
    net.set_active_subnet(arch)
    static = net.get_active_subnet()
    assert sum(map(layer_params, layers)) == sum(p.numel() for p in static.parameters())


def test_resnet_ofa_arch_dicts_round_trip() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = SHAPE.sample(rng, 224)
        ofa = SHAPE.to_ofa_dict(arch)
        assert len(ofa["d"]) == 5 and len(ofa["e"]) == 18 and len(ofa["w"]) == 6
        assert SHAPE.arch_from_ofa_dict(ofa, 224) == SHAPE.validate(arch)
    with pytest.raises(InvalidArchError, match=r"d\[2\] = 7 .* allowed: \[4, 5, 6\]"):
        SHAPE.validate(ArchConfig(arch.ks, arch.e, (2, 2, 7, 2), 224, arch.extra))
    with pytest.raises(InvalidArchError, match="w_stage2 = 3 .* allowed: \\[0, 1, 2\\]"):
        SHAPE.validate(ArchConfig(arch.ks, arch.e, arch.d, 224, (1, 0, 0, 0, 3, 0, 0)))
    with pytest.raises(InvalidArchError, match="5 d, 18 e and 6 w"):
        SHAPE.arch_from_ofa_dict({"d": [2] * 5, "e": [0.2] * 18, "w": [0] * 5}, 224)


def test_resnet_state_dict_spellings_and_refusals(resnet_pair) -> None:
    ref, _ = resnet_pair
    state = ref.state_dict()
    legacy = {f"module.{k}": v for k, v in state.items()}  # a DataParallel checkpoint
    net = load_ofa_resnet_state_dict(OFAResNet(SHAPE), {"state_dict": legacy})
    key = "blocks.3.conv2.conv.conv.weight"
    assert torch.equal(net.state_dict()["blocks.3.conv2.conv.weight"], state[key])
    narrow = ResNetShape(width_choices=(0.65, 0.8))
    with pytest.raises(CheckpointError, match="does not fit this OFA-ResNet supernet"):
        load_ofa_resnet_state_dict(OFAResNet(narrow), state)
    with pytest.raises(CheckpointError, match="lacks 1 tensor"):
        load_ofa_resnet_state_dict(OFAResNet(SHAPE), {k: v for k, v in state.items() if k != key})


def test_mbv3_arch_dicts_carry_no_extra_field() -> None:
    arch = ArchConfig((3,), (4,), (2,), 224)
    assert "extra" not in arch.to_dict() and arch.to_json() == (
        '{"ks": [3], "e": [4], "d": [2], "r": 224}'
    )
    assert ArchConfig.from_dict({**arch.to_dict(), "extra": [1, 2]}).extra == (1, 2)


# -- the registered family: presets, CLI, export, training, refusals ----------------------------
SMALL = "resnet_small32_w0.25"


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    return err


def test_resnet_presets_are_listed(resnet_pair, capsys: pytest.CaptureFixture[str]) -> None:
    from ofa.utils.pytorch_utils import count_parameters

    assert main(["spaces", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["spaces"]}
    assert rows["ofa_resnet50"]["family"] == rows[SMALL]["family"] == "resnet"
    assert rows["ofa_resnet50"]["stage_channels"] == [256, 512, 1024, 2048]
    assert rows["ofa_resnet50"]["supernet_params"] == count_parameters(resnet_pair[0])
    space = get_space("ofa_resnet50")
    assert ResNetShape.from_space(space) == SHAPE
    again = SpaceSpec.from_dict(json.loads(json.dumps(space.to_dict())))  # a space file
    assert again == space and again.fingerprint() == space.fingerprint()
    assert get_space("ofa_mbv3_w1.0").max_arch().extra == ()
    assert "width_choices" not in get_space("ofa_mbv3_w1.0").to_dict()


def test_resnet_space_supernet_loads_an_ofa_checkpoint_file(resnet_pair, tmp_path: Path) -> None:
    """Through the seam (space preset, checkpoint reader, family dispatch of the importer): a
    sampled arch of the space gives the reference's logits."""
    from ofabench.supernet.checkpoint import load_supernet

    ref, _ = resnet_pair
    space = dataclasses.replace(get_space("ofa_resnet50"), resolutions=(SIZE,))  # same weights
    arch = space.sample(3)
    ofa = get_family("resnet").to_ofa_dict(space, arch)
    assert space.validate(ofa) == arch  # OFA's dict form reads back
    recalibrate(ref, arch)
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "ofa_resnet50.pth")
    net = load_supernet(tmp_path / "ofa_resnet50.pth", space).eval()
    net.set_active_subnet(arch)
    x = real_looking_images(2, SIZE, seed=4)
    with torch.no_grad():
        want, got = ref(x), net(x)
    assert_input_dependent(want)
    assert float((want - got).abs().max()) <= 1e-5
    with pytest.raises(CheckpointError, match=r"OFA-ResNet50 supernet \(family 'resnet'\)"):
        load_supernet(tmp_path / "ofa_resnet50.pth", get_space("ofa_mbv3_w1.0"))


def test_resnet_count_reads_ofa_dicts_and_net_configs(
    resnet_pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ofa.utils.pytorch_utils import count_net_flops

    ref, _ = resnet_pair
    space = get_space("ofa_resnet50")
    arch = space.validate({**space.sample(11).to_dict(), "extra": [1, 0, 1, 2, 0, 1, 2]})
    set_reference_subnet(ref, arch)
    subnet = ref.get_active_subnet()
    want = count_net_flops(subnet, (1, 3, 160, 160))
    ofa = {**get_family("resnet").to_ofa_dict(space, arch), "r": 160}
    (tmp_path / "net.config").write_text(json.dumps(subnet.config))
    (tmp_path / "run.config").write_text(json.dumps({"image_size": 160}))
    for given in (json.dumps(ofa), str(tmp_path / "net.config")):
        assert main(["count", "--space", "ofa_resnet50", "--arch", given, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["macs"] == want
    got = load_arch(tmp_path / "net.config")  # family and space detected from the blocks
    assert got.d == arch.d and got.extra[3:] == arch.extra[3:] and got.r == 160
    err = _fails(
        capsys, ["count", "--space", "ofa_mbv3_w1.0", "--arch", str(tmp_path / "net.config")]
    )
    assert "OFA-ResNet50 network (family 'resnet')" in err and "--space ofa_resnet50" in err
    err = _fails(
        capsys, ["count", "--space", "ofa_resnet50", "--arch", '{"d": [2,2,2,2,2], "r": 160}']
    )
    assert "OFA-ResNet arch dict needs" in err


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_resnet_exports(fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sampled subnet of the small preset, checked in ONNX Runtime / LiteRT against PyTorch
    (the export command's own comparison)."""
    arch = get_space(SMALL).sample(2).to_json()
    out = tmp_path / f"net.{fmt}"
    argv = ["export", "--space", SMALL, "--arch", arch, "--format", fmt, "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert out.stat().st_size > 10_000 and report["max_abs_diff"] <= 1e-4


def test_resnet_trains_one_stage_on_digits_and_evaluates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One short stage with every dimension elastic (widths too); a stage that fixes the depth
    (OFA's progressive shrinking) is refused in one line."""
    pytest.importorskip("sklearn")
    from ofabench.supernet.checkpoint import load_supernet
    from ofabench.training import Trainer, config_from_dict

    from .test_training import tiny_config

    cfg = config_from_dict(tiny_config(["no_ps"], space=SMALL))
    history = Trainer(cfg, tmp_path).run()
    assert [row["stage"] for row in history] == ["no_ps"]
    ckpt = tmp_path / "no_ps.pt"
    net = load_supernet(ckpt, get_space(SMALL))
    fresh = build_supernet(get_space(SMALL))
    assert any(
        not torch.equal(a, b)
        for a, b in zip(net.state_dict().values(), fresh.state_dict().values())
    )
    argv = ["eval", "--checkpoint", str(ckpt), "--space", SMALL, "--data", "digits"]
    assert main([*argv, "--arch", "min", "--recal-images", "16", "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["val_acc"] <= 1.0
    with pytest.raises(ConfigError, match="stage 'full': space family 'resnet' .* progressive"):
        Trainer(config_from_dict(tiny_config(["full"], space=SMALL)), tmp_path / "b").run()


def test_resnet_refuses_what_it_cannot_do_yet() -> None:
    space = get_space(SMALL)
    message = r"space family 'resnet' \(OFA-ResNet50\) does not support {} yet"
    for make, what in (
        (
            lambda: get_family("resnet").to_net_config(space, space.max_arch()),
            "writing an OFA net.config",
        ),
    ):
        with pytest.raises(ConfigError, match=message.format(what)):
            make()

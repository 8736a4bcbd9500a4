"""Space families (``ofabench.families``): the MobileNetV3 family behind the seam unchanged, the
OFA-ProxylessNAS family against the reference ``ofa`` package (same weights -> same logits after
BN recalibration, same MACs and parameters, its net.configs and arch dicts read back), OFA
net.config files on the command line, and the authors' Pixel1 ProxylessNAS latency table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ofabench.cli import main
from ofabench.errors import CheckpointError, InvalidArchError, LatencyTableError
from ofabench.families import get_family, list_families
from ofabench.latency import LatencyEntry, LatencyModel, LatencyTable
from ofabench.latency.counting import count_macs, count_params, supernet_params
from ofabench.latency.ops import build_op_module
from ofabench.latency.table import OpSpec, arch_ops, resolution_ops
from ofabench.predictor.mlp import ArchEncoder
from ofabench.search import Genome, evolve, latency_constraint, macs_fn
from ofabench.space import get_space, list_spaces, load_arch
from ofabench.supernet import OFAProxylessNASNet, build_static, build_supernet
from ofabench.supernet.ofa_import import load_ofa_state_dict

from .conftest import randomize_biases, randomize_bn_and_transforms, recalibrate_bn
from .test_ofa_interop import assert_same_logits, real_looking_images

PROXYLESS = "ofa_proxyless_d234_e346_k357_w1.3"
PIXEL1_SPACE = "ofa_proxyless_d234_e36_k357_w1.0"  # ProxylessNAS mobile: 224 px, expand 3/6
PIXEL1_LUT = (
    Path(__file__).resolve().parents[2]
    / "shared/data/ofa_reference/proxylessnas/pixel1_mobile_trim.yaml"
)

ofa_networks = pytest.importorskip(
    "ofa.imagenet_classification.elastic_nn.networks",
    reason="the reference `ofa` package is not installed (pip install ofa --no-deps)",
)


def reference_proxyless(width: float = 1.3, seed: int = 3) -> torch.nn.Module:
    """The reference OFA-ProxylessNAS supernet with random weights, BN statistics and kernel
    transforms (biases too), in eval mode."""
    torch.manual_seed(seed)
    ref = ofa_networks.OFAProxylessNASNets(
        width_mult=width, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    randomize_bn_and_transforms(ref)
    randomize_biases(ref)
    return ref.eval()


def set_reference_subnet(ref: torch.nn.Module, space, arch) -> None:
    ref.set_active_subnet(
        **{k: v for k, v in get_family("proxyless").to_ofa_dict(space, arch).items() if k != "r"}
    )


def recalibrate(ref: torch.nn.Module, space, arch, size: int) -> None:
    """The reference subnet's BN statistics recomputed on real-looking images (random running
    statistics alone make the deep network's logits input-independent)."""
    set_reference_subnet(ref, space, arch)
    recalibrate_bn(ref, real_looking_images(16, size, seed=1))


@pytest.fixture(scope="module")
def proxyless_pair() -> tuple[torch.nn.Module, OFAProxylessNASNet]:
    ref = reference_proxyless()
    net = build_supernet(get_space(PROXYLESS))
    return ref, load_ofa_state_dict(net, ref.state_dict()).eval()


# -- the seam ------------------------------------------------------------------------------------
def test_every_family_lists_its_presets() -> None:
    assert {"mbv3", "proxyless"} <= set(list_families())
    for family in list_families():
        for preset in get_family(family).presets():
            assert preset in list_spaces()
            assert get_space(preset).family == family


def test_mbv3_fingerprint_is_the_one_committed_tables_carry() -> None:
    """Moving MobileNetV3 behind the seam changes no fingerprint (tables, checkpoints and
    predictors written before still load)."""
    table = json.loads(Path("latency_tables/cpu-torch/ofa_mbv3_w1.0.json").read_text())
    assert get_space("ofa_mbv3_w1.0").fingerprint() == table["space"]["fingerprint"]
    assert "family" not in get_space("ofa_mbv3_w1.0").to_dict()
    assert get_space(PROXYLESS).fingerprint() != get_space("ofa_mbv3_w1.0").fingerprint()


def test_spaces_command_names_each_family(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spaces", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["spaces"]}
    assert rows[PROXYLESS]["family"] == "proxyless"
    assert rows[PROXYLESS]["stage_channels"] == [32, 56, 104, 128, 248, 416]
    assert rows["ofa_mbv3_w1.0"]["family"] == "mbv3"


def test_space_file_round_trip_keeps_family_and_own_depths(tmp_path: Path) -> None:
    space = get_space(PROXYLESS)
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space.to_dict()))
    again = get_space(str(path))
    assert again == space and again.fingerprint() == space.fingerprint()
    assert again.stage_depth_choices[-1] == (1,)


# -- ProxylessNAS: geometry, sampling, genome ---------------------------------------------------
def test_proxyless_archs_run_one_block_in_the_last_stage() -> None:
    space = get_space(PROXYLESS)
    rng = np.random.default_rng(0)
    for _ in range(50):
        arch = space.validate(space.mutate(space.sample(rng), rng, prob=0.5))
        assert arch.d[-1] == 1
    assert space.max_arch().d == (4, 4, 4, 4, 4, 1) and space.min_arch().d == (2, 2, 2, 2, 2, 1)
    with pytest.raises(InvalidArchError, match=r"'d'\[5\] = 2 .* allowed: \[1\]"):
        space.validate({**space.max_arch().to_dict(), "d": [4, 4, 4, 4, 4, 2]})
    assert len(space.slots()) == 21  # OFA's 5 x 4 + 1 blocks


def test_proxyless_genome_and_encoder() -> None:
    space = get_space(PROXYLESS)
    genome = Genome(space)
    rng = np.random.default_rng(1)
    values = genome.mutate(genome.random(64, rng), rng, prob=0.3, resolution_prob=0.5)
    batch = genome.to_batch(values)
    for arch in batch.to_archs():
        space.validate(arch)
    assert (batch.d[:, -1] == 1).all()
    np.testing.assert_array_equal(genome.values(genome.indices(values)), values)
    features = ArchEncoder(space).encode_batch(batch)
    active = batch.active_mask(space)
    assert active[:, 21:].sum() == 0 and active[:, 20].all()  # three unused slots never run
    assert features.shape[0] == 64 and features[:, 21 * 3 : 24 * 3].sum() == 0  # their kernels
    assert (features[:, 20 * 3 : 21 * 3].sum(axis=1) == 1).all()


def test_ofa_dicts_of_21_blocks_read_and_written() -> None:
    space = get_space(PROXYLESS)
    family = get_family("proxyless")
    arch = space.sample(4)
    ofa = family.to_ofa_dict(space, arch)
    assert len(ofa["ks"]) == len(ofa["e"]) == 21
    assert space.validate(ofa) == arch
    assert space.validate({**ofa, "d": [*arch.d[:5], 4]}).d[-1] == 1  # OFA clamps, as ofabench


# -- ProxylessNAS against the reference package ----------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_proxyless_counts_equal_the_reference_counters(seed: int) -> None:
    from ofa.utils.pytorch_utils import count_net_flops, count_parameters

    space = get_space(PROXYLESS)
    ref = ofa_networks.OFAProxylessNASNets(
        width_mult=1.3, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    arch = [space.max_arch(), space.min_arch(), space.sample(seed)][seed]
    set_reference_subnet(ref, space, arch)
    subnet = ref.get_active_subnet()
    assert count_macs(space, arch) == pytest.approx(
        count_net_flops(subnet, (1, 3, arch.r, arch.r)), rel=1e-6
    )
    assert count_params(space, arch) == count_parameters(subnet)
    ours = build_static(space, arch)
    assert count_params(space, arch) == sum(p.numel() for p in ours.parameters())
    if seed == 0:
        assert supernet_params(space) == count_parameters(ref)


@pytest.mark.parametrize("seed", range(3))
def test_proxyless_same_weights_same_logits(proxyless_pair, seed: int) -> None:
    """Logits of ofabench's supernet equal the reference's (1e-5) for the same weights and the
    reference's BN statistics recalibrated for the subnet on real-looking images, and the
    extracted static subnet equals the supernet. The check can fail: the same weights with one
    block at another kernel size differ by far more (asserted below)."""
    ref, net = proxyless_pair
    space = net.space
    arch = [space.max_arch(), space.min_arch(), space.sample(seed)][seed]
    recalibrate(ref, space, arch, 96)
    load_ofa_state_dict(net, ref.state_dict())
    net.set_active_subnet(arch)
    x = real_looking_images(3, 96, seed=10 + seed)
    want = assert_same_logits(ref, net, x)
    # non-degenerate: the first block of stage 2 at another kernel changes the logits
    ks = list(arch.ks)
    ks[4] = 3 if ks[4] != 3 else 7
    net.set_active_subnet({**arch.to_dict(), "ks": ks})
    with torch.no_grad():
        wrong = net(x)
    assert float((want - wrong).abs().max()) > 1e-2


def test_reference_net_config_reads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OFA net.config of a proxyless subnet (as OFA publishes them, with a run.config beside)
    reads back as the arch it came from, on the command line too."""
    from ofa.utils.pytorch_utils import count_net_flops

    space = get_space(PROXYLESS)
    ref = ofa_networks.OFAProxylessNASNets(
        width_mult=1.3, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    arch = space.sample(7)
    set_reference_subnet(ref, space, arch)
    subnet = ref.get_active_subnet()
    path = tmp_path / "net.config"
    path.write_text(json.dumps(subnet.config))
    (tmp_path / "run.config").write_text(json.dumps({"image_size": 236}))
    got = load_arch(path, space)
    assert got.r == 236 and got.d == arch.d
    assert space.active_blocks(got) == space.active_blocks(arch)
    assert main(["count", "--space", PROXYLESS, "--arch", str(path), "--json"]) == 0
    counted = json.loads(capsys.readouterr().out)
    assert counted["macs"] == pytest.approx(count_net_flops(subnet, (1, 3, 236, 236)), rel=1e-6)
    assert main(["count", "--space", PROXYLESS, "--arch", str(path), "--resolution", "160"]) == 0
    assert "r=160" in capsys.readouterr().out


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("ofabench: error:")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_net_config_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = get_space(PROXYLESS)
    ref = ofa_networks.OFAProxylessNASNets(
        width_mult=1.3, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    set_reference_subnet(ref, space, space.sample(2))
    config = ref.get_active_subnet().config
    path = tmp_path / "net.config"
    path.write_text(json.dumps(config))
    message = _fails(capsys, ["count", "--arch", str(path), "--resolution", "224"])
    assert (
        "OFA-ProxylessNAS" in message and "'mbv3'" in message and f"--space {PROXYLESS}" in message
    )
    message = _fails(capsys, ["count", "--space", PROXYLESS, "--arch", str(path)])
    assert "--resolution" in message and "run.config" in message
    mbv3 = ofa_networks.OFAMobileNetV3(
        width_mult=1.2, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    other = tmp_path / "mbv3.config"
    other.write_text(json.dumps(mbv3.get_active_subnet().config))
    message = _fails(
        capsys, ["count", "--space", PROXYLESS, "--arch", str(other), "--resolution", "240"]
    )
    assert "'proxyless'" in message and "--space ofa_mbv3_w1.2" in message
    assert (
        main(["count", "--space", "ofa_mbv3_w1.2", "--arch", str(other), "--resolution", "260"])
        == 0
    )
    capsys.readouterr()
    config["blocks"][3]["conv"]["name"] = "ResNetBottleneckBlock"
    path.write_text(json.dumps(config))
    message = _fails(
        capsys, ["count", "--space", PROXYLESS, "--arch", str(path), "--resolution", "224"]
    )
    assert "ResNetBottleneckBlock" in message and "'proxyless' expected" in message


def test_checkpoint_of_another_family_is_refused() -> None:
    ref = reference_proxyless()
    with pytest.raises(CheckpointError, match=r"OFA-ProxylessNAS supernet .*\(family 'mbv3'\)"):
        load_ofa_state_dict(build_supernet(get_space("ofa_mbv3_w1.0")), ref.state_dict())


# -- ProxylessNAS latency tables ---------------------------------------------------------------------
def test_proxyless_op_keys_and_modules() -> None:
    space = get_space("ofa_proxyless_d234_e346_k357_w1.0")
    ops = arch_ops(space, space.max_arch())
    keys = [op.key for op in ops]
    assert keys[0] == "Conv-input:224x224x3-output:112x112x32"
    assert (
        keys[1]
        == "expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0"
    )
    assert (
        keys[2]
        == "expanded_conv-input:112x112x16-output:56x56x24-expand:6-kernel:7-stride:2-idskip:0"
    )
    assert keys[-2:] == [
        "Conv_1-input:7x7x320-output:7x7x1280",
        "Logits-input:7x7x1280-output:1000",
    ]
    for op in ops:
        assert OpSpec.parse(op.key, "proxyless") == op
    module, shape = build_op_module(ops[-1])
    assert module(torch.zeros(shape)).shape == (1, 1000)
    stem, shape = build_op_module(ops[0])
    assert isinstance(stem[-1], torch.nn.ReLU6)


@pytest.fixture(scope="module")
def pixel1() -> LatencyTable:
    if not PIXEL1_LUT.is_file():
        pytest.skip(f"the authors' Pixel1 ProxylessNAS table is not at {PIXEL1_LUT}")
    return LatencyTable.from_ofa_yaml(PIXEL1_LUT, space=PIXEL1_SPACE, device="pixel1")


def test_pixel1_table_predicts_what_the_reference_predicts(
    pixel1: LatencyTable, tmp_path: Path
) -> None:
    """LatencyModel's prediction equals the reference package's ProxylessNASLatencyTable over the
    same YAML, for subnets of the table's space (ProxylessNAS w1.0, expand 3/6, 224 px)."""
    import yaml
    from ofa.nas.efficiency_predictor.latency_lookup_table import ProxylessNASLatencyTable

    space = get_space(PIXEL1_SPACE)
    assert (
        space.fingerprint()
        == get_space("ofa_proxyless_d234_e346_k357_w1.0")
        .restrict(expand_choices=[3, 6])
        .fingerprint()
    )
    assert pixel1.family == "proxyless" and pixel1.covered_resolutions(space) == (224,)
    model = LatencyModel(pixel1, space)
    reference = ProxylessNASLatencyTable.__new__(ProxylessNASLatencyTable)
    reference.lut = yaml.safe_load(PIXEL1_LUT.read_text())  # its __init__ downloads
    ref = ofa_networks.OFAProxylessNASNets(
        width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    archs = [space.sample(s) for s in range(5)] + [space.max_arch(), space.min_arch()]
    for arch in archs:
        set_reference_subnet(ref, space, arch)
        want = reference.predict_network_latency_given_config(ref.get_active_net_config(), 224)
        assert model.predict(arch) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(model.predict_batch(archs), [model.predict(a) for a in archs])
    saved = LatencyTable.load(pixel1.save(tmp_path / "pixel1.json"))
    assert saved.family == "proxyless" and saved.entries == pixel1.entries
    with pytest.raises(LatencyTableError, match="family 'proxyless'"):
        LatencyModel(saved, get_space("ofa_mbv3_w1.0"))


def test_pixel1_table_of_another_family_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    if not PIXEL1_LUT.is_file():
        pytest.skip(f"the authors' Pixel1 ProxylessNAS table is not at {PIXEL1_LUT}")
    with pytest.raises(
        LatencyTableError, match=rf"OFA-ProxylessNAS keys .* --space {PIXEL1_SPACE}"
    ):
        LatencyTable.from_ofa_yaml(PIXEL1_LUT, space="ofa_mbv3_w1.0")


def test_search_in_the_proxyless_space_under_the_pixel1_table(pixel1: LatencyTable) -> None:
    """OFA's evolution under a Pixel1 latency budget: the largest-MACs subnet it finds is within
    the budget, and a tighter budget gives a cheaper subnet."""
    space = get_space(PIXEL1_SPACE)
    model = LatencyModel(pixel1, space)
    macs = macs_fn(space)
    found = {}
    for budget in (90.0, 130.0):
        result = evolve(
            space, macs, [latency_constraint(model, budget)], population=40, generations=15, seed=0
        )
        space.validate(result.best)
        assert model.predict(result.best) <= budget
        assert result.best_score == pytest.approx(count_macs(space, result.best) / 1e6)
        found[budget] = result.best_score
    assert found[90.0] < found[130.0]
    assert model.predict(space.min_arch()) < 90.0 < model.predict(space.max_arch())


# -- training a ProxylessNAS supernet on a small data set ------------------------------------------
def test_progressive_shrinking_trains_a_proxyless_supernet(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from ofabench.supernet.checkpoint import load_supernet
    from ofabench.training import Trainer, config_from_dict

    from .test_training import tiny_config

    cfg = config_from_dict(tiny_config(space="proxyless_small32_w0.5"))  # every PS stage
    history = Trainer(cfg, tmp_path).run()
    assert [row["stage"] for row in history] == [s.name for s in cfg.schedule_stages()]
    assert 0.0 <= history[-1]["val_acc_max"] <= 1.0
    space = get_space("proxyless_small32_w0.5")
    net = load_supernet(tmp_path / f"{history[-1]['stage']}.pt", space)
    assert isinstance(net, OFAProxylessNASNet) and net.bn_eps == 1e-3
    fresh = build_supernet(space)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(net.state_dict().values(), fresh.state_dict().values())
    )


def test_published_resolutions_evaluate_but_tables_and_predictors_keep_their_limits() -> None:
    """OFA's fine-tuned MobileNetV3 nets run at up to 260 px: the presets accept those to
    evaluate (never to sample); a latency table and OFA's predictor bins say what they cover."""
    space = get_space("ofa_mbv3_w1.2")
    big = space.uniform(5, 4, 3, 236)
    assert count_macs(space, big) > count_macs(space, space.uniform(5, 4, 3, 224))
    assert all(space.sample(s).r <= 224 for s in range(30))
    with pytest.raises(InvalidArchError, match=r"128..224 in steps of 4, or 228..260"):
        space.validate({**big.to_dict(), "r": 264})
    with pytest.raises(InvalidArchError, match="outside OFA's resolution bins; allowed: 112..239"):
        ArchEncoder(space, "ofa").encode(space.uniform(5, 4, 3, 240))
    with pytest.raises(InvalidArchError, match="236, which the encoder does not know"):
        ArchEncoder(space).encode(big)
    small = space.restrict(kernel_choices=[3], expand_choices=[3], resolutions=[128])
    table = LatencyTable.for_space(small, device="d", backend="b")
    for op in resolution_ops(small, 128).all_ops():
        table.add(op, LatencyEntry(1.0))
    model = LatencyModel(table, small)
    with pytest.raises(LatencyTableError, match=r"\[236\] are not covered .* covers \[128\]"):
        model.predict_batch([small.uniform(3, 3, 3, 236)])


def test_search_command_with_the_pixel1_table(
    pixel1: LatencyTable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ofabench.predictor import AccuracyPredictor

    space = get_space(PIXEL1_SPACE)
    predictor = AccuracyPredictor(space, hidden_size=8)
    archs = [space.sample(s) for s in range(16)]
    predictor.fit(archs, [count_macs(space, a) / 1e9 for a in archs], epochs=2)
    predictor.save(tmp_path / "p.pt")
    argv = ["search", "--space", PIXEL1_SPACE, "--predictor", str(tmp_path / "p.pt")]
    argv += ["--latency-table", str(PIXEL1_LUT), "--latency", "100ms", "--json"]
    assert main([*argv, "--population", "16", "--generations", "4"]) == 0
    result = json.loads(capsys.readouterr().out)
    best = space.validate(result["best"]["arch"])
    assert LatencyModel(pixel1, space).predict(best) <= 100.0


def test_proxyless_tiny_space_profiles_on_onnxruntime(tmp_path: Path) -> None:
    """Profiling a ProxylessNAS space on a local backend gives a proxyless table whose model
    predicts its subnets (ReLU6 op modules, ``Logits`` with pooling)."""
    from ofabench.devices.base import MeasureSettings
    from ofabench.devices.profiles import DeviceProfile
    from ofabench.latency.profiler import ops_at, profile_device

    device = DeviceProfile(
        name="cpu-onnxruntime", backend="onnxruntime", settings={"intra_op_threads": 1}
    )
    status = device.availability()
    if not status:
        pytest.skip(f"onnxruntime is not available here: {status.reason}")
    space = get_space("proxyless_small32_w0.5").restrict(
        kernel_choices=(3,), expand_choices=(3,), depth_choices=(2,), resolutions=(24,)
    )
    quick = MeasureSettings(warmup=1, repeats=3, max_rounds=1)
    result = profile_device(device, space, out_path=tmp_path / "t.json", settings=quick)
    table = LatencyTable.load(result.path)
    assert table.family == "proxyless" and len(table) == len(ops_at(space, [24]))
    kinds = {OpSpec.parse(k, "proxyless").kind for k in table}
    assert kinds == {"stem", "mbconv", "final_expand", "classifier"}
    model = LatencyModel(table, space)
    arch = space.sample(0)
    assert model.predict(arch) == pytest.approx(
        sum(table[op].mean_ms for op in arch_ops(space, arch))
    )


def test_proxyless_net_config_exports_to_onnx(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    space = get_space(PROXYLESS)
    ref = ofa_networks.OFAProxylessNASNets(
        width_mult=1.3, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    set_reference_subnet(ref, space, space.min_arch())
    path = tmp_path / "net.config"
    path.write_text(json.dumps(ref.get_active_subnet().config))
    out = tmp_path / "net.onnx"
    argv = ["export", "--space", PROXYLESS, "--arch", str(path), "--resolution", "128"]
    assert main([*argv, "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert out.is_file() and report["max_abs_diff"] < 1e-3
    assert report["arch"]["r"] == 128 and report["arch"]["d"] == [2, 2, 2, 2, 2, 1]


def test_family_registry_refuses_taken_names_and_lists_known_ones(tmp_path: Path) -> None:
    from ofabench.errors import ConfigError
    from ofabench.families import register_family
    from ofabench.families.proxyless import ProxylessFamily

    class Impostor(ProxylessFamily):
        pass

    with pytest.raises(ConfigError, match="space family 'proxyless' is taken"):
        register_family(Impostor)
    path = tmp_path / "space.json"
    path.write_text(json.dumps({**get_space(PROXYLESS).to_dict(), "family": "resnet9"}))
    with pytest.raises(ConfigError, match="unknown space family 'resnet9'; known: mbv3, proxyless"):
        get_space(str(path))


def test_table_and_predictor_of_another_family_are_one_line(
    pixel1: LatencyTable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ofabench.predictor import AccuracyPredictor

    argv = ["search", "--latency", "100ms", "--population", "8", "--generations", "1"]
    mbv3 = get_space("small32_w0.5")
    predictor = AccuracyPredictor(mbv3, hidden_size=8)
    predictor.fit([mbv3.sample(s) for s in range(8)], [0.1 * s for s in range(8)], epochs=1)
    predictor.save(tmp_path / "mbv3.pt")
    message = _fails(
        capsys,
        [*argv, "--space", "small32_w0.5", "--predictor", str(tmp_path / "mbv3.pt")]
        + ["--latency-table", str(PIXEL1_LUT)],
    )
    assert "OFA-ProxylessNAS keys (family 'proxyless')" in message and "'mbv3'" in message
    pixel1.save(tmp_path / "pixel1.json")
    message = _fails(
        capsys,
        [*argv, "--space", PIXEL1_SPACE, "--predictor", str(tmp_path / "mbv3.pt")]
        + ["--latency-table", str(tmp_path / "pixel1.json")],
    )
    assert "(family 'mbv3', not 'proxyless')" in message


def test_legacy_spelled_proxyless_checkpoint_loads_equal(tmp_path: Path) -> None:
    """OFA checkpoints in the older spelling (``mobile_inverted_conv``, single nesting, a
    ``module.`` prefix) load into the same tensors, through the generic checkpoint reader too."""
    from ofabench.supernet.checkpoint import load_supernet

    from .test_ofa_interop import _legacy

    current = reference_proxyless().state_dict()
    legacy = {f"module.{_legacy(k)}": v for k, v in current.items()}
    assert any(".mobile_inverted_conv." in k for k in legacy)
    space = get_space(PROXYLESS)
    a = load_ofa_state_dict(build_supernet(space), current)
    path = tmp_path / "ofa_proxyless_d234_e346_k357_w1.3"
    torch.save({"state_dict": legacy}, path)
    b = load_supernet(path, space)
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name


def test_tvm_workers_build_proxyless_ops_of_their_family() -> None:
    """A compile worker gets a key and, for a family other than MobileNetV3, the family: a
    ProxylessNAS ``Logits`` op (pooling + classifier) and ReLU6 stem build as such."""
    from ofabench.devices.tvm_build import build_model, op_model

    ops = arch_ops(get_space(PIXEL1_SPACE), get_space(PIXEL1_SPACE).min_arch())
    assert op_model(ops[0].key) == {"op": ops[0].key}  # MobileNetV3 digests unchanged
    stem, _ = build_model(op_model(ops[0].key, ops[0].family), seed=0)
    assert isinstance(stem[-1], torch.nn.ReLU6)
    logits, shape = build_model(op_model(ops[-1].key, ops[-1].family), seed=0)
    assert shape == (1, 1280, 7, 7) and logits(torch.zeros(shape)).shape == (1, 1000)


def test_proxyless_subnet_exports_to_tflite(tmp_path: Path) -> None:
    """The TFLite writer reads a static subnet's own activations (ReLU6) and its missing
    feature mix: LiteRT's logits equal PyTorch's for a subnet with non-trivial BN statistics."""
    pytest.importorskip("ai_edge_litert")
    from ofabench.export import export_tflite
    from ofabench.latency.ops import build_subnet_module

    space = get_space("proxyless_small32_w0.5")
    module, shape = build_subnet_module(space, space.sample(5), seed=2)
    norms = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms:  # statistics of real-looking images: the logits depend on the input
        bn.reset_running_stats()
        bn.momentum = None
    with torch.no_grad():
        module.train()(real_looking_images(32, shape[-1], seed=3)[:, :1])
        logits = module.eval()(real_looking_images(2, shape[-1], seed=4)[:, :1])
    assert float((logits[0] - logits[1]).abs().max()) > 1e-2
    report = export_tflite(module, shape, tmp_path / "p.tflite")
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-4


@pytest.mark.parametrize(
    ("preset", "build"),
    [
        (
            PROXYLESS,
            lambda: ofa_networks.OFAProxylessNASNets(
                width_mult=1.3, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
            ),
        ),
        (
            "ofa_mbv3_w1.2",
            lambda: ofa_networks.OFAMobileNetV3(
                width_mult=1.2, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
            ),
        ),
    ],
)
def test_written_net_config_is_the_reference_subnets_config(preset: str, build) -> None:
    """ofabench writes the ``net.config`` the reference package writes for the same subnet, and
    reads it back as the same arch."""
    space = get_space(preset)
    family = get_family(space.family)
    ref = build()
    for arch in (space.sample(8), space.min_arch()):
        ref.set_active_subnet(
            **{k: v for k, v in family.to_ofa_dict(space, arch).items() if k != "r"}
        )
        written = family.to_net_config(space, arch)
        assert written == ref.get_active_subnet().config
        read = space.arch_from_ofa_net_config(written, arch.r)
        assert read.d == arch.d and read.r == arch.r
        assert list(read.ks) == _skipped_smallest(space, arch, "ks")
        assert list(read.e) == _skipped_smallest(space, arch, "e")


def _skipped_smallest(space, arch, field: str) -> list[int]:
    """``arch``'s kernels or expand ratios with the slots it skips at the smallest choice (what a
    net.config, which lists only the blocks run, reads back as)."""
    values = list(getattr(arch, field))
    smallest = min(space.kernel_choices if field == "ks" else space.expand_choices)
    active = {slot for _, slot, _, _ in space.active_blocks(arch)}
    return [v if i in active else smallest for i, v in enumerate(values)]

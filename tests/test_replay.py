"""Standard torchvision networks exported and timed on every backend that runs here (a backend
that cannot convert one fails that network alone, with the reason), their cited numbers, and
``ofabench replay`` end to end on a tiny setting."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ofabench.baselines.reference_nets import (
    NETWORKS,
    measure_reference_nets,
    reference_net,
    reference_points,
)
from ofabench.cli import main
from ofabench.devices.base import MeasureSettings
from ofabench.devices.profiles import load_profile
from ofabench.errors import ConfigError
from ofabench.latency import LatencyEntry, LatencyTable
from ofabench.latency.table import resolution_ops
from ofabench.predictor.mlp import AccuracyPredictor
from ofabench.space import get_space

SMALL = get_space("small32")
REPO = Path(__file__).resolve().parents[1]
TINY = MeasureSettings(warmup=1, repeats=3, max_rounds=1)


def test_cited_numbers_come_from_torchvisions_weights_metadata() -> None:
    nets = {n: reference_net(n) for n in NETWORKS}
    large = nets["mobilenet_v3_large"]
    assert large.weights == "MobileNet_V3_Large_Weights.IMAGENET1K_V2"
    assert (large.top1, large.mmacs, large.mparams) == pytest.approx((0.75274, 217.0, 5.483032))
    assert nets["mobilenet_v3_small"].top1 == pytest.approx(0.67668)
    assert nets["mnasnet0_5"].mmacs == pytest.approx(104.0)
    assert all(0.5 < n.top1 < 0.8 and n.torchvision for n in nets.values())
    with pytest.raises(ConfigError, match="available: \\['mobilenet_v2'"):
        reference_net("resnet50")


@pytest.mark.parametrize(
    "device",
    ["cpu-torch", "cpu-onnxruntime", pytest.param("cpu-tvm", marks=pytest.mark.slow), "cpu-litert"],
)
def test_a_torchvision_network_is_measured_or_fails_alone_with_its_reason(device: str) -> None:
    profile = load_profile(device)
    status = profile.availability()
    if not status:
        pytest.skip(f"{device} does not run here: {status.reason}")
    backend = profile.open()
    (result,) = measure_reference_nets(backend, device, ["mobilenet_v3_small"], 32, TINY)
    assert result.device == device and result.converter
    if result.error is None:
        assert result.median_ms > 0 and result.measurement["n"] >= 3
        (point,) = reference_points([result])
        assert point.latency_ms == result.median_ms and point.accuracy == pytest.approx(0.67668)
    else:  # every local backend converts it now (LiteRT through the project's TFLite writer)
        pytest.fail(f"{device} could not measure mobilenet_v3_small: {result.error}")


def test_networks_timed_with_the_probe_are_at_the_tables_reference_speed() -> None:
    """With a drift guard (what replay uses when the table records a probe reference), a
    network's latency is its ratio to the probe, timed alternately, times the table's
    reference; the raw median and the probe figures stay in the measurement."""
    from ofabench.latency.probe import DriftGuard, Probe, ProbeSettings

    backend = load_profile("cpu-onnxruntime").open()
    with Probe(backend, TINY) as probe:
        guard = DriftGuard(probe, ProbeSettings(), reference_ms=123.0)
        guard.start()
        (result,) = measure_reference_nets(
            backend, "cpu-onnxruntime", ["mobilenet_v3_small"], 32, TINY, guard
        )
    assert result.error is None
    m = result.measurement
    assert result.median_ms == pytest.approx(m["probe_ratio"] * 123.0)
    assert result.median_ms != pytest.approx(m["median_ms"], rel=0.5)  # not the raw time
    assert m["normalised"]["reference_ms"] == 123.0 and m["normalised"]["probe_ms"] > 0


# -- ofabench replay ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("replay")
    predictor = AccuracyPredictor(SMALL, hidden_size=16, seed=1)
    predictor.save(root / "pred.pt")
    (root / "tables" / "cpu-onnxruntime").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for space in (SMALL, get_space("small32_w0.5")):
        table = LatencyTable.for_space(space, device="cpu-onnxruntime", backend="onnxruntime")
        for r in space.resolutions:
            for op in resolution_ops(space, r).all_ops():
                if op not in table:
                    table.add(op, LatencyEntry(float(rng.uniform(0.01, 0.2)), 0.001, 10, 0.01))
        table.save(root / "tables" / "cpu-onnxruntime" / f"{space.name}.json")
    return {"root": root, "predictor": root / "pred.pt", "tables": root / "tables"}


def test_replay_writes_the_device_report(
    tiny_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tiny_inputs["root"] / "imagenet_cpu-onnxruntime"
    argv = [
        "replay", "--device", "cpu-onnxruntime", "--space", "small32",
        "--predictor", str(tiny_inputs["predictor"]), "--table-root", str(tiny_inputs["tables"]),
        "--n-budgets", "2", "--population", "8", "--generations", "3", "--seeds", "2",
        "--networks", "mobilenet_v3_small", "--resolution", "32", "--warmup", "1",
        "--repeats", "3", "--note10-replay", str(REPO / "reports/note10_replay/pareto.json"),
        "--out", str(out), "--json",
    ]  # fmt: skip
    code = main(argv)
    stdout, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(stdout)
    for name in ("README.md", "summary.md", "pareto.json", "reference_networks.csv"):
        assert (out / name).is_file(), name
    assert (out / "accuracy_latency.png").is_file() and (out / "accuracy_macs.png").is_file()
    evaluations = summary["evaluations"]
    for method in ("random", "aging_evolution", "local_search", "nsga2"):
        assert evaluations[method] == evaluations["evolution"] > 0
    spread = summary["hypervolume_spread"]["latency_ms"]
    assert spread["evolution"]["n"] == 2 and "nsga2" in spread
    assert summary["networks"]["mobilenet_v3_small"] > 0
    document = json.loads((out / "pareto.json").read_text())
    methods = {p["method"] for p in document["points"]}
    assert "torchvision networks (measured)" in methods and "OFA specialized" in methods
    readme = (out / "README.md").read_text()
    assert "ofabench replay --device cpu-onnxruntime" in readme
    assert "points** above OFA's published network on average" in readme
    assert 2 < document["predictor_offset"]["mean_pts"] < 8  # OFA's predictor reads high
    with (out / "reference_networks.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["weights"] == "MobileNet_V3_Small_Weights.IMAGENET1K_V1" and row["citation"]


def test_replay_refuses_a_predictor_of_another_space(
    tiny_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["replay", "--device", "cpu-onnxruntime", "--space", "small32_w0.5",
         "--predictor", str(tiny_inputs["predictor"]), "--networks", "none",
         "--table-root", str(tiny_inputs["tables"]),
         "--out", str(tiny_inputs["root"] / "other")]
    )  # fmt: skip
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("ofabench: error:")]
    assert code == 1 and len(lines) == 1 and "trained on space 'small32'" in lines[0]

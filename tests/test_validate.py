"""End-to-end validation of latency tables: metrics, calibration recovering a known end-to-end
scale, resumable CSV, refusals, report files and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from ofabench.cli import main
from ofabench.errors import ConfigError, LatencyTableError
from ofabench.latency.model import LatencyModel
from ofabench.latency.profiler import fit_calibration, loo_errors, profile_device
from ofabench.latency.table import LatencyTable
from ofabench.latency.validate import (
    _kendall_tau_b,
    fidelity,
    kendall_tau,
    read_rows,
    split_indices,
    validate_device,
)

from .test_profiler import QUICK, linear_device, tiny_space

SCALE = 1.06


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models: one thread avoids thread-pool contention on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def calibrated_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A table of the synthetic device whose whole networks take 1.06 x the sum of their ops,
    with a calibration fitted on 6 subnets."""
    out = tmp_path_factory.mktemp("table") / "t.json"
    device = linear_device(e2e_scale=SCALE, macs=False)
    profile_device(device, tiny_space((24, 32)), out_path=out, settings=QUICK, calibrate=6)
    return out


def run(table: Path, out: Path, **kwargs: object):
    device = linear_device(e2e_scale=SCALE, macs=False)
    options = {"n": 10, "settings": QUICK, **kwargs}
    return validate_device(device, tiny_space((24, 32)), table=table, out_dir=out, **options)


# -- metrics ---------------------------------------------------------------------------------------
def test_fidelity_metrics() -> None:
    measured = np.array([10.0, 20.0, 30.0, 40.0])
    predicted = np.array([10.4, 21.8, 26.0, 40.0])  # errors 4%, 9%, 13.3%, 0%
    m = fidelity(predicted, measured)
    assert m.n == 4
    assert m.mape == pytest.approx(100 * (0.04 + 0.09 + 4 / 30 + 0) / 4)
    assert m.within_5 == 0.5 and m.within_10 == 0.75
    assert m.max_ape == pytest.approx(100 * 4 / 30)
    assert m.kendall_tau == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        fidelity([1.0], [1.0, 2.0])


def test_kendall_tau_numpy_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = x + rng.normal(size=40)
    y[:5] = y[5]  # ties
    assert _kendall_tau_b(x, y) == pytest.approx(kendall_tau(x, y), abs=1e-12)
    assert kendall_tau(x, -x) == pytest.approx(-1.0)


def test_split_indices() -> None:
    fit, held_out = split_indices(10, 0.2, seed=0)
    assert len(fit) == 2 and len(held_out) == 8
    assert sorted([*fit, *held_out]) == list(range(10))


def test_implausible_affine_calibration_falls_back_to_ratio(calibrated_table: Path) -> None:
    space = tiny_space((24, 32))
    model = LatencyModel(LatencyTable.load(calibrated_table), space)
    archs = [space.sample(seed) for seed in range(4)]
    sums = model.predict_batch(archs)
    anti = sums.max() + sums.min() - sums  # measured falls as the sum grows: a negative slope
    fitted, method = fit_calibration(model, archs, anti, "affine")
    assert method.startswith("ratio (affine scale -")
    assert fitted.overhead_ms == 0.0 and fitted.scale == pytest.approx(np.median(anti / sums))
    good, method = fit_calibration(model, archs, 1.06 * sums + 0.1, "affine")
    assert method == "affine" and good.scale == pytest.approx(1.06)
    assert good.overhead_ms == pytest.approx(0.1)


def test_loo_errors_by_hand() -> None:
    sums = np.array([1.0, 2.0, 4.0])
    measured = 1.1 * sums
    errors = loo_errors(sums, measured)
    assert errors["plain"] == pytest.approx(1 - 1 / 1.1)
    assert errors["ratio"] == pytest.approx(0.0, abs=1e-12)
    assert errors["affine"] == pytest.approx(0.0, abs=1e-12)
    # ratios 1.0, 1.2, 1.25; leaving one out, the median of the other two predicts it
    errors = loo_errors(sums, np.array([1.0, 2.4, 5.0]))
    assert errors["plain"] == pytest.approx((0 + 0.4 / 2.4 + 0.2) / 3)
    ratio_errors = [1.225 * 1 / 1.0 - 1, 1 - 1.125 * 2 / 2.4, 1 - 1.1 * 4 / 5.0]
    assert errors["ratio"] == pytest.approx(np.mean(ratio_errors))


def test_auto_calibration_keeps_the_sum_when_fitting_does_not_help(
    calibrated_table: Path,
) -> None:
    space = tiny_space((24, 32))
    model = LatencyModel(LatencyTable.load(calibrated_table), space)
    archs = [space.sample(seed) for seed in range(8)]
    sums = model.predict_batch(archs)
    noise = np.array([1.03, 0.97, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97])  # no systematic part
    fitted, method = fit_calibration(model, archs, sums * noise, "auto")
    assert method.startswith("auto: plain (leave-one-out mean error plain 2.")
    assert fitted.scale == 1.0 and fitted.overhead_ms == 0.0
    fitted, method = fit_calibration(model, archs, 1.2 * sums * noise, "auto")
    assert method.split(" (")[0] in ("auto: ratio", "auto: affine")
    assert fitted.predict(archs[0]) == pytest.approx(1.2 * sums[0], rel=0.04)
    fitted, method = fit_calibration(model, archs[:2], 1.1 * sums[:2], "auto")
    assert method == "auto: affine (fewer than 3 subnets: no leave-one-out choice)"
    assert fitted.predict(archs[0]) == pytest.approx(1.1 * sums[0], rel=1e-6)


# -- the run ----------------------------------------------------------------------------------------
def test_calibration_recovers_a_systematic_shortfall(
    calibrated_table: Path, tmp_path: Path
) -> None:
    result = run(calibrated_table, tmp_path, calibrate_split=0.3)
    plain = result.metrics["plain"]
    assert plain.within_5 == 0.0 and plain.within_10 == 1.0  # every sum is 1/1.06: -5.7%
    assert plain.mean_ratio == pytest.approx(SCALE, rel=1e-6)
    for name in ("table_calibrated", "split_calibrated"):
        assert result.metrics[name].max_ape < 1.0, name  # all within +-1%
    assert result.metrics["split_calibrated"].n == 7
    assert result.calibration["split"]["scale"] == pytest.approx(SCALE, rel=1e-6)
    assert result.calibration["table"]["scale"] == pytest.approx(SCALE, rel=1e-6)
    assert plain.kendall_tau == pytest.approx(1.0)


def test_report_files_carry_provenance(calibrated_table: Path, tmp_path: Path) -> None:
    result = run(calibrated_table, tmp_path)
    report = json.loads(Path(result.files["json"]).read_text())
    assert report["format"] == "ofabench-latency-validation"
    assert report["provenance"]["device"] == "linear"
    assert report["metrics"]["plain"]["n"] == 10
    csv_lines = Path(result.files["csv"]).read_text().splitlines()
    assert csv_lines[0].startswith("# ") and "provenance" in json.loads(csv_lines[0][2:])
    assert len(csv_lines) == 2 + 10
    png = Path(result.files["png"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"provenance" not in png[:8]
    assert b"Description" in png


def test_resume_measures_only_what_is_missing(calibrated_table: Path, tmp_path: Path) -> None:
    def crash_after_4(done: int, total: int, key: str) -> None:
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(calibrated_table, tmp_path, progress=crash_after_4)
    csv_path = tmp_path / "small32_w0.5_subnets.csv"
    text = csv_path.read_text()
    csv_path.write_text(text[:-15])  # the last row cut short, as by a kill mid-write
    identity = {"device": "linear", "seed": 0}
    assert len(read_rows(csv_path, identity)) == 3
    result = run(calibrated_table, tmp_path)
    assert result.n_measured_now == 7
    again = run(calibrated_table, tmp_path, n=12, passes=2)
    assert again.n_measured_now == 2 + 12
    assert again.metrics["plain"].n == 12


def test_refuses_another_run_or_device(calibrated_table: Path, tmp_path: Path) -> None:
    run(calibrated_table, tmp_path, n=3)
    with pytest.raises(ConfigError, match="another validation run"):
        run(calibrated_table, tmp_path, n=3, seed=1)
    yaml = tmp_path / "nulldev.yaml"
    yaml.write_text('backend: "null"\n')
    with pytest.raises(LatencyTableError, match="measured on device 'linear'"):
        validate_device(yaml, tiny_space((24, 32)), table=calibrated_table, n=3, out_dir=tmp_path)


def test_cli_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    yaml = tmp_path / "nulldev.yaml"
    yaml.write_text('backend: "null"\n')
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(tiny_space((24,)).to_dict()))
    quick = ["--warmup", "0", "--repeats", "1", "--max-rounds", "1"]
    table = tmp_path / "t.json"
    base = ["--device", str(yaml), "--space", str(space_file), *quick]
    assert main(["profile", *base, "--out", str(table)]) == 0
    assert "wrote" in capsys.readouterr().out
    args = ["validate", *base, "--table", str(table), "--n", "4", "--out", str(tmp_path / "v")]
    assert main([*args, "--calibrate-split", "0.5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["metrics"]) == {"plain", "plain_raw", "split_plain", "split_calibrated"}
    assert Path(data["files"]["png"]).is_file()

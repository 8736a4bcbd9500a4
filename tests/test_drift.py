"""Drift-robust measurement: the reference probe interleaved with ops, normalisation to the
table's reference speed, rounds re-measured when the probe moved, and the speed check that
rescales or refuses a table on a machine of another speed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from torch import nn

from ofabench.cli import main
from ofabench.devices.base import Availability, Backend, MeasureSettings
from ofabench.devices.profiles import DeviceProfile, profile_from_dict
from ofabench.devices.registry import register_backend
from ofabench.errors import BackendError, ConfigError, LatencyTableError
from ofabench.latency.model import LatencyModel
from ofabench.latency.probe import (
    PROBE,
    PROBE_ID,
    ProbeSettings,
    check_device_speed,
    judge_speed,
    probe_id,
    rescaled_model,
    table_reference,
)
from ofabench.latency.profiler import profile_device
from ofabench.latency.table import LatencyEntry, LatencyTable
from ofabench.space import get_space

QUICK = MeasureSettings(warmup=0, repeats=1, max_rounds=1)


def base_ms(model: nn.Module) -> float:
    """A model's latency at speed 1: set by its parameter count."""
    return 0.05 + 1e-5 * sum(p.numel() for p in model.parameters())


@register_backend
class DriftingBackend(Backend):
    """Every model takes ``base_ms(model) * speed(call)``, ``call`` counting timed runs across
    all models (the probe's included): the test sets ``speed`` to drift or spike."""

    name = "test-drifting"
    calls = 0
    speed: ClassVar[Callable[[int], float]] = staticmethod(lambda call: 1.0)

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True)

    def prepare(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        return base_ms(model)

    def run_many(self, prepared: float, n: int) -> list[float]:
        out = []
        for _ in range(n):
            type(self).calls += 1
            out.append(prepared * type(self).speed(type(self).calls) / 1e3)
        return out


def tiny_space() -> Any:
    return get_space("small32_w0.5").restrict(
        kernel_choices=(3, 5), expand_choices=(3,), depth_choices=(2,), resolutions=(24,)
    )


def drift_device(speed: Callable[[int], float]) -> DeviceProfile:
    DriftingBackend.calls = 0
    DriftingBackend.speed = staticmethod(speed)
    return DeviceProfile(name="drifting", backend="test-drifting")


def entry_over_base(table: LatencyTable) -> np.ndarray:
    """Each entry over its op's latency at speed 1 (1 everywhere when drift is removed)."""
    from ofabench.latency.ops import build_op_module
    from ofabench.latency.table import OpSpec

    return np.array(
        [table[k].mean_ms / base_ms(build_op_module(OpSpec.parse(k))[0]) for k in table]
    )


def profile(tmp_path: Path, speed: Callable[[int], float], probe: ProbeSettings) -> LatencyTable:
    out = tmp_path / f"t{len(list(tmp_path.iterdir()))}.json"
    profile_device(drift_device(speed), tiny_space(), out_path=out, settings=QUICK, probe=probe)
    return LatencyTable.load(out)


def test_slow_drift_is_normalised_away(tmp_path: Path) -> None:
    def drifting(call: int) -> float:  # 1% slower with every timed run
        return 1.0 + 0.01 * call

    loose = ProbeSettings(every=4, tolerance=0.5, mode="rounds")  # steady: no round to redo
    with_probe = entry_over_base(profile(tmp_path, drifting, loose))
    without = entry_over_base(profile(tmp_path, drifting, ProbeSettings(enabled=False)))
    assert np.ptp(without) > 0.2  # the raw entries drifted by more than 20% over the run
    assert np.ptp(with_probe) < 0.02  # normalised: all at the reference speed, within 2%
    assert with_probe == pytest.approx(1.01, rel=0.02)  # the first probe reading's speed


def spike(call: int) -> float:
    """Twice as slow during timed runs 5..11 (a noisy spell), else speed 1."""
    return 2.0 if 5 <= call < 12 else 1.0


def test_a_round_whose_probe_moved_is_measured_again(tmp_path: Path) -> None:
    table = profile(
        tmp_path, spike, ProbeSettings(every=4, tolerance=0.03, max_retries=2, mode="rounds")
    )
    assert entry_over_base(table) == pytest.approx(1.0, rel=1e-9)
    drift = table.provenance["profiling"]["runs"][-1]["drift"]
    assert drift["rounds_measured_again"] == 2 and drift["rounds_unsettled"] == 0
    assert drift["max_ms"] / drift["min_ms"] == pytest.approx(2.0)
    assert table.provenance[PROBE]["model"] == PROBE_ID
    assert all(table[k].probe_ms is not None for k in table)


def test_without_retries_the_spike_stays_in_the_table(tmp_path: Path) -> None:
    """The check above fails when rounds are not measured again: the spike's round is off."""
    table = profile(
        tmp_path, spike, ProbeSettings(every=4, tolerance=0.03, max_retries=0, mode="rounds")
    )
    assert np.abs(entry_over_base(table) - 1.0).max() > 0.1
    assert table.provenance["profiling"]["runs"][-1]["drift"]["rounds_unsettled"] >= 1


# -- paired timing: a machine that switches speed every few tens of milliseconds ------------------
@register_backend
class SpellsBackend(DriftingBackend):
    """Every run takes ``base_ms(model) * speed``, where the speed is 1.3 in every other spell of
    ``SPELL_MS`` of simulated time (the machine measured here: +27% in spells of 30 ms to
    seconds) and 1 otherwise. The clock advances by each run's duration."""

    name = "test-fast-spells"
    SPELL_MS = 300.0
    clock_ms = 0.0

    def run_many(self, prepared: float, n: int) -> list[float]:
        out = []
        for _ in range(n):
            slow = int(type(self).clock_ms // self.SPELL_MS) % 2 == 1
            ms = prepared * (1.3 if slow else 1.0)
            type(self).clock_ms += ms
            out.append(ms / 1e3)
        return out


def spells_table(tmp_path: Path, probe: ProbeSettings, name: str) -> LatencyTable:
    SpellsBackend.clock_ms = 0.0
    out = tmp_path / f"{name}.json"
    settings = MeasureSettings(warmup=0, repeats=9, max_rounds=1)
    device = DeviceProfile(name="spells", backend="test-fast-spells")
    profile_device(device, tiny_space(), out_path=out, settings=settings, probe=probe)
    return LatencyTable.load(out)


def test_paired_timing_keeps_fast_spells_out_of_the_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Timed alternately with the probe, block by block, each op is its ratio to the probe:
    every entry lands at one speed although a third of the timed runs ran 30% slow. Ops of
    different sizes get different block sizes; that is no change of backend worth a warning."""
    with caplog.at_level("WARNING", logger="ofabench"):
        paired = entry_over_base(spells_table(tmp_path, ProbeSettings(mode="paired"), "paired"))
    assert np.ptp(paired) / np.median(paired) < 0.02
    assert "backend info differs" not in caplog.text
    table = LatencyTable.load(tmp_path / "paired.json")
    assert "paired_block_runs" not in table.provenance["profiling"]["backend_info"]
    drift = table.provenance["profiling"]["runs"][-1]["drift"]
    assert drift["mode"] == "paired"
    assert drift["max_ms"] / drift["min_ms"] == pytest.approx(1.3, rel=0.05)  # the probe saw it


def test_probe_rounds_cannot_follow_fast_spells(tmp_path: Path) -> None:
    """The same machine with the probe read between rounds (the check above fails without
    pairing): entries straddle the two speeds."""
    rounds = entry_over_base(
        spells_table(tmp_path, ProbeSettings(mode="rounds", max_retries=0), "rounds")
    )
    assert np.ptp(rounds) / np.median(rounds) > 0.15


def test_paired_measurement_reports_its_ratio_and_blocks() -> None:
    """A model 10x shorter than the reference runs 10 times per block; the ratio is exact at a
    steady speed and the reference's time comes back in ms."""
    SpellsBackend.SPELL_MS, SpellsBackend.clock_ms = 1e12, 0.0
    try:
        backend = SpellsBackend()
        backend.pair_with(2.0)
        m = backend.measure_prepared(0.2, MeasureSettings(warmup=0, repeats=5, max_rounds=2))
    finally:
        SpellsBackend.SPELL_MS = 300.0
    assert m.info["paired_block_runs"] == 10
    assert m.probe_ratio == pytest.approx(0.1) and m.probe_ms == pytest.approx(2.0)
    assert m.median_ms == pytest.approx(0.2) and m.n == 2 * 5 * 10 and m.stable  # warm runs untimed


@pytest.mark.parametrize("warms_up", [False, True])
def test_paired_blocks_run_the_item_untimed_only_where_run_many_does_not(warms_up: bool) -> None:
    """Before each timed block the item runs once untimed (the reference left the caches
    cold), unless the backend's run_many runs it untimed anyway (TVM's time_evaluator): then
    that run would be a second, wasted one."""
    calls: list[tuple[float, int]] = []

    class Recording(DriftingBackend):
        name = "test-recording"
        RUN_MANY_WARMS_UP = warms_up

        def run_many(self, prepared: float, n: int) -> list[float]:
            calls.append((prepared, n))
            return [prepared / 1e3] * n

    backend = Recording()
    backend.pair_with(2.0)
    backend.measure_prepared(0.5, MeasureSettings(warmup=0, repeats=4, max_rounds=2))
    item = [n for model, n in calls if model == 0.5]
    assert item[0] == 3  # the first estimate of the item's time, then the blocks
    blocks = item[1:]
    assert sum(n == 4 for n in blocks) == 2 * 4  # two rounds of 4 blocks of 4 runs
    assert blocks.count(1) == (0 if warms_up else 2 * 4)


def test_a_backend_with_its_own_rounds_is_not_paired(tmp_path: Path) -> None:
    class Reporting(SpellsBackend):
        name = "test-fast-spells-reporting"

        def measure_round(self, prepared: Any, settings: MeasureSettings, warmup: int) -> Any:
            return super().measure_round(prepared, settings, warmup)

    assert SpellsBackend().can_pair and not Reporting().can_pair
    with pytest.raises(BackendError, match="cannot time a reference alternately"):
        Reporting().pair_with(1.0)


def test_unknown_probe_mode_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown probe mode 'pairs'; valid: paired"):
        ProbeSettings(mode="pairs")


# -- the speed check ---------------------------------------------------------------------------------
def table_with_reference(reference_ms: float | None) -> tuple[LatencyTable, LatencyModel]:
    space = tiny_space()
    from ofabench.latency.profiler import ops_at

    table = LatencyTable.for_space(space, device="drifting", backend="test-drifting")
    for key in ops_at(space, space.resolutions):
        table.add(key, LatencyEntry(1.0))
    if reference_ms is not None:
        table.provenance[PROBE] = {"model": PROBE_ID, "reference_ms": reference_ms}
    return table, LatencyModel(table, space)


def test_speed_check_keeps_rescales_or_refuses() -> None:
    table, model = table_with_reference(2.0)
    arch = model.space.max_arch()
    same = judge_speed(table, 2.06)
    assert same.action == "same speed" and rescaled_model(model, same) is model
    slower = judge_speed(table, 2.6)  # 1.3x: auto rescales
    assert slower.action == "rescaled" and slower.scale == pytest.approx(1.3)
    assert rescaled_model(model, slower).predict(arch) == pytest.approx(1.3 * model.predict(arch))
    with pytest.raises(LatencyTableError, match=r"2\.30x.*re-profile.*recalibrate"):
        judge_speed(table, 4.6)  # 2.3x: beyond auto's 1.5x
    assert judge_speed(table, 4.6, "rescale").scale == pytest.approx(2.3)
    with pytest.raises(LatencyTableError, match="re-profile"):
        judge_speed(table, 2.6, "refuse")


def test_a_table_without_reference_is_reported_unchecked() -> None:
    old = LatencyTable.load(Path("latency_tables/cpu-onnxruntime/ofa_mbv3_w1.0.json"))
    assert table_reference(old) is None
    check = check_device_speed("cpu-onnxruntime", old)  # returns before timing anything
    assert check.action == "unchecked" and "no probe speed" in check.message
    assert check.scale == 1.0


def test_check_device_speed_measures_the_probe_here() -> None:
    table, _ = table_with_reference(None)
    drift_device(lambda call: 3.0)  # this machine is 3x slower than the table's
    from ofabench.latency.probe import probe_module

    reference = base_ms(probe_module()[0])
    table.provenance[PROBE] = {"model": PROBE_ID, "reference_ms": reference}
    device = DeviceProfile(name="drifting", backend="test-drifting")
    with pytest.raises(LatencyTableError, match=r"3\.00x"):
        check_device_speed(device, table)
    assert check_device_speed(device, table, "rescale").scale == pytest.approx(3.0)


def test_a_device_may_time_a_smaller_probe_and_its_tables_say_which(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes: list[tuple[int, ...]] = []
    prepare = DriftingBackend.prepare

    def recording(self: Any, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        shapes.append(tuple(input_shape))
        return prepare(self, model, input_shape)

    monkeypatch.setattr(DriftingBackend, "prepare", recording)
    drift_device(lambda call: 1.0)
    small = profile_from_dict(
        {"backend": "test-drifting", "probe_resolution": 64}, default_name="drifting"
    )
    table_path = tmp_path / "t.json"
    profile_device(small, tiny_space(), out_path=table_path, settings=QUICK)
    table = LatencyTable.load(table_path)
    assert table.provenance[PROBE]["model"] == probe_id(64) != PROBE_ID
    assert shapes[0] == (1, 3, 64, 64)  # the probe, converted first
    assert check_device_speed(small, table).action == "same speed"
    default = DeviceProfile(name="drifting", backend="test-drifting")  # a 128 px probe
    check = check_device_speed(default, table)
    assert check.action == "unchecked" and "its probe is another" in check.message
    assert "at 64 px" in check.message and "at 128 px" in check.message


@pytest.mark.parametrize("value", [8, 1024, "64", True, 64.0])
def test_a_bad_probe_resolution_is_one_line(value: Any) -> None:
    with pytest.raises(ConfigError, match="'probe_resolution' must be an integer from 32 to 512"):
        profile_from_dict({"backend": "onnxruntime", "probe_resolution": value}, "x")


@pytest.mark.parametrize(
    ("profile_mode", "asked", "used"),
    [(None, None, "paired"), ("rounds", None, "rounds"), ("rounds", "paired", "paired")],
)
def test_a_device_profile_sets_the_probe_mode_and_a_command_overrides_it(
    tmp_path: Path, profile_mode: str | None, asked: str | None, used: str
) -> None:
    drift_device(lambda call: 1.0)
    data = {"backend": "test-drifting", **({"probe_mode": profile_mode} if profile_mode else {})}
    device = profile_from_dict(data, default_name="drifting")
    assert device.probe_mode == (profile_mode or "paired")
    path = tmp_path / "t.json"
    probe = ProbeSettings(mode=asked)
    profile_device(device, tiny_space(), out_path=path, settings=QUICK, probe=probe)
    table = LatencyTable.load(path)
    assert table.provenance[PROBE]["settings"]["mode"] == used
    assert table.provenance["profiling"]["runs"][-1]["drift"]["mode"] == used


@pytest.mark.parametrize("value", ["pairs", None, 1])
def test_a_bad_probe_mode_is_one_line(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"'probe_mode' must be one of \['paired', 'rounds'\]"):
        profile_from_dict({"backend": "onnxruntime", "probe_mode": value}, "x")


def test_anchoring_on_calibration_subnets_takes_out_a_probe_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe reads 25% slower in the validation's process while the subnets run as fast as
    when profiled (what this machine did, 4-13%): normalised by the probe, every subnet comes
    out 0.8x its prediction; re-measuring the table's calibration subnets first finds that
    level and takes it out."""
    from ofabench.latency.validate import validate_device

    probe_factor = {"now": 1.0}
    prepare = DriftingBackend.prepare

    def probe_slower(self: Any, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        factor = probe_factor["now"] if input_shape[-1] == 128 else 1.0  # the probe's size
        return factor * prepare(self, model, input_shape)

    monkeypatch.setattr(DriftingBackend, "prepare", probe_slower)
    device = drift_device(lambda call: 1.0)
    table_path = tmp_path / "t.json"
    profile_device(device, tiny_space(), out_path=table_path, settings=QUICK, calibrate=4)
    probe_factor["now"] = 1.25
    result = validate_device(
        device, tiny_space(), table=table_path, n=6, seed=3, out_dir=tmp_path / "v",
        settings=QUICK, speed_check="rescale", anchor=3,
    )  # fmt: skip
    assert result.calibration["anchor"]["level"] == pytest.approx(0.8, rel=1e-6)
    assert result.metrics["table_calibrated"].mean_ratio == pytest.approx(0.8, rel=0.02)
    assert result.metrics["table_anchored"].mean_ratio == pytest.approx(1.0, rel=0.02)
    with pytest.raises(ConfigError, match="records 4; profile with `--calibrate 9`"):
        validate_device(device, tiny_space(), table=table_path, n=6, out_dir=tmp_path / "w",
                        settings=QUICK, speed_check="rescale", anchor=9)  # fmt: skip


def test_validate_cli_refuses_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table_path = tmp_path / "t.json"
    profile_device(
        drift_device(lambda call: 1.0), tiny_space(), out_path=table_path, settings=QUICK
    )
    profile_yaml = tmp_path / "drifting.yaml"
    profile_yaml.write_text("backend: test-drifting\n")
    DriftingBackend.speed = staticmethod(lambda call: 2.0)  # the machine got twice as slow
    space_file = tmp_path / "space.json"
    import json

    space_file.write_text(json.dumps(tiny_space().to_dict()))
    args = ["validate", "--device", str(profile_yaml), "--space", str(space_file), "--table",
            str(table_path), "--n", "3", "--warmup", "0", "--repeats", "1", "--max-rounds", "1",
            "--out", str(tmp_path / "v")]  # fmt: skip
    text = json.loads(json.dumps(table_path.read_text()))
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2.00x" in err[0] and "re-profile" in err[0]
    assert table_path.read_text() == text
    assert main([*args, "--speed-check", "rescale", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["speed"]["action"] == "rescaled" and data["speed"]["ratio"] == pytest.approx(2.0)
    plain, raw = data["metrics"]["plain"], data["metrics"]["plain_raw"]
    assert raw["mean_ratio"] == pytest.approx(2 * plain["mean_ratio"])  # normalised to the table

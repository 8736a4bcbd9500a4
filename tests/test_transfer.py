"""Few-shot onboarding: a held-out device's table predicted from K of its ops and the other
devices' tables (tiny space, synthetic devices), the live run, and bad input refused in one line
with no table overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ofabench.cli import main
from ofabench.devices.base import MeasureSettings
from ofabench.devices.profiles import DeviceProfile
from ofabench.errors import ConfigError, LatencyTableError
from ofabench.latency.model import LatencyModel
from ofabench.latency.probe import ProbeSettings
from ofabench.latency.profiler import measured_keys, op_work, ops_at
from ofabench.latency.table import LatencyEntry, LatencyTable, OpSpec
from ofabench.latency.transfer import (
    MIN_BUDGET,
    plan_measurements,
    predict_table_ms,
    profile_transfer,
    transferred_keys,
)
from ofabench.space import as_rng, get_space

QUICK = MeasureSettings(warmup=0, repeats=1, max_rounds=1)


def tiny_space():  # noqa: ANN201
    return get_space("small32_w0.5").restrict(
        kernel_choices=(3, 5), expand_choices=(3, 4), depth_choices=(2,), resolutions=(24, 28, 32)
    )


# device -> (per-call ms, ms per MAC, kernel-5 factor, SE factor): four CPUs that differ per kind
DEVICES = {
    "a": (0.02, 2e-7, 1.3, 1.2),
    "b": (0.05, 1e-7, 1.8, 1.1),
    "c": (0.01, 4e-7, 1.1, 1.5),
    "held-out": (0.03, 1.5e-7, 1.5, 1.3),
}


def synthetic_table(device: str, space=None) -> LatencyTable:  # noqa: ANN001
    space = space or tiny_space()
    fixed, per_mac, k5, se = DEVICES[device]
    table = LatencyTable.for_space(space, device=device, backend="synthetic")
    rng = np.random.default_rng(len(device))
    for op in ops_at(space, space.resolutions).values():
        ms = (fixed + per_mac * op_work(op)) * (k5 if op.kernel == 5 else 1) * (se if op.se else 1)
        table.add(op, LatencyEntry(ms * float(np.exp(0.02 * rng.standard_normal()))))
    return table


def test_transfer_predicts_a_held_out_table() -> None:
    space = tiny_space()
    target, sources = synthetic_table("held-out"), [synthetic_table(d) for d in "abc"]
    ops = [OpSpec.parse(k) for k in target]
    chosen = plan_measurements(space, ops, sources, 15)
    assert len({op.key for op in chosen}) == 15 and len({op.in_hw for op in chosen}) > 1
    values, fit = predict_table_ms(ops, sources, {op.key: target[op.key].mean_ms for op in chosen})
    predicted = LatencyTable.for_space(space, device="t", backend="transfer")
    for op, value in zip(ops, values):
        predicted.add(op, LatencyEntry(float(value)))
    archs = [space.sample(as_rng(i)) for i in range(50)]
    truth = LatencyModel(target, space).predict_batch(archs)
    error = np.abs(LatencyModel(predicted, space).predict_batch(archs) / truth - 1)
    assert np.mean(error <= 0.10) >= 0.9, error
    naive = LatencyModel(sources[0], space).predict_batch(archs)  # the nearest source, as is
    assert np.mean(np.abs(naive / truth - 1) <= 0.10) < 0.5  # so the transfer did the work
    assert fit.loo_rmse < 0.2


def test_budget_and_sources_are_checked() -> None:
    space = tiny_space()
    ops = [OpSpec.parse(k) for k in synthetic_table("a")]
    with pytest.raises(ConfigError, match=f"outside {MIN_BUDGET}..{len(ops)}"):
        plan_measurements(space, ops, [synthetic_table("a")], len(ops) + 1)
    with pytest.raises(ConfigError, match="at least"):
        plan_measurements(space, ops, [synthetic_table("a")], MIN_BUDGET - 1)


def test_live_transfer_records_what_was_measured(tmp_path: Path) -> None:
    space = tiny_space()
    sources = []
    for device in "abc":
        sources.append(synthetic_table(device).save(tmp_path / f"{device}.json"))
    out = tmp_path / "new.json"
    device = DeviceProfile(name="new", backend="null", settings={"latency_ms": 0.5})
    result = profile_transfer(
        device, space, sources, 12, subnets=3, out_path=out, settings=QUICK,
        probe=ProbeSettings(every=4),
    )  # fmt: skip
    table = LatencyTable.load(out)
    assert result.n_measured == 12 and result.n_transferred == len(table) - 12
    assert len(measured_keys(table)) == 12 and len(transferred_keys(table)) == len(table) - 12
    assert all(table[k].count == 0 for k in transferred_keys(table))
    assert all(table[k].probe_ms is not None for k in measured_keys(table))
    assert table.provenance["calibration"]["n"] == 3 and table.provenance["probe"]["reference_ms"]


def test_cli_bad_input_is_one_line_and_overwrites_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tiny_space()
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(space.to_dict()))
    a = synthetic_table("a").save(tmp_path / "a.json")
    other = synthetic_table("b", get_space("small32_w0.5")).save(tmp_path / "other.json")
    out = tmp_path / "new.json"
    out.write_text("keep me")
    device = tmp_path / "new.yaml"
    device.write_text("backend: 'null'\n")
    base = ["profile", "--device", str(device), "--space", str(space_file), "--out", str(out)]
    cases = [
        ["--transfer-from", str(other), "--budget", "12"],  # another space
        ["--transfer-from", str(a), "--budget", "100000"],  # larger than the table
        ["--transfer-from", str(a), "--budget", "3"],  # below the minimum
        ["--transfer-from", str(a), "--budget", "12"],  # the output exists
        ["--transfer-from", str(a)],  # no budget
    ]
    for extra in cases:
        assert main([*base, *extra]) == 1, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, (extra, err)
        assert out.read_text() == "keep me"
    with pytest.raises(LatencyTableError, match="not for space"):
        from ofabench.latency.transfer import load_sources

        load_sources(space, [other], [])

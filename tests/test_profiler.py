"""Profiling a device into a latency table: ops, plan, resume after a crash or a kill, refusing
another device's table, fitted resolutions, calibration, the CLI, and a real ONNX Runtime run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ofabench.cli import main
from ofabench.devices.base import Availability, Backend, MeasureSettings
from ofabench.devices.profiles import DeviceProfile
from ofabench.devices.registry import register_backend
from ofabench.errors import BackendError, ConfigError, LatencyTableError
from ofabench.latency.ops import build_op_module, build_subnet_module
from ofabench.latency.probe import ProbeSettings
from ofabench.latency.profiler import (
    fit_entries,
    fit_group,
    fitted_keys,
    latency_model,
    measured_keys,
    measured_resolutions,
    op_group,
    op_work,
    ops_at,
    plan_profile,
    profile_device,
)
from ofabench.latency.table import (
    OFA_OP_NAMES,
    LatencyEntry,
    LatencyTable,
    OpSpec,
    resolution_ops,
)
from ofabench.provenance import command_line
from ofabench.space import get_space
from ofabench.supernet.static import MobileNetV3

QUICK = MeasureSettings(warmup=0, repeats=1, max_rounds=1)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models: one thread avoids thread-pool contention on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_space(resolutions: tuple[int, ...] = (24, 28, 32), kernels: tuple[int, ...] = (3, 5)):
    """26 ops per resolution (16 with one kernel): k 3/5, e 3, depth 2 of small32_w0.5."""
    return get_space("small32_w0.5").restrict(
        kernel_choices=kernels, expand_choices=(3,), depth_choices=(2,), resolutions=resolutions
    )


def module_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Conv and linear multiply-accumulates of one forward pass (forward hooks)."""
    total = 0

    def count(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += output.numel() * module.weight[0].numel()
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(shape))
    for hook in hooks:
        hook.remove()
    return total


def op_truth_ms(model: nn.Module) -> float:
    """The synthetic latency of one op: depends only on its parameters."""
    return 0.02 + 1e-5 * sum(p.numel() for p in model.parameters())


@register_backend
class LinearTestBackend(Backend):
    """Per op: ``a * MACs + b`` with a, b set by the op's parameters (so per op group), i.e.
    exactly linear in the feature-map area; with ``macs: false`` just ``b``, and then a whole
    network takes ``e2e_scale * the sum of its ops``. Fails on the ``fail_at``-th op if asked.
    An op whose input is ``spike_hw`` pixels square takes ``spike`` times longer (as untuned TVM's
    blocks do at some feature-map sizes)."""

    name = "test-linear"
    settings_keys = frozenset({"e2e_scale", "fail_at", "macs", "spike_hw", "spike"})
    calls = 0

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True)

    def prepare(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        type(self).calls += 1
        if type(self).calls == self.settings.get("fail_at"):
            raise RuntimeError("synthetic conversion failure")
        if isinstance(model, MobileNetV3):
            n_ops = len(model.blocks) + 5  # stem, blocks, final expand, pool, mix, classifier
            total = 0.02 * n_ops + 1e-5 * sum(p.numel() for p in model.parameters())
            return self.settings.get("e2e_scale", 1.0) * total
        if not self.settings.get("macs", True):
            return op_truth_ms(model)
        params = sum(p.numel() for p in model.parameters())
        slope = 1e-6 * (1 + params % 7)
        value = slope * module_macs(model, input_shape) + op_truth_ms(model)
        if input_shape[-1] in self.settings.get("spike_hw", ()):
            value *= self.settings.get("spike", 1.0)
        return value

    def run_many(self, prepared: float, n: int) -> list[float]:
        return [prepared / 1e3] * n


@register_backend
class FlakyTestBackend(Backend):
    """The first measurement of every model is disturbed (each round slower than the last, so
    the rounds never agree); later ones are calm and take ``op_truth_ms``."""

    name = "test-flaky"
    seen: dict[tuple[Any, ...], int] = {}

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True)

    def prepare(self, model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
        key = (type(model).__name__, tuple(input_shape), sum(p.numel() for p in model.parameters()))
        self.seen[key] = self.seen.get(key, 0) + 1
        return {"ms": op_truth_ms(model), "noisy": self.seen[key] == 1, "round": 0}

    def run_many(self, prepared: dict[str, Any], n: int) -> list[float]:
        prepared["round"] += 1
        factor = 1 + prepared["round"] if prepared["noisy"] else 1
        return [prepared["ms"] * factor / 1e3] * n


@register_backend
class SpellsTestBackend(Backend):
    """A machine that slows down for a while now and then: every timing call in a slow spell
    (calls 0-3, 12-15, 24-27, ... of the class's counter) takes 1.3x; all runs of one call agree,
    so no measurement looks unstable."""

    name = "test-spells"
    calls = 0

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True)

    def prepare(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        return op_truth_ms(model)

    def run_many(self, prepared: float, n: int) -> list[float]:
        slow = (type(self).calls // 4) % 3 == 0
        type(self).calls += 1
        return [prepared * (1.3 if slow else 1.0) / 1e3] * n


def linear_device(**settings: Any) -> DeviceProfile:
    return DeviceProfile(name="linear", backend="test-linear", settings=settings)


@pytest.fixture
def null_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "nulldev.yaml"
    path.write_text('backend: "null"\ndescription: no hardware\n')
    return path


# -- ops -----------------------------------------------------------------------------------------
def test_every_op_kind_builds_with_the_shapes_of_its_key() -> None:
    space = tiny_space()
    ops = resolution_ops(space, 28).all_ops()
    assert {op.kind for op in ops} == {
        "stem",
        "mbconv",
        "final_expand",
        "pool",
        "feature_mix",
        "classifier",
    }
    for op in ops:
        module, shape = build_op_module(op)
        assert not module.training
        out = module(torch.randn(shape))
        want = (1, op.out_c) if op.kind == "classifier" else (1, op.out_c, op.out_hw, op.out_hw)
        assert tuple(out.shape) == want, op.key
    first_block = ops[1]
    assert first_block.mid == first_block.in_c
    assert build_op_module(first_block)[0].expand_conv is None


def test_op_modules_have_nontrivial_batchnorm() -> None:
    op = resolution_ops(tiny_space(), 24).fixed[0]
    module, _ = build_op_module(op)
    bn = module[1]
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_subnet_module_matches_layers() -> None:
    space = tiny_space()
    arch = space.sample(0)
    net, shape = build_subnet_module(space, arch)
    assert shape == (1, 1, arch.r, arch.r)
    assert tuple(net(torch.randn(shape)).shape) == (1, space.n_classes)


# -- plan ------------------------------------------------------------------------------------------
def test_measured_resolutions_specs() -> None:
    full = get_space().resolutions
    assert measured_resolutions(full, "every:4") == (128, 144, 160, 176, 192, 208, 224)
    assert measured_resolutions(full, None) == full
    assert measured_resolutions((24, 28, 32), "every:4") == (24, 32)
    assert measured_resolutions(full, "measure:128,224") == (128, 224)
    for bad in ("every:0", "half", "measure:129"):
        with pytest.raises(ConfigError):
            measured_resolutions(full, bad)


def test_plan_never_extrapolates() -> None:
    space = tiny_space()
    inside = plan_profile(space, space.resolutions, (24, 32))
    assert inside.to_fit and inside.fitted_resolutions == (28,)
    outside = plan_profile(space, space.resolutions, (24, 28))
    at_32 = set(ops_at(space, [32])) - set(ops_at(space, [24, 28]))
    assert not outside.to_fit
    assert at_32 <= {op.key for op in outside.to_measure}


# -- profiling, resume, refusal ---------------------------------------------------------------------
def test_profile_writes_every_key(null_yaml: Path, tmp_path: Path) -> None:
    space = tiny_space((24, 32))
    out = tmp_path / "t.json"
    result = profile_device(null_yaml, space, out_path=out, settings=QUICK)
    table = LatencyTable.load(out)
    assert set(table) == set(ops_at(space, space.resolutions))
    assert result.n_measured == len(table) == result.n_entries
    assert table.device == "nulldev" and table.backend == "null"
    assert table.provenance["profiling"]["measure_settings"]["repeats"] == 1
    # one timed block per op (repeats=1), timed alternately with the probe
    assert all(e.median_ms == e.mean_ms and e.count >= 1 for e in table.entries.values())
    assert all(e.probe_ms is not None for e in table.entries.values())


def test_crash_then_resume_measures_each_op_once(null_yaml: Path, tmp_path: Path) -> None:
    space = tiny_space((24, 32))
    reference = profile_device(null_yaml, space, out_path=tmp_path / "ref.json", settings=QUICK)
    out = tmp_path / "t.json"
    first: list[str] = []

    def crash_after_7(done: int, total: int, key: str) -> None:
        if key:
            first.append(key)
        if done == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_device(null_yaml, space, out_path=out, settings=QUICK, progress=crash_after_7)
    assert set(LatencyTable.load(out)) == set(first) and len(first) == 7
    second: list[str] = []
    result = profile_device(
        null_yaml, space, out_path=out, settings=QUICK, progress=lambda d, t, k: second.append(k)
    )
    second = [k for k in second if k]
    assert not set(first) & set(second)
    assert result.n_skipped == 7 and result.n_measured == len(second)
    final = LatencyTable.load(out)
    assert set(final) == set(LatencyTable.load(reference.path))
    assert len(final) == reference.n_entries
    runs = final.provenance["profiling"]["runs"]  # each run that added to it, with its command
    assert len(runs) == 2 and all(r["command"] == command_line() for r in runs)


def test_backend_failure_names_the_op_and_keeps_the_table(tmp_path: Path) -> None:
    space = tiny_space((24,))
    out = tmp_path / "t.json"
    LinearTestBackend.calls = 0
    with pytest.raises(BackendError, match=r"failed on op Conv_2-input:1x1x\d+-output:"):
        profile_device(linear_device(fail_at=6), space, out_path=out, settings=QUICK)  # 1st: the probe
    assert len(LatencyTable.load(out)) == 4
    result = profile_device(linear_device(), space, out_path=out, settings=QUICK)
    assert result.n_skipped == 4 and result.n_entries == len(ops_at(space, [24]))


def test_killed_process_loses_nothing(null_yaml: Path, tmp_path: Path) -> None:
    """A real SIGKILL after 5 ops, with saving after every op: the rerun measures the rest."""
    out = tmp_path / "t.json"
    script = textwrap.dedent(
        f"""
        import os, signal
        from ofabench.devices.base import MeasureSettings
        from ofabench.latency.profiler import profile_device
        from ofabench.space import get_space
        space = get_space("small32_w0.5").restrict(kernel_choices=(3, 5), expand_choices=(3,),
                                                 depth_choices=(2,), resolutions=(24,))
        def die(done, total, key):
            if done == 5:
                os.kill(os.getpid(), signal.SIGKILL)
        profile_device({str(null_yaml)!r}, space, out_path={str(out)!r}, save_every_s=0,
                       settings=MeasureSettings(warmup=0, repeats=1, max_rounds=1), progress=die)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert len(LatencyTable.load(out)) == 5
    result = profile_device(null_yaml, tiny_space((24,)), out_path=out, settings=QUICK)
    assert result.n_skipped == 5
    assert result.n_measured + 5 == result.n_entries == len(ops_at(tiny_space((24,)), [24]))


def test_refuses_a_table_of_another_space_or_device(null_yaml: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    profile_device(null_yaml, tiny_space((24,)), out_path=out, settings=QUICK)
    before = out.read_bytes()
    with pytest.raises(LatencyTableError, match="cannot resume .*space"):
        profile_device(null_yaml, get_space("small32"), out_path=out, settings=QUICK)
    other = tmp_path / "otherdev.yaml"
    other.write_text(null_yaml.read_text())
    with pytest.raises(LatencyTableError, match="not device 'otherdev'"):
        profile_device(other, tiny_space((24,)), out_path=out, settings=QUICK)
    out.write_bytes(before[: len(before) // 2])  # a table cut short
    with pytest.raises(LatencyTableError, match="not valid JSON"):
        profile_device(null_yaml, tiny_space((24,)), out_path=out, settings=QUICK)
    assert out.read_bytes() == before[: len(before) // 2]


def test_unstable_ops_are_measured_again(tmp_path: Path) -> None:
    FlakyTestBackend.seen = {}
    space = tiny_space((24,))
    device = DeviceProfile(name="flaky", backend="test-flaky")
    settings = MeasureSettings(warmup=0, repeats=2, max_rounds=2, tolerance=0.01)
    seen: list[str] = []
    result = profile_device(
        device, space, out_path=tmp_path / "t.json", settings=settings,
        progress=lambda done, total, key: seen.append(f"{done}/{total}"),
        probe=ProbeSettings(enabled=False),  # the probe would be disturbed too: see test_drift
    )  # fmt: skip
    n_ops = len(ops_at(space, [24]))
    assert result.n_measured == n_ops and result.n_measured_again == n_ops
    assert result.n_unstable == 0 and seen[-1] == f"{2 * n_ops}/{2 * n_ops}"
    table = LatencyTable.load(result.path)
    assert table.provenance["profiling"]["unstable_keys"] == []
    for key in table:
        module, _ = build_op_module(OpSpec.parse(key))
        assert table[key].mean_ms == pytest.approx(op_truth_ms(module)), key


def test_passes_keep_each_ops_fastest_sweep_out_of_slow_spells(tmp_path: Path) -> None:
    """One sweep leaves the ops timed during slow spells 1.3x too slow in the table; three
    sweeps meet every op at a calm moment at least once and keep that."""
    space = tiny_space((24,))
    device = DeviceProfile(name="spells", backend="test-spells")
    truth = {key: op_truth_ms(build_op_module(OpSpec.parse(key))[0])
             for key in (op.key for op in ops_at(space, [24]).values())}  # fmt: skip
    errors = {}
    for passes in (1, 3):
        SpellsTestBackend.calls = 0
        result = profile_device(
            device, space, out_path=tmp_path / f"p{passes}.json", settings=QUICK, passes=passes,
            probe=ProbeSettings(enabled=False),
        )  # fmt: skip
        table = LatencyTable.load(result.path)
        errors[passes] = [table[k].mean_ms / truth[k] - 1 for k in truth]
        assert result.n_measured_again == (passes - 1) * len(truth)
        assert table.provenance["profiling"]["runs"][-1]["passes"] == passes
    assert max(errors[1]) == pytest.approx(0.3)  # one sweep: spells in the table
    assert max(abs(e) for e in errors[3]) < 1e-9
    with pytest.raises(ConfigError, match="passes must be at least 1"):
        profile_device(device, space, out_path=tmp_path / "p0.json", settings=QUICK, passes=0)


# -- fitted resolutions and calibration ---------------------------------------------------------------
def test_fitted_entries_match_a_linear_ground_truth(tmp_path: Path) -> None:
    space = tiny_space(kernels=(5,))
    fit = profile_device(
        linear_device(),
        space,
        out_path=tmp_path / "fit.json",
        settings=QUICK,
        fit_resolutions="every:2",
    )
    assert fit.measured_resolutions == (24, 32) and fit.fitted_resolutions == (28,)
    table = LatencyTable.load(fit.path)
    assert set(table) == set(ops_at(space, space.resolutions))
    fitted = fitted_keys(table)
    assert len(fitted) == fit.n_fitted > 0 and fit.n_measured + fit.n_fitted == len(table)
    backend = LinearTestBackend()
    for key in fitted:
        truth = backend.prepare(*build_op_module(OpSpec.parse(key)))
        assert table[key].count == 0
        assert table[key].mean_ms == pytest.approx(truth, rel=1e-6), key
    assert table.provenance["profiling"]["fitted_resolutions"] == [28]
    assert "least squares" in table.provenance["profiling"]["fit"]["method"]


@pytest.mark.parametrize(("power", "rejected"), [(1.0, False), (2.0, True)])
def test_groups_that_do_not_fit_a_line_are_measured(power: float, rejected: bool) -> None:
    space = get_space()
    table = LatencyTable.for_space(space, device="d", backend="b")
    slot_op = {r: resolution_ops(space, r).blocks[(0, 7, 6)] for r in (128, 136, 144, 160)}
    for r in (128, 144, 160):
        value = 0.1 + (op_work(slot_op[r]) / 1e7) ** power
        table.add(slot_op[r], LatencyEntry(value, 0.0, 10, value))
    summary, measure_instead = fit_entries(table, [slot_op[136]], max_rel_rms=0.01)
    assert (measure_instead == [slot_op[136]]) == rejected
    assert (slot_op[136].key in table) != rejected
    assert summary["groups_rejected"] == int(rejected)
    if not rejected:
        want = 0.1 + op_work(slot_op[136]) / 1e7
        assert table[slot_op[136]].mean_ms == pytest.approx(want, rel=1e-9)


def _slot_points(
    rs: tuple[int, ...], spikes: dict[int, float]
) -> tuple[dict[int, OpSpec], list[tuple[OpSpec, float]]]:
    """One MBConv slot of the ImageNet space at ``rs``: its ops and linear latencies, those at
    the resolutions in ``spikes`` multiplied by their factor."""
    space = get_space()
    slot_op = {r: resolution_ops(space, r).blocks[(0, 7, 6)] for r in rs}
    points = [(slot_op[r], (0.1 + op_work(slot_op[r]) / 1e7) * spikes.get(r, 1.0)) for r in rs]
    return slot_op, points


SIX = (128, 144, 160, 176, 192, 208)


@pytest.mark.parametrize(
    ("rs", "spikes", "left_out"),
    [
        (SIX, {160: 2.5}, (80,)),  # far above the line: left out, the others fit exactly
        (SIX, {128: 2.5, 176: 2.5}, (64, 88)),  # two apart, as untuned TVM's at 128 and 192 px
        (SIX, {160: 1.08}, ()),  # 8% above: within 2x the allowed 5%, noise, the line holds
        (SIX, {160: 0.4}, None),  # far below: a measurement cannot be too fast; measured
        (SIX, {144: 2.5, 160: 2.5}, None),  # neighbours far above: the line is wrong
        (SIX[:5], {128: 2.5, 176: 2.5}, None),  # two of five: a line on three is not trusted
    ],
)
def test_a_group_leaves_spikes_out_of_its_line(
    rs: tuple[int, ...], spikes: dict[int, float], left_out: tuple[int, ...] | None
) -> None:
    slot_op, points = _slot_points(rs, spikes)
    fit = fit_group(points, max_rel_rms=0.05)
    if left_out is None:  # rejected: its ops are measured, the line reported on all points
        assert fit.rel_rms > 0.05 and fit.spikes == () and fit.n == len(rs)
    else:
        assert fit.spikes == left_out and fit.rel_rms <= 0.05
        assert fit.n == len(rs) - len(left_out)
    if left_out:
        assert fit.rel_rms < 1e-9
        assert fit(slot_op[144]) == pytest.approx(0.1 + op_work(slot_op[144]) / 1e7, rel=1e-9)
    assert fit_group(points).spikes == ()  # no tolerance given: a plain least-squares line


def test_spikes_are_left_out_and_missing_groups_refined(tmp_path: Path) -> None:
    """Every 4th of 9 resolutions measured; the ops at 160 px (80 px feature maps) run 2.5x
    slower. Their groups' three points cannot show which is the spike, so an op in the middle of
    each gap is measured, the spike left out, and the rest fitted exactly."""
    space = get_space().restrict(
        kernel_choices=(3,), expand_choices=(3,), depth_choices=(2,),
        resolutions=tuple(range(128, 193, 8)),
    )  # fmt: skip
    settings = {"spike_hw": [80], "spike": 2.5}
    result = profile_device(
        linear_device(**settings), space, out_path=tmp_path / "t.json", settings=QUICK,
        fit_resolutions="every:4", probe=ProbeSettings(enabled=False),
    )  # fmt: skip
    table = LatencyTable.load(result.path)
    fit = table.provenance["profiling"]["fit"]
    fitted = fitted_keys(table)
    spiked = [key for key in table if OpSpec.parse(key).in_hw == 80]
    assert spiked and not fitted & set(spiked)
    assert fit["groups_rejected"] == 0 and fit["refined_ops"] > 0
    assert fit["spikes_left_out"] == fit["groups_with_spikes"] == len(spiked)
    spiked_groups = {op_group(OpSpec.parse(key)) for key in spiked}
    assert {op_group(OpSpec.parse(key)) for key in fitted} >= spiked_groups
    backend = LinearTestBackend(**settings)
    for key in table:
        truth = backend.prepare(*build_op_module(OpSpec.parse(key)))
        assert table[key].mean_ms == pytest.approx(truth, rel=1e-6), key
    assert result.n_measured + result.n_fitted == len(table)
    anchors = plan_profile(space, space.resolutions, (128, 160, 192)).to_measure
    assert result.n_measured == len(anchors) + fit["refined_ops"]


def test_a_run_killed_while_refining_resumes_with_fitted_entries_still_fitted(
    tmp_path: Path,
) -> None:
    """The table is saved while the refinement ops are measured; the entries fitted just before
    must already be listed as fitted there, or a resumed run reads them as measured points."""
    space = get_space().restrict(
        kernel_choices=(3,), expand_choices=(3,), depth_choices=(2,),
        resolutions=tuple(range(128, 193, 8)),
    )  # fmt: skip
    anchors = plan_profile(space, space.resolutions, (128, 160, 192)).to_measure
    out = tmp_path / "t.json"
    LinearTestBackend.calls = 0
    spiky = {"spike_hw": [80], "spike": 2.5}
    with pytest.raises(BackendError, match="synthetic conversion failure"):
        profile_device(
            linear_device(**spiky, fail_at=len(anchors) + 2), space, out_path=out,
            settings=QUICK, fit_resolutions="every:4", probe=ProbeSettings(enabled=False),
        )  # fmt: skip
    killed = LatencyTable.load(out)
    assert fitted_keys(killed) and len(killed) > len(anchors) + 1  # killed while refining
    assert all(killed[key].count > 0 for key in measured_keys(killed))
    result = profile_device(
        linear_device(**spiky), space, out_path=out, settings=QUICK, fit_resolutions="every:4",
        probe=ProbeSettings(enabled=False),
    )  # fmt: skip
    table = LatencyTable.load(result.path)
    assert all(table[key].count > 0 for key in measured_keys(table))
    assert table.provenance["profiling"]["fit"]["groups_rejected"] == 0


def test_calibration_recovers_the_end_to_end_scale(tmp_path: Path) -> None:
    space = tiny_space((24, 32))
    device = linear_device(e2e_scale=1.06, macs=False)
    result = profile_device(
        device, space, out_path=tmp_path / "t.json", settings=QUICK, calibrate=6
    )
    assert result.calibration["scale"] == pytest.approx(1.06, rel=1e-6)
    assert result.calibration["overhead_ms"] == pytest.approx(0.0, abs=1e-6)
    table = LatencyTable.load(result.path)
    model = latency_model(table, space)
    arch = space.sample(123)
    plain = latency_model(table, space, calibrated=False)
    assert model.predict(arch) == pytest.approx(1.06 * plain.predict(arch), rel=1e-6)
    again = profile_device(device, space, out_path=result.path, settings=QUICK, calibrate=6)
    assert again.n_calibration_measured == 0 and again.n_measured == 0
    ratio = profile_device(
        device, space, out_path=result.path, settings=QUICK, calibrate=8,
        calibration_method="ratio",
    )  # fmt: skip
    assert ratio.n_calibration_measured == 2
    assert ratio.calibration == pytest.approx(
        {"scale": 1.06, "overhead_ms": 0.0, "n": 8, "method": "ratio"}
    )
    with pytest.raises(ConfigError, match="calibration method"):
        profile_device(device, space, out_path=result.path, calibrate=8, calibration_method="x")


# -- CLI ---------------------------------------------------------------------------------------------
def test_cli_profile_json(null_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(tiny_space().to_dict()))
    out = tmp_path / "t.json"
    args = ["profile", "--device", str(null_yaml), "--space", str(space_file)]
    args += ["--resolutions", "24,32", "--out", str(out), "--json"]
    args += ["--warmup", "0", "--repeats", "1", "--max-rounds", "1"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["path"] == str(out) and data["n_measured"] == data["n_entries"] > 0
    assert data["n_fitted"] == 0 and data["n_skipped"] == 0 and data["wall_s"] > 0
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["n_skipped"] == data["n_entries"]


def test_cli_profile_unknown_resolution(null_yaml: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(
            ["profile", "--device", str(null_yaml), "--space", "small32_w0.5"]
            + ["--resolutions", "30"]
        )
        == 1
    )
    assert "not in space" in capsys.readouterr().err


def test_cli_profile_pixel_without_phone(capsys: pytest.CaptureFixture) -> None:
    if importlib.util.find_spec("ofabench.devices.adb_backend") is None:
        pytest.skip("the adb backend (ofabench/devices/adb_backend.py) is not written yet")
    from ofabench.devices.profiles import list_profiles

    if "pixel" not in list_profiles():
        pytest.skip("devices/pixel.yaml is not written yet")
    from ofabench.devices.profiles import load_profile

    if load_profile("pixel").availability():
        pytest.skip("a phone is connected")
    assert main(["profile", "--device", "pixel"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "adb" in err[0]


# -- a real backend ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("backend", "settings"),
    [("onnxruntime", {"intra_op_threads": 1}), ("litert", {"threads": 1})],
)
def test_real_backend_profiles_a_tiny_space(
    backend: str, settings: dict[str, Any], tmp_path: Path
) -> None:
    device = DeviceProfile(name=f"cpu-{backend}", backend=backend, settings=settings)
    status = device.availability()
    if not status:
        pytest.skip(f"backend {backend!r} is not available here: {status.reason}")
    space = get_space("small32_w0.5").restrict(
        kernel_choices=(3,), expand_choices=(3,), depth_choices=(2,), resolutions=(24,)
    )
    quick = MeasureSettings(warmup=1, repeats=3, max_rounds=1)
    result = profile_device(device, space, out_path=tmp_path / "t.json", settings=quick)
    table = LatencyTable.load(result.path)
    assert len(table) == result.n_measured == len(ops_at(space, [24]))
    assert {OpSpec.parse(k).kind for k in table} == set(OFA_OP_NAMES)
    assert all(np.isfinite(e.mean_ms) and e.mean_ms > 0 for e in table.entries.values())
    assert table.provenance["profiling"]["backend_info"]["backend"] == backend
    assert latency_model(table, space).predict(space.sample(0)) > 0

"""OFA-ResNet50 latency tables: every op a subnet runs has a key (with its input width, which the
previous stage's elastic width sets), each key's module has the key's shapes, a table profiled on
ONNX Runtime predicts a subnet as the sum of its ops, and the costs are refused as additive."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from ofabench.devices.base import MeasureSettings
from ofabench.devices.profiles import DeviceProfile
from ofabench.errors import LatencyTableError
from ofabench.latency.model import LatencyModel
from ofabench.latency.ops import build_op_module
from ofabench.latency.profiler import profile_device
from ofabench.latency.table import LatencyEntry, LatencyTable, OpSpec, arch_ops, resolution_ops
from ofabench.space import ArchBatch, get_space

SMALL = "resnet_small32_w0.25"
pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_op_of_every_subnet_has_a_key_that_round_trips() -> None:
    space = get_space(SMALL)
    keys = {op.key for r in space.resolutions for op in resolution_ops(space, r).all_ops()}
    for seed in range(200):
        for op in arch_ops(space, space.sample(seed)):
            assert op.key in keys
            assert OpSpec.parse(op.key, "resnet") == op
    kinds = {OpSpec.parse(k, "resnet").kind for k in keys}
    assert kinds == {"stem", "maxpool", "bottleneck", "pool", "classifier"}


def test_a_blocks_key_holds_the_previous_stages_width() -> None:
    space = get_space(SMALL)
    arch = space.max_arch()
    narrow = dataclasses.replace(arch, extra=(*arch.extra[:3], 0, *arch.extra[4:]))  # w_stage1
    first_of_stage2 = [
        [op for op in arch_ops(space, a) if op.kind == "bottleneck" and op.stride == 2][0]
        for a in (arch, narrow)
    ]
    assert first_of_stage2[0].out_c == first_of_stage2[1].out_c
    assert first_of_stage2[0].in_c > first_of_stage2[1].in_c
    assert first_of_stage2[0].key != first_of_stage2[1].key


def test_every_op_module_has_the_shapes_of_its_key() -> None:
    space = get_space(SMALL)
    for op in resolution_ops(space, 24).all_ops():
        module, shape = build_op_module(op)
        with torch.no_grad():
            out = module(torch.randn(shape))
        want = (1, op.out_c) if op.kind == "classifier" else (1, op.out_c, op.out_hw, op.out_hw)
        assert tuple(out.shape) == want, op.key
        if op.kind == "stem" and (op.in_c, op.in_hw) == (op.out_c, op.out_hw):
            x = torch.randn(shape)  # the stem's residual conv adds its input
            with torch.no_grad():
                torch.testing.assert_close(module(x) - module.layer(x), x)


def _fake_table(space, seed: int = 0) -> LatencyTable:
    table = LatencyTable.for_space(space, device="fake", backend="null")
    rng = np.random.default_rng(seed)
    for r in space.resolutions:
        for op in resolution_ops(space, r).all_ops():
            table.add(op, LatencyEntry(float(rng.uniform(0.01, 1.0))), resolution=r)
    return table


def test_prediction_is_the_sum_of_the_subnets_ops() -> None:
    space = get_space(SMALL)
    table = _fake_table(space)
    model = LatencyModel(table, space, overhead_ms=0.5, scale=2.0)
    assert model.resolutions == space.resolutions
    archs = [space.sample(seed) for seed in range(300)]
    sums = [sum(table.get(op, resolution=a.r).mean_ms for op in arch_ops(space, a)) for a in archs]
    expected = 2.0 * np.array(sums) + 0.5
    np.testing.assert_allclose([model.predict(a) for a in archs], expected, rtol=1e-12)
    np.testing.assert_allclose(model.predict_batch(archs), expected, rtol=1e-12)
    batch = ArchBatch.from_archs(archs)
    np.testing.assert_allclose(model.predict_batch(batch), expected, rtol=1e-12)
    assert model._exact(batch) is not None  # the gathered tables, not the arch-by-arch loop
    with pytest.raises(LatencyTableError, match="not additive"):
        model.additive_cost()


def test_a_table_lacking_a_block_of_one_width_covers_no_resolution() -> None:
    space = get_space(SMALL).restrict(resolutions=(24,))
    full = _fake_table(space)
    table = LatencyTable.for_space(space, device="fake", backend="null")
    dropped = next(op for op in resolution_ops(space, 24).all_ops() if op.kind == "bottleneck")
    for key, entry in full.entries.items():
        if key != dropped.key:
            table.add(key, entry)
    with pytest.raises(LatencyTableError, match=f"no entry for {dropped.key}"):
        LatencyModel(table, space)


def test_onnxruntime_profiles_the_small_space(tmp_path: Path) -> None:
    device = DeviceProfile(
        name="cpu-onnxruntime", backend="onnxruntime", settings={"intra_op_threads": 1}
    )
    status = device.availability()
    if not status:
        pytest.skip(f"onnxruntime is not available here: {status.reason}")
    space = get_space(SMALL).restrict(expand_choices=(25,), resolutions=(24,))
    quick = MeasureSettings(warmup=1, repeats=3, max_rounds=1)
    result = profile_device(device, space, out_path=tmp_path / "t.json", settings=quick)
    table = LatencyTable.load(result.path)
    assert table.family == "resnet"
    assert len(table) == result.n_measured == len(resolution_ops(space, 24).all_ops())
    assert all(np.isfinite(e.mean_ms) and e.mean_ms > 0 for e in table.entries.values())
    model = LatencyModel(table, space)
    arch = space.sample(3)
    ops = arch_ops(space, arch)
    assert model.predict(arch) == pytest.approx(sum(table[op].mean_ms for op in ops), rel=1e-12)
    assert model.predict(space.min_arch()) < model.predict(space.max_arch())

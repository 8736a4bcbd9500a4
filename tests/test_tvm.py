"""The TVM backend: outputs equal PyTorch's, measurements are sane, settings are checked, RPC fails
clearly, and (slow) MetaSchedule tuning writes a database that a second compile reuses."""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tvm", reason="apache-tvm is not installed (pip install 'ofabench[tvm]')")

from ofabench.devices.base import MeasureSettings  # noqa: E402
from ofabench.devices.registry import get_backend  # noqa: E402
from ofabench.devices.tvm_backend import TVMBackend, parse_target  # noqa: E402
from ofabench.errors import BackendError, ConfigError  # noqa: E402
from ofabench.space import LayerGeom, get_space  # noqa: E402
from ofabench.supernet.ofa_mbv3 import OFAMobileNetV3  # noqa: E402
from ofabench.supernet.static import MBConv  # noqa: E402

from .conftest import randomize_bn_and_transforms  # noqa: E402

SE_BLOCK = LayerGeom(
    "mbconv", 8, 16, 16, mid=48, kernel=5, se=True, act="h_swish", residual=True
)  # fmt: skip
TINY_BLOCK = LayerGeom("mbconv", 8, 8, 8, mid=16, kernel=3, residual=True)
QUICK = MeasureSettings(warmup=2, repeats=5, max_rounds=2, tolerance=0.5)


def block(geom: LayerGeom) -> MBConv:
    model = MBConv(geom).eval()
    randomize_bn_and_transforms(model)
    return model


def shape_of(geom: LayerGeom) -> tuple[int, int, int, int]:
    return (1, geom.in_c, geom.hw, geom.hw)


def assert_matches_torch(backend: TVMBackend, model: torch.nn.Module, shape: tuple) -> None:
    runnable = backend.compile(model, shape)
    try:
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        got = runnable(x)
    finally:
        backend.close(runnable)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()))


@pytest.fixture(scope="module")
def backend() -> TVMBackend:
    instance = TVMBackend(threads=1)
    status = instance.is_available()
    if not status:
        pytest.skip(f"tvm is not available: {status.reason}")
    return instance


# -- numerics ---------------------------------------------------------------------------------------
def test_block_output_equals_pytorch(backend: TVMBackend) -> None:
    assert_matches_torch(backend, block(SE_BLOCK), shape_of(SE_BLOCK))


def test_whole_network_output_equals_pytorch(backend: TVMBackend) -> None:
    space = get_space("small32_w0.5")
    supernet = OFAMobileNetV3(space)
    randomize_bn_and_transforms(supernet)
    supernet.set_active_subnet(space.min_arch())
    net = supernet.get_active_subnet().eval()
    assert_matches_torch(backend, net, (1, space.in_channels, 24, 24))


@pytest.mark.slow
def test_torch_frontend_output_equals_pytorch() -> None:
    assert_matches_torch(TVMBackend(frontend="torch"), block(TINY_BLOCK), shape_of(TINY_BLOCK))


# -- measuring ---------------------------------------------------------------------------------------
def test_measure_gives_positive_finite_medians(backend: TVMBackend) -> None:
    measurement = backend.measure(block(TINY_BLOCK), shape_of(TINY_BLOCK), QUICK)
    assert math.isfinite(measurement.median_ms) and measurement.median_ms > 0
    assert measurement.iqr_ms >= 0 and 1 <= measurement.n <= 10  # outliers may go
    info = measurement.info
    assert info["tuned"] is False and info["tune_trials"] == 0 and info["threads"] == 1
    assert '"kind":"llvm"' in info["target"] and info["tvm"] and info["device"]


def test_run_many_times_each_call(backend: TVMBackend) -> None:
    runnable = backend.compile(block(TINY_BLOCK), shape_of(TINY_BLOCK))
    try:
        samples = backend.run_many(runnable, 4)
    finally:
        backend.close(runnable)
    assert len(samples) == 4 and all(0 < s < 1 for s in samples)
    assert runnable.workdir is not None and not Path(runnable.workdir).exists()


def test_prepare_many_compiles_once_and_loads_separate_machines(
    backend: TVMBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ofabench noise`` needs several sessions of one subnet: TVM compiles it once (a
    compile takes minutes for an ImageNet subnet) and loads that on as many virtual machines,
    each computing what PyTorch does and each closed on its own."""
    builds: list[int] = []
    real_build = TVMBackend._build
    monkeypatch.setattr(
        TVMBackend, "_build", lambda self, mod: builds.append(1) or real_build(self, mod)
    )
    model, shape = block(TINY_BLOCK), shape_of(TINY_BLOCK)
    sessions = backend.prepare_many(model, shape, 3)
    try:
        assert len(builds) == 1 and len(sessions) == 3
        assert len({id(s.vm) for s in sessions}) == 3
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        for session in sessions:
            np.testing.assert_allclose(session(x), want, rtol=1e-4, atol=1e-5)
    finally:
        for session in sessions:
            backend.close(session)
    assert all(not Path(s.workdir).exists() for s in sessions)


# -- settings ------------------------------------------------------------------------------------------
def test_target_forms() -> None:
    assert parse_target("llvm") == {"kind": "llvm", "num-cores": 1}
    assert parse_target('{"kind": "llvm", "mcpu": "znver3"}', threads=2) == {
        "kind": "llvm", "mcpu": "znver3", "num-cores": 2,
    }  # fmt: skip
    assert parse_target("llvm -mcpu=znver3 -mattr=+avx2,+fma") == {
        "kind": "llvm", "mcpu": "znver3", "mattr": ["+avx2", "+fma"], "num-cores": 1,
    }  # fmt: skip
    assert parse_target(None)["kind"] == "llvm"
    with pytest.raises(ConfigError, match="kind"):
        parse_target({"mcpu": "znver3"})


def test_bad_target_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot make target"):
        _ = TVMBackend(target={"kind": "no-such-kind"}).target


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"frontend": "tflite"}, "frontend"),
        ({"threads": 0}, "threads"),
        ({"tune_trials": -1}, "tune_trials"),
        ({"rpc": "localhost:9190"}, "rpc"),
        ({"rpc": {"tracker_host": "h", "tracker_port": 9190}}, "missing"),
        ({"rpc": {"tracker_host": "h", "tracker_port": 0, "key": "pixel"}}, "tracker_port"),
        ({"rpc": {"tracker_host": "h", "tracker_port": 9190, "key": "p", "x": 1}}, "unknown"),
        ({"opt_level": 3}, "opt_level"),
    ],
)
def test_bad_settings_are_refused(settings: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        get_backend("tvm", **settings)


def test_unreachable_rpc_tracker_fails_fast(backend: TVMBackend) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    remote = TVMBackend(
        rpc={
            "tracker_host": "127.0.0.1",
            "tracker_port": port,
            "key": "pixel",
            "connect_timeout_s": 2,
        }
    )
    start = time.monotonic()
    with pytest.raises(BackendError, match=f"RPC tracker 127.0.0.1:{port} is not reachable"):
        remote.compile(block(TINY_BLOCK), shape_of(TINY_BLOCK))
    assert time.monotonic() - start < 30  # compile ~ seconds; no 60 s tvm.rpc retry loop
    assert remote.info()["device"] == "rpc:pixel"


# -- tuning --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tuning_writes_a_database_that_is_reused(tmp_path: Path) -> None:
    pytest.importorskip("xgboost", reason="MetaSchedule's cost model needs xgboost")
    tuned = TVMBackend(tune_trials=4, tuning_dir=str(tmp_path))
    # one fused task (conv + BN + ReLU, OFA's "Conv" op) keeps MetaSchedule to one build batch
    model = torch.nn.Sequential(
        torch.nn.Conv2d(8, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16), torch.nn.ReLU()
    ).eval()
    randomize_bn_and_transforms(model)
    shape = (1, 8, 8, 8)
    first = tuned.compile(model, shape)
    try:
        assert first.tuning.tasks > 0 and first.tuning.tuned == first.tuning.tasks
        records = Path(first.tuning.database) / "database_tuning_record.json"
        assert records.stat().st_size > 0
        x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            np.testing.assert_allclose(first(x), model(torch.from_numpy(x)).numpy(), atol=1e-5)
    finally:
        tuned.close(first)
    second = tuned.compile(model, shape)
    tuned.close(second)
    assert second.tuning.tuned == 0 and second.tuning.reused == first.tuning.tasks
    assert tuned.info()["tuned"] is True and tuned.info()["tune_trials"] == 4

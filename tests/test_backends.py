"""Backends: the contract for every built-in backend, the base class's measurement protocol (on the
null backend), the registry, and the torch and onnxruntime backends' own behaviour."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ofabench.devices import registry
from ofabench.devices.base import Availability, Backend, MeasureSettings, drop_outliers
from ofabench.devices.null import NullBackend
from ofabench.devices.registry import (
    get_backend,
    get_backend_class,
    list_backends,
    register_backend,
)
from ofabench.errors import BackendError, ConfigError
from ofabench.testing import TINY_BLOCKS, BackendContract, block_input_shape, tiny_block

# -- the contract, once per built-in backend ------------------------------------------------------
# A phone is never connected here; its command building and parsing have their own tests. The
# ssh backend's contract runs against a real sshd in test_remote_devices.py.
NOT_HERE = {"adb", "ssh"}
CONTRACT_SETTINGS: dict[str, dict[str, Any]] = {"torch": {"threads": 1}}


def _contract_class(name: str) -> type[BackendContract]:
    ident = re.sub(r"\W", "_", name)
    attrs = {"backend_name": name, "settings": CONTRACT_SETTINGS.get(name, {})}
    return type(f"TestContract_{ident}", (BackendContract,), attrs)


for _name in sorted(set(registry.BUILTIN_BACKENDS) - NOT_HERE):
    _cls = _contract_class(_name)
    globals()[_cls.__name__] = _cls
del _name, _cls


def test_every_builtin_backend_has_a_contract_class() -> None:
    names = {cls.backend_name for cls in globals().values() if _is_contract(cls)}
    assert names == set(list_backends()) - NOT_HERE - _third_party_names()


def _is_contract(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BackendContract) and obj is not BackendContract


def _third_party_names() -> set[str]:
    return set(list_backends()) - set(registry.BUILTIN_BACKENDS)


# -- helpers ----------------------------------------------------------------------------------------
@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a test registers is forgotten afterwards."""
    monkeypatch.setattr(registry.BACKENDS, "_registered", dict(registry.BACKENDS._registered))


class ScriptedBackend(NullBackend):
    """Returns scripted latencies (ms), one per run, cycling through the script."""

    name = "scripted-test"

    def __init__(self, script_ms: list[float]) -> None:
        super().__init__()
        self.script_ms = script_ms
        self.calls = 0

    def run_once(self, prepared: Any) -> float:
        value = self.script_ms[self.calls % len(self.script_ms)]
        self.calls += 1
        return value / 1e3


class MissingLibraryBackend(Backend):
    name = "missing-library-test"
    extra = "fancy"

    @classmethod
    def availability(cls) -> Availability:
        return Availability(False, "fancylib is not installed", missing_library=True)

    def prepare(self, model: Any, input_shape: tuple[int, ...]) -> Any:
        raise AssertionError("never reached")


class EntryPointBackend(NullBackend):
    """A stand-in for a third party's backend, found through an entry point."""

    name = "entry-point-test"


NULL_BLOCK = torch.nn.Linear(4, 4)


# -- the base class's protocol ----------------------------------------------------------------------
def test_outlier_removal_drops_a_100x_transient() -> None:
    script = [1.0] * 19 + [100.0]
    backend = ScriptedBackend(script)
    m = backend.measure(NULL_BLOCK, (1, 4), MeasureSettings(warmup=0, repeats=20, max_rounds=1))
    assert m.n == 19
    assert m.mean_ms == pytest.approx(1.0)
    assert m.std_ms == pytest.approx(0.0, abs=1e-9)


def test_drop_outliers_keeps_fast_samples() -> None:
    samples = np.array([0.01, 1.0, 1.0, 1.0, 1.1, 0.9, 100.0])
    kept = drop_outliers(samples, 3.0)
    assert 0.01 in kept and 100.0 not in kept


def test_stability_rounds_stop_when_two_agree() -> None:
    # round 1 is slowed by a transient (2 ms); rounds 2 and 3 agree at 1 ms
    backend = ScriptedBackend([2.0] * 5 + [1.0] * 5 + [1.01] * 5 + [5.0] * 5)
    m = backend.measure(NULL_BLOCK, (1, 4), MeasureSettings(warmup=0, repeats=5, max_rounds=4))
    assert m.rounds == 3 and m.stable
    assert m.median_ms == pytest.approx(1.0)


def test_steady_backend_needs_two_rounds() -> None:
    m = NullBackend(latency_ms=1.0).measure(
        NULL_BLOCK, (1, 4), MeasureSettings(warmup=1, repeats=5, max_rounds=4)
    )
    assert m.rounds == 2 and m.stable and m.median_ms == pytest.approx(1.0)


def test_huge_jitter_reports_unstable_after_max_rounds() -> None:
    backend = NullBackend(latency_ms=1.0, jitter=5.0, seed=3)
    settings = MeasureSettings(warmup=0, repeats=3, max_rounds=3, tolerance=0.01)
    m = backend.measure(NULL_BLOCK, (1, 4), settings)
    assert m.rounds == 3 and not m.stable


def test_measurement_carries_provenance() -> None:
    m = NullBackend(latency_ms=0.5).measure(NULL_BLOCK, (1, 4), MeasureSettings(1, 3, 1))
    assert m.backend == "null" and m.info["backend"] == "null" and m.info["latency_ms"] == 0.5


# -- the registry -----------------------------------------------------------------------------------
def test_registry_refuses_a_duplicate_name(clean_registry: None) -> None:
    get_backend_class("null")

    class AnotherNull(NullBackend):
        name = "null"

    with pytest.raises(BackendError, match="'null' is taken"):
        register_backend(AnotherNull)
    assert register_backend(NullBackend) is NullBackend  # the same class again is fine


def test_unknown_backend_lists_valid_names() -> None:
    with pytest.raises(BackendError) as info:
        get_backend("no-such-backend")
    for name in ("null", "torch", "onnxruntime", "litert", "tvm", "adb"):
        assert name in str(info.value)


def test_entry_point_backend_is_discovered(
    monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> None:
    entry = importlib.metadata.EntryPoint(
        name="entry-point-test",
        value=f"{__name__}:EntryPointBackend",
        group=registry.ENTRY_POINT_GROUP,
    )

    def fake_entry_points(**params: Any) -> list[importlib.metadata.EntryPoint]:
        return [entry] if params.get("group") == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    assert "entry-point-test" in list_backends()
    backend = get_backend("entry-point-test", latency_ms=2.0)
    assert type(backend).__name__ == "EntryPointBackend"
    m = backend.measure(NULL_BLOCK, (1, 4), MeasureSettings(0, 3, 1))
    assert m.backend == "entry-point-test" and m.median_ms == pytest.approx(2.0)


def test_entry_point_that_is_not_a_backend_is_refused(
    monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> None:
    entry = importlib.metadata.EntryPoint(
        name="not-a-backend", value="pathlib:Path", group=registry.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [entry])
    with pytest.raises(BackendError, match="not an ofabench Backend"):
        get_backend("not-a-backend")


def test_missing_library_error_names_the_extra() -> None:
    backend = MissingLibraryBackend()
    assert backend.is_available().reason == "fancylib is not installed"
    with pytest.raises(BackendError, match=r"fancylib is not installed.*ofabench\[fancy\]"):
        backend.measure(NULL_BLOCK, (1, 4))


def test_onnxruntime_missing_names_the_onnx_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    cls = get_backend_class("onnxruntime")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    status = cls.is_available()
    assert not status and "onnxruntime" in status.reason
    with pytest.raises(BackendError, match=r"ofabench\[onnx\]"):
        cls().measure(NULL_BLOCK, (1, 4))


# -- torch ------------------------------------------------------------------------------------------
SMALL_GEOM = TINY_BLOCKS["se_hswish_k3_s1"]
QUICK = MeasureSettings(warmup=1, repeats=3, max_rounds=1)


def test_torch_cuda_unavailable_says_why() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    backend = get_backend("torch", device="cuda")
    assert get_backend_class("torch").is_available()  # the library is fine...
    status = backend.is_available()  # ...the device is not
    assert not status and "CUDA is not available" in status.reason
    with pytest.raises(BackendError, match="CUDA is not available"):
        backend.measure(tiny_block(SMALL_GEOM), block_input_shape(SMALL_GEOM), QUICK)


@pytest.mark.parametrize(
    "settings",
    [
        {"device": "gpu"},
        {"device": "cuda:x"},
        {"threads": 0},
        {"threads": "2"},
        {"channels_last": 1},
    ],
)
def test_torch_rejects_bad_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(settings))):
        get_backend("torch", **settings)


def test_torch_threads_apply_while_measuring_and_are_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = get_backend("torch", threads=1)
    previous = torch.get_num_threads()
    seen: list[int] = []
    run_once = type(backend).run_once
    monkeypatch.setattr(
        type(backend),
        "run_once",
        lambda self, p: seen.append(torch.get_num_threads()) or run_once(self, p),
    )
    m = backend.measure(tiny_block(SMALL_GEOM), block_input_shape(SMALL_GEOM), QUICK)
    assert set(seen) == {1} and m.info["threads"] == 1
    assert torch.get_num_threads() == previous


def test_torch_channels_last_and_info() -> None:
    m = get_backend("torch", threads=1, channels_last=True).measure(
        tiny_block(SMALL_GEOM), block_input_shape(SMALL_GEOM), QUICK
    )
    assert m.info["channels_last"] is True
    assert m.info["torch"] == torch.__version__ and m.info["device"] == "cpu"
    assert m.info["device_name"]


def test_torch_refuses_a_non_module() -> None:
    with pytest.raises(BackendError, match="nn.Module"):
        get_backend("torch").measure("model.onnx", (1, 3, 8, 8), QUICK)


# -- onnxruntime ------------------------------------------------------------------------------------
def _ort_backend(**settings: Any) -> Backend:
    cls = get_backend_class("onnxruntime")
    if not cls.is_available():
        pytest.skip(f"onnxruntime is not available: {cls.is_available().reason}")
    return cls(**settings)


def test_onnxruntime_unknown_provider_lists_available() -> None:
    backend = _ort_backend(providers=["NoSuchExecutionProvider"])
    with pytest.raises(BackendError, match=r"NoSuchExecutionProvider.*CPUExecutionProvider"):
        backend.measure(tiny_block(SMALL_GEOM), block_input_shape(SMALL_GEOM), QUICK)


@pytest.mark.parametrize(
    "settings",
    [
        {"graph_optimization_level": "max"},
        {"intra_op_threads": -1},
        {"inter_op_threads": 1.5},
        {"providers": []},
        {"providers": [1]},
    ],
)
def test_onnxruntime_rejects_bad_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(settings))):
        _ort_backend(**settings)


def test_onnxruntime_removes_its_temporary_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import ofabench.devices.onnxruntime_backend as ort_backend

    backend = _ort_backend()
    made: list[Path] = []
    prepare = ort_backend.OnnxRuntimeBackend.prepare

    def spy(self: Any, model: Any, shape: tuple[int, ...]) -> Any:
        prepared = prepare(self, model, shape)
        made.append(prepared.tmp_dir)
        return prepared

    monkeypatch.setattr(ort_backend.OnnxRuntimeBackend, "prepare", spy)
    m = backend.measure(tiny_block(SMALL_GEOM), block_input_shape(SMALL_GEOM), QUICK)
    assert made and made[0] is not None and not made[0].exists()
    assert m.info["providers"] == ["CPUExecutionProvider"]
    assert m.info["intra_op_threads"] == 1 and m.info["onnxruntime"]


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_onnxruntime_measures_an_existing_onnx_file(tmp_path: Path, level: str) -> None:
    from ofabench.export import export_onnx

    backend = _ort_backend(graph_optimization_level=level)
    path = tmp_path / "block.onnx"
    shape = block_input_shape(SMALL_GEOM)
    export_onnx(tiny_block(SMALL_GEOM), shape, path, check=False)
    m = backend.measure(path, shape, QUICK)
    assert m.median_ms > 0 and m.info["graph_optimization_level"] == level
    assert path.exists()  # a file it did not make is left alone
    with pytest.raises(BackendError, match="input_shape"):
        backend.measure(path, (1, 3, 8, 8), QUICK)
    with pytest.raises(BackendError, match="does not exist"):
        backend.measure(tmp_path / "missing.onnx", shape, QUICK)


def test_unavailable_for_another_reason_gets_no_pip_hint() -> None:
    class NoPhone(NullBackend):
        name = "test-no-phone"
        extra = "tflite"

        @classmethod
        def availability(cls) -> Availability:
            return Availability(False, "no adb device is connected")

    with pytest.raises(BackendError) as info:
        NoPhone().measure(torch.nn.Identity(), (1, 1))
    assert str(info.value).endswith("no adb device is connected")

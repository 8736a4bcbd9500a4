"""The backend contract: tests every ofabench backend passes, ours or a third party's.

Subclass :class:`BackendContract` in your own test suite (pytest collects classes named
``Test*``)::

    from ofabench.testing import BackendContract

    class TestMyBackend(BackendContract):
        backend_name = "my-backend"        # as registered (entry point or register_backend)
        settings = {"threads": 1}          # device-profile settings for the tests

When the backend cannot run here (``is_available()`` is false, or its module cannot be imported)
the measuring tests skip with the reason. The models are tiny: the whole contract takes seconds.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
import torch

from .devices.base import Availability, Backend, Measurement, MeasureSettings
from .devices.registry import get_backend, get_backend_class, list_backends
from .errors import BackendError, ConfigError
from .space import LayerGeom, get_space
from .supernet.static import MBConv, MobileNetV3

# Two small blocks covering the OFA op vocabulary: SE + h-swish + residual; stride 2 + ReLU.
TINY_BLOCKS = {
    "se_hswish_k3_s1": LayerGeom(
        "mbconv", 8, 16, 16, mid=48, kernel=3, se=True, act="h_swish", residual=True
    ),
    "relu_k5_s2": LayerGeom("mbconv", 8, 16, 24, mid=64, kernel=5, stride=2),
}
# ~140x the multiply-adds of the first tiny block, and ~3x its parameters.
BIG_BLOCK = LayerGeom(
    "mbconv", 32, 32, 32, mid=192, kernel=5, se=True, act="h_swish", residual=True
)


def block_input_shape(geom: LayerGeom) -> tuple[int, int, int, int]:
    return (1, geom.in_c, geom.hw, geom.hw)


def tiny_block(geom: LayerGeom, seed: int = 0) -> MBConv:
    """A static MBConv block in eval mode with seeded weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MBConv(geom).eval()


def tiny_network(seed: int = 0) -> tuple[MobileNetV3, tuple[int, int, int, int]]:
    """The smallest subnet of the ``small32_w0.5`` space at 24 px, and its input shape."""
    space = get_space("small32_w0.5")
    arch = space.min_arch()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = MobileNetV3(space.layers(arch)).eval()
    return net, (1, space.in_channels, arch.r, arch.r)


def check_measurement(measurement: Measurement, backend_name: str) -> None:
    """What every measurement must satisfy, whatever the backend."""
    assert isinstance(measurement, Measurement)
    assert measurement.n > 0
    assert math.isfinite(measurement.median_ms) and measurement.median_ms > 0
    assert math.isfinite(measurement.mean_ms) and measurement.mean_ms >= 0
    assert measurement.iqr_ms >= 0 and measurement.std_ms >= 0
    assert measurement.rounds >= 1
    assert measurement.backend == backend_name
    assert isinstance(measurement.info, Mapping)
    json.dumps(measurement.to_dict())  # tables store it: it must be JSON


class BackendContract:
    """Tests a backend must pass. Set ``backend_name`` (and ``settings``) in a subclass."""

    backend_name: ClassVar[str] = ""
    settings: ClassVar[Mapping[str, Any]] = {}
    #: settings for single measurements; ``compare_settings`` for the slower-than test
    measure_settings: ClassVar[MeasureSettings] = MeasureSettings(warmup=2, repeats=5, max_rounds=1)
    compare_settings: ClassVar[MeasureSettings] = MeasureSettings(
        warmup=2, repeats=7, max_rounds=3, tolerance=0.1
    )
    #: a model with ~140x the work must measure at least this many times slower
    slower_factor: ClassVar[float] = 2.0
    #: a quick measurement (1 warm-up, 3 runs, 1 round) of a tiny block, conversion included
    quick_seconds: ClassVar[float] = 10.0

    # -- fixtures ----------------------------------------------------------------------------------
    @pytest.fixture
    def backend_class(self) -> type[Backend]:
        """The registered class; skips when its module or library cannot be imported."""
        assert self.backend_name, f"{type(self).__name__} must set backend_name"
        try:
            return get_backend_class(self.backend_name)
        except ImportError as exc:
            pytest.skip(f"backend {self.backend_name!r} cannot be imported: {exc}")

    @pytest.fixture
    def backend(self, backend_class: type[Backend]) -> Backend:
        """A configured instance; skips with the reason when it cannot run here."""
        instance = backend_class(**self.settings)
        status = instance.is_available()
        if not status:
            pytest.skip(f"backend {self.backend_name!r} is not available here: {status.reason}")
        return instance

    # -- registry and availability ---------------------------------------------------------------
    def test_name_is_registered(self, backend_class: type[Backend]) -> None:
        assert self.backend_name in list_backends()
        assert issubclass(backend_class, Backend)
        assert backend_class.name == self.backend_name
        instance = get_backend(self.backend_name, **self.settings)
        assert isinstance(instance, backend_class)

    def test_availability_has_reason_when_false(self, backend_class: type[Backend]) -> None:
        for status in (backend_class.is_available(), backend_class(**self.settings).is_available()):
            assert isinstance(status, Availability)
            if not status:
                assert isinstance(status.reason, str) and status.reason.strip()

    def test_unavailable_backend_refuses_to_measure(self, backend_class: type[Backend]) -> None:
        instance = backend_class(**self.settings)
        status = instance.is_available()
        if status:
            pytest.skip("the backend is available here")
        geom = TINY_BLOCKS["se_hswish_k3_s1"]
        with pytest.raises(BackendError, match="not available"):
            instance.measure(tiny_block(geom), block_input_shape(geom), self.measure_settings)

    def test_unknown_setting_is_rejected(self, backend_class: type[Backend]) -> None:
        with pytest.raises(ConfigError, match="no_such_setting"):
            backend_class(**self.settings, no_such_setting=1)

    # -- measuring -----------------------------------------------------------------------------------
    @pytest.mark.parametrize("block_name", sorted(TINY_BLOCKS))
    def test_measures_a_block_and_leaves_it_unchanged(
        self, backend: Backend, block_name: str
    ) -> None:
        geom = TINY_BLOCKS[block_name]
        block, shape = tiny_block(geom), block_input_shape(geom)
        x = torch.randn(shape)
        with torch.no_grad():
            before = block(x)
        threads = torch.get_num_threads()
        measurement = backend.measure(block, shape, self.measure_settings)
        check_measurement(measurement, self.backend_name)
        assert torch.get_num_threads() == threads, "measuring changed torch's thread count"
        with torch.no_grad():
            assert torch.equal(block(x), before), "measuring changed the model"

    def test_measures_a_whole_network(self, backend: Backend) -> None:
        net, shape = tiny_network()
        check_measurement(backend.measure(net, shape, self.measure_settings), self.backend_name)

    def test_bigger_model_is_slower(self, backend: Backend) -> None:
        small_geom = TINY_BLOCKS["se_hswish_k3_s1"]
        small = backend.measure(
            tiny_block(small_geom), block_input_shape(small_geom), self.compare_settings
        )
        big = backend.measure(
            tiny_block(BIG_BLOCK), block_input_shape(BIG_BLOCK), self.compare_settings
        )
        assert big.median_ms > self.slower_factor * small.median_ms, (
            f"a block with ~140x the work measured {big.median_ms:.4g} ms, "
            f"the small one {small.median_ms:.4g} ms"
        )

    def test_quick_measurement_is_fast(self, backend: Backend) -> None:
        geom = TINY_BLOCKS["se_hswish_k3_s1"]
        quick = MeasureSettings(warmup=1, repeats=3, max_rounds=1)
        start = time.perf_counter()
        measurement = backend.measure(tiny_block(geom), block_input_shape(geom), quick)
        elapsed = time.perf_counter() - start
        check_measurement(measurement, self.backend_name)
        assert measurement.rounds == 1 and measurement.n <= 3
        assert elapsed < self.quick_seconds, f"a quick measurement took {elapsed:.1f} s"

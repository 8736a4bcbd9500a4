"""A backend that runs nothing: constant, known latencies, for tests of everything around backends."""

from __future__ import annotations

from typing import Any

from .base import Availability, Backend
from .registry import register_backend


@register_backend
class NullBackend(Backend):
    """Reports ``latency_ms`` (default: 1 ms per million parameters of the model, at least 0.01)
    without running anything; ``jitter`` adds reproducible noise for statistics tests."""

    name = "null"
    settings_keys = frozenset({"latency_ms", "jitter", "seed"})

    @classmethod
    def availability(cls) -> Availability:
        return Availability(True)

    def prepare(self, model: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
        import numpy as np

        latency = self.settings.get("latency_ms")
        if latency is None:
            params = (
                sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else 0
            )
            latency = max(0.01, params / 1e6)
        return {
            "seconds": float(latency) / 1e3,
            "rng": np.random.default_rng(self.settings.get("seed", 0)),
        }

    def run_once(self, prepared: dict[str, Any]) -> float:
        jitter = float(self.settings.get("jitter", 0.0))
        return prepared["seconds"] * (1.0 + jitter * abs(float(prepared["rng"].standard_normal())))

"""Eager PyTorch: on the CPU (threads configurable), or on a CUDA GPU timed with CUDA events.

Settings (device profile ``settings:``):

- ``device``: ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``;
- ``threads``: intra-op threads for the CPU (``torch.set_num_threads``), restored after measuring;
- ``channels_last``: run model and input in the NHWC memory format (default false).
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import BackendError, ConfigError
from .base import Availability, Backend, class_or_instance_method, wall_clock
from .registry import register_backend

log = logging.getLogger("ofabench")

_DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?)$")


@dataclass
class _Prepared:
    """A module ready to run: on its device, in eval mode, with its input made once."""

    model: nn.Module
    example: torch.Tensor
    device: torch.device
    previous_threads: int | None


@register_backend
class TorchBackend(Backend):
    """Eager PyTorch inference under ``torch.no_grad()``."""

    name = "torch"
    settings_keys = frozenset({"device", "threads", "channels_last"})

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.device = _parse_device(self.settings.get("device", "cpu"))
        self.threads = _parse_threads(self.settings.get("threads"))
        self.channels_last = self.settings.get("channels_last", False)
        if not isinstance(self.channels_last, bool):
            raise ConfigError(
                f"torch setting 'channels_last' must be true or false, got {self.channels_last!r}"
            )

    # -- availability ------------------------------------------------------------------------------
    @class_or_instance_method
    def availability(target: Any) -> Availability:
        """PyTorch is a core dependency; a CUDA device also needs a visible GPU."""
        device = getattr(target, "device", None)
        if device is None or device.type != "cuda":
            return Availability(True)
        if not torch.cuda.is_available():
            return Availability(
                False, "CUDA is not available on this machine (torch.cuda.is_available() is False)"
            )
        count = torch.cuda.device_count()
        index = device.index or 0
        if index >= count:
            return Availability(False, f"no CUDA device {index}: this machine has {count}")
        return Availability(True)

    # -- conversion and one run ----------------------------------------------------------------
    def prepare(self, model: Any, input_shape: tuple[int, ...]) -> _Prepared:
        if not isinstance(model, nn.Module):
            raise BackendError(
                f"the torch backend runs torch.nn.Module objects, got {type(model).__name__}"
            )
        previous = self._set_threads()
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        if self.device.type != "cpu" or self.channels_last:
            model = copy.deepcopy(model).to(self.device, memory_format=memory_format)
        model = model.eval()
        generator = torch.Generator().manual_seed(0)
        example = torch.randn(*input_shape, generator=generator)
        if len(input_shape) == 4:
            example = example.to(memory_format=memory_format)
        example = example.to(self.device)
        return _Prepared(model, example, self.device, previous)

    def run_once(self, prepared: _Prepared) -> float:
        if prepared.device.type == "cuda":
            return _cuda_time(prepared)
        with torch.no_grad():
            return wall_clock(prepared.model, prepared.example)

    def close(self, prepared: _Prepared) -> None:
        if prepared.previous_threads is not None:
            torch.set_num_threads(prepared.previous_threads)

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "torch": torch.__version__,
            "device": str(self.device),
            "device_name": _device_name(self.device),
            "threads": torch.get_num_threads(),
            "channels_last": self.channels_last,
        }

    def _set_threads(self) -> int | None:
        """Apply ``threads``; return the previous count to restore, or None when unchanged."""
        if self.threads is None or self.device.type != "cpu":
            return None
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        return previous


def _cuda_time(prepared: _Prepared) -> float:
    """Seconds of one forward on the GPU, between two CUDA events, work before it finished."""
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(prepared.device)
    with torch.no_grad():
        start.record()
        prepared.model(prepared.example)
        end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def _parse_device(value: Any) -> torch.device:
    if not isinstance(value, str) or not _DEVICE_PATTERN.match(value):
        raise ConfigError(
            f"torch setting 'device' must be 'cpu', 'cuda' or 'cuda:N', got {value!r}"
        )
    return torch.device(value)


def _parse_threads(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"torch setting 'threads' must be a positive integer, got {value!r}")
    return value


def _device_name(device: torch.device) -> str:
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    from ..provenance import cpu_model

    return cpu_model()

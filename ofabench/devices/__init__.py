"""Device backends behind one interface (see :mod:`ofabench.devices.base`), their registry and
device profiles. Backends are imported lazily by name: this package imports no heavy library."""

from .base import Availability, Backend, Measurement, MeasureSettings
from .registry import get_backend, get_backend_class, list_backends, register_backend

__all__ = [
    "Availability",
    "Backend",
    "MeasureSettings",
    "Measurement",
    "get_backend",
    "get_backend_class",
    "list_backends",
    "register_backend",
]

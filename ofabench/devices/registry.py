"""Backends by name: built-ins imported lazily, third parties through the ``ofabench.backends``
entry-point group (``name = "package.module:BackendClass"``)."""

from __future__ import annotations

from ..errors import BackendError
from ..registry import Registry, RegistryMessages
from .base import Backend

ENTRY_POINT_GROUP = "ofabench.backends"

# name -> "module:Class"; imported only when asked for, so `import ofabench` stays light.
BUILTIN_BACKENDS: dict[str, str] = {
    "null": "ofabench.devices.null:NullBackend",
    "torch": "ofabench.devices.torch_backend:TorchBackend",
    "onnxruntime": "ofabench.devices.onnxruntime_backend:OnnxRuntimeBackend",
    "litert": "ofabench.devices.litert_backend:LiteRTBackend",
    "tvm": "ofabench.devices.tvm_backend:TVMBackend",
    "adb": "ofabench.devices.adb_backend:AdbBackend",
    "ssh": "ofabench.devices.ssh_backend:SshBackend",
}

BACKENDS: Registry[Backend] = Registry(
    "backend",
    Backend,
    builtin=BUILTIN_BACKENDS,
    entry_point_group=ENTRY_POINT_GROUP,
    error=BackendError,
    messages=RegistryMessages(
        unknown="unknown backend {name!r}; available: {valid_text}",
        nameless="{cls.__qualname__} has no name",
    ),
)


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make ``cls`` available as ``cls.name``; a taken name is refused."""
    return BACKENDS.register(cls)


def list_backends() -> list[str]:
    """Every backend name: built-in, registered in code, or from an entry point."""
    return BACKENDS.names()


def get_backend_class(name: str) -> type[Backend]:
    """The backend class called ``name``; an unknown name lists the valid ones."""
    return BACKENDS.get(name)


def get_backend(name: str, **settings: object) -> Backend:
    """An instance of the backend ``name`` with device-profile ``settings``."""
    return get_backend_class(name)(**settings)

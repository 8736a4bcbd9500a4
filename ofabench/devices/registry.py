"""Backends by name: built-ins imported lazily, third parties through the ``ofabench.backends``
entry-point group (``name = "package.module:BackendClass"``)."""

from __future__ import annotations

import importlib
import logging
from importlib import metadata

from ..errors import BackendError
from .base import Backend

log = logging.getLogger("ofabench")
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

_registered: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make ``cls`` available as ``cls.name``; a taken name is refused."""
    if not cls.name:
        raise BackendError(f"{cls.__qualname__} has no name")
    existing = _registered.get(cls.name)
    if existing is not None and existing is not cls:
        raise BackendError(
            f"backend name {cls.name!r} is taken by {existing.__module__}.{existing.__qualname__}"
        )
    _registered[cls.name] = cls
    return cls


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def list_backends() -> list[str]:
    """Every backend name: built-in, registered in code, or from an entry point."""
    return sorted(set(BUILTIN_BACKENDS) | set(_registered) | set(_entry_points()))


def get_backend_class(name: str) -> type[Backend]:
    """The backend class called ``name``; an unknown name lists the valid ones."""
    if name in _registered:
        return _registered[name]
    target = BUILTIN_BACKENDS.get(name)
    if target is not None:
        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
    else:
        entry = _entry_points().get(name)
        if entry is None:
            raise BackendError(f"unknown backend {name!r}; available: {', '.join(list_backends())}")
        try:
            cls = entry.load()
        except Exception as exc:  # a third party's broken plug-in
            raise BackendError(
                f"backend {name!r} from entry point {entry.value!r} failed to load: {exc}"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise BackendError(f"entry point {entry.value!r} is not an ofabench Backend subclass")
    return register_backend(cls)


def get_backend(name: str, **settings: object) -> Backend:
    """An instance of the backend ``name`` with device-profile ``settings``."""
    return get_backend_class(name)(**settings)

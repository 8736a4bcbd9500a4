"""Device profiles: ``devices/<name>.yaml`` = a backend and its settings.

A profile file::

    # comment header: what the device is and how to make it available
    backend: onnxruntime          # required: a name from `ofabench devices --backends`
    description: ONNX Runtime on this machine's CPU, one thread
    settings:                     # passed to the backend's constructor
      intra_op_threads: 1
    tags: [cpu, local]
    probe_resolution: 64          # optional: the drift probe's input size (default 128)
    probe_mode: rounds            # optional: paired (default) or rounds, see latency/probe.py

``name`` is optional and, when given, must match the file name. Profiles are looked up in order:
an existing path; ``$OFABENCH_DEVICES_DIR`` (``os.pathsep``-separated folders); ``./devices``; the
``devices/`` folder next to the ofabench package.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DeviceError
from .base import Availability, Backend

log = logging.getLogger("ofabench")

ENV_DEVICES_DIR = "OFABENCH_DEVICES_DIR"
PROFILE_SUFFIXES = (".yaml", ".yml")
REQUIRED_KEYS = frozenset({"backend"})
ALLOWED_KEYS = frozenset(
    {"name", "backend", "settings", "description", "tags", "probe_resolution", "probe_mode"}
)
PROBE_MODE_NAMES = ("paired", "rounds")
PROBE_RESOLUTIONS = (32, 512)  # the drift probe's input sizes a profile may ask for


@dataclass(frozen=True)
class DeviceProfile:
    """A named device: which backend measures it and with which settings."""

    name: str
    backend: str
    settings: Mapping[str, Any] = field(default_factory=dict, hash=False)
    description: str = ""
    tags: tuple[str, ...] = ()
    path: str | None = field(default=None, compare=False)
    probe_resolution: int = 128  # the drift probe's input size on this device
    probe_mode: str = "paired"  # how the drift probe is timed here unless a command says

    def backend_instance(self) -> Backend:
        """The configured backend, not yet checked; unknown backends and settings raise a clear
        error naming this profile. Measuring code uses :meth:`open`."""
        from .registry import get_backend

        try:
            backend = get_backend(self.backend, **dict(self.settings))
        except ImportError as exc:
            raise DeviceError(
                f"device {self.name!r}: backend {self.backend!r} cannot be imported ({exc})"
            ) from exc
        except ConfigError as exc:
            raise ConfigError(f"device profile {self.path or self.name}: {exc}") from exc
        backend.device_name = self.name
        backend.probe_resolution = self.probe_resolution
        backend.probe_mode = self.probe_mode
        return backend

    def open(self) -> Backend:
        """The configured backend, its availability checked once for the run (a remote device
        is asked here, not before every measurement). The one route by which the profiler,
        validation, the study and ``ofabench devices`` get a backend; :class:`DeviceError`
        naming this device and the reason when it cannot run here, :class:`ConfigError` for
        bad settings."""
        backend, status = self._checked_backend()
        if not status:
            raise DeviceError(f"device {self.name!r}: {backend.unavailable_message(status)}")
        return backend

    def availability(self) -> Availability:
        """What :meth:`open` finds, never raising: the reason when this device cannot run."""
        try:
            return self._checked_backend()[1]
        except Exception as exc:  # unknown backend, bad settings, a broken plug-in
            reason = str(exc).removeprefix(f"device {self.name!r}: ")
            return Availability(False, reason, isinstance(exc, ImportError))

    def _checked_backend(self) -> tuple[Backend, Availability]:
        backend = self.backend_instance()
        return backend, backend.available_once()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "settings": dict(self.settings),
            "description": self.description,
            "tags": list(self.tags),
            "path": self.path,
            "probe_resolution": self.probe_resolution,
            "probe_mode": self.probe_mode,
        }


def profile_dirs() -> list[Path]:
    """Folders searched for ``<name>.yaml``, first match wins (duplicates removed)."""
    dirs = [Path(p) for p in os.environ.get(ENV_DEVICES_DIR, "").split(os.pathsep) if p]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise ConfigError(
            f"{ENV_DEVICES_DIR} names {missing[0]}, which is not a folder; point it at a folder "
            "of device profiles (<name>.yaml) or unset it"
        )
    dirs.append(Path.cwd() / "devices")
    import ofabench

    dirs.append(Path(ofabench.__file__).resolve().parents[1] / "devices")
    unique: list[Path] = []
    for folder in dirs:
        if folder.is_dir() and all(not folder.samefile(seen) for seen in unique):
            unique.append(folder)
    return unique


def _profile_files() -> dict[str, Path]:
    """Profile name -> file, the first folder in :func:`profile_dirs` winning."""
    found: dict[str, Path] = {}
    for folder in profile_dirs():
        for path in sorted(folder.iterdir()):
            if path.suffix in PROFILE_SUFFIXES and path.is_file():
                found.setdefault(path.stem, path)
    return found


def list_profiles() -> list[str]:
    """Names of every device profile found."""
    return sorted(_profile_files())


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A profile by name (see :func:`profile_dirs`) or from a YAML file path."""
    path = Path(name_or_path)
    if path.is_file():
        return read_profile(path)
    if path.suffix in PROFILE_SUFFIXES or len(path.parts) > 1:
        from ..files import input_file

        input_file(path, "device profile file")  # says why: missing, a folder...
        raise ConfigError(f"device profile file {path} cannot be read")
    files = _profile_files()
    if str(name_or_path) not in files:
        searched = ", ".join(str(d) for d in profile_dirs()) or "no devices/ folder found"
        raise ConfigError(
            f"unknown device {str(name_or_path)!r}; known: {', '.join(sorted(files)) or 'none'} "
            f"(searched {searched}; set {ENV_DEVICES_DIR} to add a folder)"
        )
    return read_profile(files[str(name_or_path)])


def read_profile(path: str | Path) -> DeviceProfile:
    """Parse and validate one profile file."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read device profile {path}: {exc}") from exc
    return profile_from_dict(data, default_name=path.stem, source=str(path))


def profile_from_dict(data: Any, default_name: str, source: str | None = None) -> DeviceProfile:
    """Validate a profile's mapping strictly: unknown keys and wrong types are errors."""
    where = source or default_name
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"device profile {where} must be a mapping with keys {sorted(ALLOWED_KEYS)}, "
            f"got {type(data).__name__}"
        )
    unknown = sorted(set(map(str, data)) - ALLOWED_KEYS)
    if unknown:
        raise ConfigError(
            f"device profile {where} has unknown key(s) {unknown}; allowed: {sorted(ALLOWED_KEYS)}"
            " (backend options go under 'settings:')"
        )
    missing = sorted(REQUIRED_KEYS - set(data))
    if missing:
        raise ConfigError(f"device profile {where} lacks required key(s) {missing}")
    name = _typed(data, "name", str, "a string", where, default_name)
    if name != default_name:
        raise ConfigError(
            f"device profile {where} is named {name!r} but its file is {default_name!r}; "
            "make them match"
        )
    backend = _typed(data, "backend", str, "a backend name (string)", where, "")
    if not backend:
        raise ConfigError(
            f"device profile {where}: 'backend' is empty; name one of `ofabench devices "
            '--backends` (quote "null": YAML reads a bare null as no value)'
        )
    settings = _typed(data, "settings", Mapping, "a mapping of backend settings", where, {})
    if not all(isinstance(key, str) for key in settings):
        raise ConfigError(f"device profile {where}: setting names must be strings")
    return DeviceProfile(
        name=name,
        backend=backend,
        settings=dict(settings),
        description=_typed(data, "description", str, "a string", where, ""),
        tags=_tags(data.get("tags"), where),
        path=source,
        probe_resolution=_probe_resolution(data.get("probe_resolution"), where),
        probe_mode=_probe_mode(data.get("probe_mode", "paired"), where),
    )


def _probe_mode(value: Any, where: str) -> str:
    if value not in PROBE_MODE_NAMES:
        raise ConfigError(
            f"device profile {where}: 'probe_mode' must be one of {list(PROBE_MODE_NAMES)} "
            f"(paired: timed alternately with every item; rounds: read between rounds), "
            f"got {value!r}"
        )
    return str(value)


def _probe_resolution(value: Any, where: str) -> int:
    low, high = PROBE_RESOLUTIONS
    if value is None:
        return 128
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"device profile {where}: 'probe_resolution' must be an integer from {low} to "
            f"{high} (pixels), got {value!r}"
        )
    return value


def _typed(
    data: Mapping[str, Any], key: str, kind: type, expected: str, where: str, default: Any
) -> Any:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise ConfigError(
            f"device profile {where}: {key!r} must be {expected}, got {type(value).__name__} "
            f"{value!r}"
        )
    return value


def _tags(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise ConfigError(
            f"device profile {where}: 'tags' must be a list of strings, got {value!r}"
        )
    return tuple(value)

"""Where a file came from (command, versions, machine) and how files are written (atomically)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from . import __version__


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones omitted)."""
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def provenance(**extra: Any) -> dict[str, Any]:
    """A record of how a result was made: command line, ofabench/Python/library versions,
    machine, time. Extra keys (device, backend, seed...) are merged in."""
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
        "ofabench": __version__,
        "python": platform.python_version(),
        "versions": library_versions(
            "torch", "numpy", "onnx", "onnxruntime", "ai-edge-litert", "apache-tvm"
        ),
        "host": {"platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count()},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file in the same folder, renamed into place only when
    the block finishes without error: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_file_mode())  # mkstemp makes 0600; give the usual umask mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (indented, trailing newline)."""
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")


def read_yaml_file(path: str | Path, what: str, mapping: bool = True) -> Any:
    """Parse a YAML file, or raise :class:`ConfigError` naming ``what`` it should have been
    (missing file, unreadable, invalid YAML, or with ``mapping`` not a mapping)."""
    import yaml

    from .errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if mapping and not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping")
    return data

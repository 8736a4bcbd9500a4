"""Where a file came from (command, versions, machine) and how files are written (atomically)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import glob
import json
import logging
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from . import __version__

log = logging.getLogger("ofabench")


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


def command_line() -> str:
    """This process's command line as a user would type it (program name, then arguments)."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""


def provenance(**extra: Any) -> dict[str, Any]:
    """A record of how a result was made: command line, ofabench/Python/library versions,
    machine, time. Extra keys (device, backend, seed...) are merged in."""
    return {
        "command": command_line(),
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


def _temp_prefix(path: Path, pid: int | None = None) -> str:
    """Temporary files of ``path`` are ``.<name>.<pid>-<random>.tmp``: the pid tells a live
    writer's file from one left by a process that was killed (``kill -9``) mid-write."""
    return f".{path.name}." if pid is None else f".{path.name}.{pid}-"


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temporary files of ``path`` left by writers that no longer run (killed during
    :func:`atomic_open`); those of live writers stay. Returns the files removed."""
    path = Path(path)
    prefix = _temp_prefix(path)
    removed = []
    with contextlib.suppress(OSError):
        for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
            pid = tmp.name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and _writer_alive(int(pid)):
                continue
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    if removed:
        log.info("removed %d stale temporary file(s) of %s", len(removed), path)
    return removed


def make_temp(path: str | Path) -> tuple[int, str]:
    """A new temporary file beside ``path`` (folders made, stale temporaries of ``path``
    removed) as ``(fd, name)``; rename it onto ``path`` when it is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    return tempfile.mkstemp(prefix=_temp_prefix(path, os.getpid()), suffix=".tmp", dir=path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file in the same folder, renamed into place only when
    the block finishes without error: readers never see a half-written file. Temporary files of
    ``path`` left by a killed writer are removed first."""
    path = Path(path)
    fd, tmp = make_temp(path)
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
    (missing file, a folder, unreadable, invalid YAML, or with ``mapping`` not a mapping)."""
    from .errors import ConfigError
    from .files import parse_yaml, read_text

    data = parse_yaml(read_text(path, what), f"{what} {path}")
    if mapping and not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping")
    return data

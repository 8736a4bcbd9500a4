"""The errors ofabench raises on purpose.

Every message says what was wrong, what is allowed and, where it helps, what to do. The CLI turns
any :class:`OfabenchError` into a one-line message and exit code 1.
"""

from __future__ import annotations


class OfabenchError(Exception):
    """Root of every error ofabench raises deliberately."""


class InvalidArchError(OfabenchError, ValueError):
    """An architecture does not fit its search space (field, bad value, allowed values)."""


class ConfigError(OfabenchError, ValueError):
    """A configuration file or argument is malformed or names something unknown."""


class CheckpointError(OfabenchError):
    """A checkpoint cannot be read, or belongs to another search space."""


class ExportError(OfabenchError):
    """A model could not be exported or failed its numerical check."""


class MissingDependencyError(OfabenchError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is not installed; install it with: pip install 'ofabench[{extra}]'"
        ) from exc


class LatencyTableError(OfabenchError, ValueError):
    """A latency table is malformed, lacks an op, or belongs to another search space."""


class BackendError(OfabenchError):
    """A device backend is unknown, unavailable, or failed to convert or run a model."""


class DeviceError(BackendError):
    """A device cannot be reached or used (host, key, remote runtime, a hang); the message names
    the device and what to fix."""


class SearchError(OfabenchError):
    """A search cannot proceed."""


class InfeasibleConstraintError(SearchError, ValueError):
    """No architecture of the space was found that meets every constraint; the message names
    the smallest value reachable."""


class DatasetError(OfabenchError):
    """A dataset is missing, empty, or cannot be read; the message says how to get it."""


class StudyError(OfabenchError):
    """A step of a study failed or is missing; the message names the step and how to resume."""


class OutputError(OfabenchError):
    """An output path must not or cannot be written (an input of the command, a folder where a
    file goes, a read-only folder); raised before any work is done."""

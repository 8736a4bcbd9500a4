"""How ofabench reads its input files and checks its outputs, in one place.

Commands call :func:`check_output` for every path they will write before doing any work: an output
that is one of the command's inputs (same file, symlink or hard link), a folder where a file is
expected (or the reverse) and an unwritable folder are refused with a one-line
:class:`OutputError`, so bad input never costs data or compute. Inputs are opened through
:func:`input_file` / :func:`read_text` / :func:`load_torch`, whose errors say what the file should
have been in one line (a folder given for a file is not "missing").
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import CheckpointError, ConfigError, OfabenchError, OutputError

PathLike = str | Path
MAX_REASON = 300


# -- inputs --------------------------------------------------------------------------------------
def input_file(path: PathLike, what: str, error: type[OfabenchError] = ConfigError) -> Path:
    """``path`` if it is a readable file, else ``error`` saying what ``what`` should have been."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{what} {path} is a folder; expected a file")
    if not path.exists():
        raise error(f"{what} {path} does not exist")
    if not path.is_file():
        raise error(f"{what} {path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise error(f"{what} {path} cannot be read (permission denied)")
    return path


def read_text(path: PathLike, what: str, error: type[OfabenchError] = ConfigError) -> str:
    """The text of an input file (UTF-8), or one line of ``error``."""
    path = input_file(path, what, error)
    try:
        return path.read_text()
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not a text file ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def parse_yaml(text: str, where: str) -> Any:
    """YAML (safe loader) from ``text``; a syntax error is one line naming ``where`` and the
    place in the file."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {yaml_reason(exc)}") from exc


def yaml_reason(exc: Exception) -> str:
    """One line for a YAML error: the problem and its line and column."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return one_line(str(exc))


def read_mapping_file(path: PathLike, what: str) -> dict[str, Any]:
    """A JSON (``.json``) or YAML file that must hold a mapping, or one line of ConfigError."""
    import json

    text = read_text(path, what)
    if Path(path).suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{what} {path} is not valid JSON: {exc}") from exc
    else:
        data = parse_yaml(text, f"{what} {path}")
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping, got {type(data).__name__}")
    return data


def load_torch(
    path: PathLike, what: str = "checkpoint", error: type[OfabenchError] = CheckpointError
) -> Any:
    """The object in a torch file (tensors only, on the CPU: ``weights_only=True``), or one line
    of ``error`` saying why it cannot be read."""
    import torch

    path = input_file(path, what, error)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise error(f"cannot read {what} {path}: {torch_load_reason(exc)}") from exc


def torch_load_reason(exc: BaseException) -> str:
    """One line for why ``torch.load`` failed (its own message spans several lines of advice)."""
    text = str(exc)
    if "Weights only load failed" in text:
        detail = next(
            (ln.split(":", 1)[1].strip() for ln in text.splitlines() if "Unpickler error" in ln),
            "",
        )
        return (
            "it holds Python objects other than tensors, which ofabench does not load "
            f"(weights_only){': ' + detail if detail else ''}"
        )[:MAX_REASON]
    first = one_line(text).split(". ")[0]  # torch's first sentence; the rest is advice
    return f"{first} (not a torch file, or damaged)" if first else type(exc).__name__


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """``text`` as one line (first non-empty line) of at most ``limit`` characters."""
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- outputs -------------------------------------------------------------------------------------
def check_output(
    path: PathLike | None,
    inputs: Iterable[PathLike | None] = (),
    *,
    folder: bool = False,
    what: str = "--out",
) -> Path | None:
    """Refuse, before any work, an output ``path`` that cannot or must not be written: one of
    ``inputs`` (same file, symlink, hard link), a folder where a file is written (or with
    ``folder``, a file where a folder is made), or inside a folder that cannot be written.
    Returns ``path`` as a :class:`Path` (``None`` passes through)."""
    if path is None:
        return None
    path = Path(path)
    _check_kind(path, folder, what)
    for source in inputs:
        if source is not None and same_file(path, source):
            raise OutputError(
                f"{what} {path} is the input {source}: writing it would destroy the input; "
                f"choose another {what}"
            )
    _check_writable(path, what)
    return path


def check_distinct(outputs: dict[str, PathLike | None]) -> None:
    """Refuse two options that name the same output file (e.g. ``--out`` and ``--csv``)."""
    named = [(k, v) for k, v in outputs.items() if v is not None]
    for i, (name, path) in enumerate(named):
        for other, other_path in named[i + 1 :]:
            if same_file(path, other_path):
                raise OutputError(f"{name} and {other} name the same file {path}; give two files")


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths are one file: the same inode (symlinks, hard links) or path."""
    a, b = Path(a), Path(b)
    with contextlib.suppress(OSError):
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _check_kind(path: Path, folder: bool, what: str) -> None:
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file; expected a folder (a new or existing one)")
    if not folder and path.is_dir():
        raise OutputError(f"{what} {path} is a folder; expected a file path inside one")


def _check_writable(path: Path, what: str) -> None:
    """The nearest existing folder on ``path``'s way must be a folder we can create files in;
    an existing output file must be writable (some outputs are appended to)."""
    base = _nearest_existing(path if path.is_dir() else path.parent)
    if not base.is_dir():
        raise OutputError(f"{what} {path}: {base} is a file, not a folder")
    reason = _probe(base)
    if reason:
        raise OutputError(f"{what} {path}: cannot write in {base} ({reason})")
    if path.is_file() and not os.access(path, os.W_OK):
        raise OutputError(f"{what} {path} exists and cannot be written (permission denied)")


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe(folder: Path) -> str:
    """Why a file cannot be created in ``folder`` (empty if it can): tried, not guessed, so a
    read-only file system or missing rights are seen as the later write would see them."""
    try:
        fd, name = tempfile.mkstemp(prefix=".ofabench-probe.", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return ""

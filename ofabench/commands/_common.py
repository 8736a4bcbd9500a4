"""Argument helpers shared by the ``ofabench`` subcommands."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InvalidArchError
from ..files import input_file
from ..space import ArchConfig, SpaceSpec, arch_from_data, get_space, list_spaces, load_arch


def space_arg(args: argparse.Namespace) -> SpaceSpec:
    return get_space(args.space)


def arch_arg(args: argparse.Namespace, space: SpaceSpec) -> ArchConfig:
    """``--arch``: a JSON file (ofabench or OFA dict, or an OFA ``net.config`` whose resolution
    is ``--resolution`` or the ``image_size`` of a ``run.config`` beside it), inline JSON, or
    ``max``/``min`` (at ``--resolution`` when given)."""
    value, resolution = args.arch, getattr(args, "resolution", None)
    if value in ("max", "min"):
        arch = space.max_arch() if value == "max" else space.min_arch()
        if resolution is None:
            return arch
        return space.validate(dataclasses.replace(arch, r=resolution))
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidArchError(f"arch is not valid JSON: {exc}") from exc
        return arch_from_data(data, space, resolution)
    return load_arch(input_file(value, "arch file", InvalidArchError), space, resolution)


def add_resolution(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resolution",
        type=int,
        help="input resolution for an arch that carries none (an OFA net.config)",
    )


def input_paths(*values: str | Path | None) -> list[Path]:
    """The values that name files (``ofa:PATH`` read as ``PATH``; presets, ``max`` and inline
    JSON are not files): the inputs a command's outputs must not overwrite."""
    paths = []
    for value in values:
        text = str(value).removeprefix("ofa:") if value is not None else ""
        if text and not text.lstrip().startswith("{") and Path(text).exists():
            paths.append(Path(text))
    return paths


def at_least(name: str, value: int | None, low: int) -> None:
    """Refuse an integer option below ``low`` (ConfigError naming the option)."""
    if value is not None and value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")


def emit(
    args: argparse.Namespace, data: dict[str, Any], human: Callable[[dict[str, Any]], str]
) -> None:
    print(json.dumps(data, indent=2) if args.json else human(data))


def add_space(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--space",
        default="ofa_mbv3_w1.0",
        help=f"preset ({', '.join(list_spaces())}) or a .json/.yaml space file",
    )


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON")


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so the library's clean-up (saving a table, stopping a
    study's training processes politely) runs before the command ends."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

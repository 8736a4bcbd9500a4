"""Typed configuration: frozen dataclasses built from mappings (parsed YAML), every field checked
against its annotation and its declared limits, with a :class:`ConfigError` that names the field,
the value and what is allowed.

Declare limits in the field's metadata::

    @dataclass(frozen=True)
    class Optim:
        batch_size: int = field(default=64, metadata=bounds(ge=1))
        momentum: float = field(default=0.9, metadata=bounds(ge=0, lt=1))
        augment: str | None = field(default=None, metadata=one_of("none", "crop"))

then ``from_mapping(Optim, {"batch_size": 32}, "optim")`` checks keys, types and limits before
the class is made. A class built by hand can check itself: call ``check(self, where)`` first thing
in ``__post_init__`` (it also normalises values: lists become tuples, ints in float fields become
floats). The rules:

- ``int``: an integer, never a bool, a float (``1.5``, even ``2.0``) or a string;
- ``float``: an int or float (not bool), finite; stored as float;
- ``str``: a string; ``bool``: only ``true``/``false``;
- ``tuple[int, ...]`` (or ``tuple[str, ...]``): a list or tuple of those, stored as a tuple;
- ``X | None``: ``None`` or an ``X``; unions try each member; ``Literal[...]``: one of its values;
- ``Path``: a string or path, stored as a :class:`~pathlib.Path`; ``Mapping``/``dict``: a mapping;
  any other class: an instance of it; ``Any``: anything.

For example, the training ``Stage``: declare ``epochs: int = field(metadata=bounds(ge=1))`` and
call ``check(self, f"stage {self.name!r}")`` first in ``__post_init__``; ``epochs: 1.5``, ``two``
and ``true`` are then refused with "stage 'full': epochs must be a positive integer, got 1.5".
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")
_KEY = "typed_config"


class _Mismatch(Exception):
    """A value does not fit an annotation (caught and turned into a ConfigError)."""


def bounds(
    *, ge: float | None = None, gt: float | None = None, le: float | None = None,
    lt: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Field metadata: numeric limits (for a tuple field, on every element)."""
    limits = {"ge": ge, "gt": gt, "le": le, "lt": lt}
    return {_KEY: {k: v for k, v in limits.items() if v is not None}}


def one_of(*values: Any) -> dict[str, Any]:
    """Field metadata: the value must be one of ``values`` (``None`` passes when allowed)."""
    return {_KEY: {"choices": tuple(values)}}


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """An instance of the dataclass ``cls`` from ``data`` (``None``: all defaults), after
    checking unknown and missing keys, every value's type and limits (:class:`ConfigError`)."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of {_field_names(cls)}, got {data!r}")
    unknown = sorted(set(map(str, data)) - set(_field_names(cls)))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {_field_names(cls)}")
    missing = [f.name for f in _required(cls) if f.name not in data]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: checked(where, fields[k], hints[k], v) for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:  # a class that takes other arguments than its fields
        raise ConfigError(f"{where}: {exc}") from exc


def check(instance: Any, where: str = "") -> None:
    """Check (and normalise in place) every field of a dataclass instance; for
    ``__post_init__``. Raises :class:`ConfigError` naming ``where``, the field and the value."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        value = checked(where, f, hints[f.name], getattr(instance, f.name))
        object.__setattr__(instance, f.name, value)


def checked(where: str, f: dataclasses.Field, annotation: Any, value: Any) -> Any:
    """``value`` converted to ``annotation`` and checked against ``f``'s limits."""
    limits = f.metadata.get(_KEY, {})
    prefix = f"{where}: " if where else ""
    try:
        converted = _convert(annotation, value)
        _check_limits(converted, limits)
    except _Mismatch:
        allowed = _describe_allowed(annotation, limits)
        raise ConfigError(f"{prefix}{f.name} must be {allowed}, got {_short(value)}") from None
    return converted


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- conversion ----------------------------------------------------------------------------------
def _convert(annotation: Any, value: Any) -> Any:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _convert_union(typing.get_args(annotation), value)
    if origin is typing.Literal:
        if value in typing.get_args(annotation) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if origin is tuple:
        return _convert_tuple(typing.get_args(annotation), value)
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return _require(value, isinstance(value, Mapping))
    return _convert_plain(annotation, value)


def _convert_union(members: tuple[Any, ...], value: Any) -> Any:
    if value is None:
        return _require(None, type(None) in members)
    for member in members:
        if member is type(None):
            continue
        try:
            return _convert(member, value)
        except _Mismatch:
            continue
    raise _Mismatch


def _convert_tuple(args: tuple[Any, ...], value: Any) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise _Mismatch
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v) for v in value)
    if not args:
        return tuple(value)
    if len(args) != len(value):
        raise _Mismatch
    return tuple(_convert(a, v) for a, v in zip(args, value))


def _convert_plain(annotation: Any, value: Any) -> Any:
    if annotation is bool:
        return _require(value, isinstance(value, bool))
    if annotation is int:
        return _require(value, isinstance(value, int) and not isinstance(value, bool))
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value):
            raise _Mismatch
        return float(value)
    if annotation is str:
        return _require(value, isinstance(value, str))
    if annotation is Path:
        return Path(_require(value, isinstance(value, (str, Path))))
    if isinstance(annotation, type):
        return _require(value, isinstance(value, annotation))
    return value  # an annotation this module does not know: left to the class


def _require(value: Any, ok: bool) -> Any:
    if not ok:
        raise _Mismatch
    return value


def _check_limits(value: Any, limits: Mapping[str, Any]) -> None:
    if value is None or not limits:
        return
    if isinstance(value, tuple) and "choices" not in limits:
        for item in value:
            _check_limits(item, limits)
        return
    if "choices" in limits and value not in limits["choices"]:
        raise _Mismatch
    tests = {
        "ge": lambda v, b: v >= b, "gt": lambda v, b: v > b,
        "le": lambda v, b: v <= b, "lt": lambda v, b: v < b,
    }  # fmt: skip
    for key, test in tests.items():
        if key in limits and not test(value, limits[key]):
            raise _Mismatch


# -- messages ------------------------------------------------------------------------------------
_NAMES = {bool: "true or false", float: "a number", str: "a string", Path: "a path"}
_SIGNS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_INT_WORDS = {(("ge", 1),): "positive", (("ge", 0),): "non-negative"}


def _describe_allowed(annotation: Any, limits: Mapping[str, Any]) -> str:
    if "choices" in limits:
        optional = type(None) in typing.get_args(annotation)
        return ("null or " if optional else "") + f"one of {list(limits['choices'])}"
    word = _INT_WORDS.get(tuple(sorted(limits.items())))
    if word is not None:  # "a positive integer" reads better than "an integer >= 1"
        return _describe(annotation, word)
    parts = [f"{_SIGNS[k]} {limits[k]:g}" for k in _SIGNS if k in limits]
    return _describe(annotation) + (f" {' and '.join(parts)}" if parts else "")


def _describe(annotation: Any, int_word: str = "") -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(annotation) if m is not type(None)]
        if float in members and int in members:  # "a number" says both
            members.remove(int)
        text = " or ".join(_describe(m, int_word) for m in members)
        return f"null or {text}" if len(members) < len(typing.get_args(annotation)) else text
    if origin is typing.Literal:
        return f"one of {list(typing.get_args(annotation))}"
    if origin is tuple:
        args = typing.get_args(annotation)
        inner = _describe(args[0], int_word) if args else "a value"
        return f"a list of {inner.split(' ', 1)[1]}s"
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return "a mapping"
    if annotation is int:
        return f"a {int_word} integer" if int_word else "an integer"
    if annotation in _NAMES:
        return _NAMES[annotation]
    return f"a {getattr(annotation, '__name__', annotation)}"


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]


def _required(cls: type) -> list[dataclasses.Field]:
    missing = dataclasses.MISSING
    return [
        f for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init and f.default is missing and f.default_factory is missing
    ]  # fmt: skip

"""One registry of named plug-in classes, shared by every extension point (device backends,
baselines, space families, training strategies).

A class registers under its ``name`` (a taken name is refused); built-ins are listed as
``name -> "module:attr"`` and imported only when first asked for, so ``import ofabench`` stays
light; third parties add classes through an ``importlib.metadata`` entry-point group. An unknown
name is refused with the list of valid ones. Each registry keeps its own message texts and
error type, set through :class:`RegistryMessages`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class RegistryMessages:
    """``str.format`` templates of a registry's errors. Every template gets ``kind``; besides:
    ``unknown`` gets ``name``, ``valid`` (a sorted list) and ``valid_text`` (``"a, b"``);
    ``taken`` gets ``name`` and ``existing`` (the class holding it); ``nameless`` gets ``cls``;
    ``broken`` gets ``name``, ``value`` (the entry point's target) and ``exc``;
    ``not_subclass`` gets ``value`` and ``base`` (the base class's name)."""

    unknown: str = "unknown {kind} {name!r}; valid: {valid}"
    taken: str = "{kind} name {name!r} is taken by {existing.__module__}.{existing.__qualname__}"
    nameless: str = "{kind} {cls.__qualname__} has no name"
    broken: str = "{kind} {name!r} from entry point {value!r} failed to load: {exc}"
    not_subclass: str = "entry point {value!r} is not an ofabench {base} subclass"


class Registry(Generic[T]):
    """Classes derived from ``base`` by name; ``kind`` names them in messages (``"backend"``)."""

    def __init__(
        self,
        kind: str,
        base: type[T],
        *,
        builtin: Mapping[str, str] | None = None,
        entry_point_group: str | None = None,
        error: type[Exception] = ConfigError,
        messages: RegistryMessages | None = None,
    ) -> None:
        self.kind = kind
        self.base = base
        self.builtin: Mapping[str, str] = builtin or {}
        self.entry_point_group = entry_point_group
        self.error = error
        self.messages = messages or RegistryMessages()
        self._registered: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: make ``cls`` available as ``cls.name``. A name held by another class,
        registered or built in, is refused; the same class again is fine."""
        name = getattr(cls, "name", "")
        if not name:
            raise self._error("nameless", cls=cls)
        existing = self._registered.get(name)
        if existing is None and name in self.builtin and not self._is_builtin(name, cls):
            existing = _import(self.builtin[name])
        if existing is not None and existing is not cls:
            raise self._error("taken", name=name, existing=existing)
        self._registered[name] = cls
        return cls

    def get(self, name: str) -> type[T]:
        """The class called ``name``, importing a built-in or loading an entry point the first
        time; an unknown name lists the valid ones."""
        cls = self._registered.get(name)
        if cls is None:
            cls = self._registered[name] = self._load(name)
        return cls

    def names(self) -> list[str]:
        """Every name: built-in, registered in code, or from an entry point."""
        return sorted(set(self.builtin) | set(self._registered) | set(self.entry_points()))

    def entry_points(self) -> dict[str, metadata.EntryPoint]:
        """The group's entry points by name (none without a group)."""
        if self.entry_point_group is None:
            return {}
        return {ep.name: ep for ep in metadata.entry_points(group=self.entry_point_group)}

    def _load(self, name: str) -> type[T]:
        if name in self.builtin:
            return _import(self.builtin[name])
        entry = self.entry_points().get(name)
        if entry is None:
            valid = self.names()
            raise self._error("unknown", name=name, valid=valid, valid_text=", ".join(valid))
        try:
            cls = entry.load()
        except Exception as exc:  # a third party's broken plug-in
            raise self._error("broken", name=name, value=entry.value, exc=exc) from exc
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise self._error("not_subclass", value=entry.value, base=self.base.__name__)
        return cls

    def _is_builtin(self, name: str, cls: type) -> bool:
        """True if ``cls`` is the built-in ``name`` itself (told without importing it, since a
        built-in registers itself while its module is being imported)."""
        return self.builtin[name] == f"{cls.__module__}:{cls.__qualname__}"

    def _error(self, message: str, **fields: Any) -> Exception:
        return self.error(getattr(self.messages, message).format(kind=self.kind, **fields))


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)

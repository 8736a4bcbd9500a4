"""Baselines by name: built-ins imported lazily, third parties through the
``ofabench.baselines`` entry-point group (``name = "package.module:BaselineClass"``), like the
device backends. A taken name is refused; an unknown name lists the valid ones."""

from __future__ import annotations

import importlib
from importlib import metadata

from ..errors import ConfigError
from .base import Baseline

ENTRY_POINT_GROUP = "ofabench.baselines"

BUILTIN_BASELINES: dict[str, str] = {
    "random": "ofabench.baselines.searches:RandomSearch",
    "uniform": "ofabench.baselines.uniform:UniformScaling",
    "aging_evolution": "ofabench.baselines.searches:AgingEvolution",
    "local_search": "ofabench.baselines.searches:LocalSearch",
    "nsga2": "ofabench.baselines.searches:NSGA2",
}

_registered: dict[str, type[Baseline]] = {}


def register_baseline(cls: type[Baseline]) -> type[Baseline]:
    """Class decorator: make ``cls`` available as ``cls.name``; a taken name is refused."""
    if not cls.name:
        raise ConfigError(f"baseline {cls.__qualname__} has no name")
    existing = _registered.get(cls.name)
    if existing is None and cls.name in BUILTIN_BASELINES:
        existing = _load(BUILTIN_BASELINES[cls.name])
    if existing is not None and existing is not cls:
        raise ConfigError(
            f"baseline name {cls.name!r} is taken by {existing.__module__}.{existing.__qualname__}"
        )
    _registered[cls.name] = cls
    return cls


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def list_baselines() -> list[str]:
    """Every baseline name: built-in, registered in code, or from an entry point."""
    return sorted(set(BUILTIN_BASELINES) | set(_registered) | set(_entry_points()))


def _load(target: str) -> type[Baseline]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_baseline_class(name: str) -> type[Baseline]:
    """The baseline class called ``name``; an unknown name lists the valid ones."""
    if name in _registered:
        return _registered[name]
    if name in BUILTIN_BASELINES:
        cls = _load(BUILTIN_BASELINES[name])
    else:
        entry = _entry_points().get(name)
        if entry is None:
            raise ConfigError(f"unknown baseline {name!r}; available: {list_baselines()}")
        try:
            cls = entry.load()
        except Exception as exc:  # a third party's broken plug-in
            raise ConfigError(
                f"baseline {name!r} from entry point {entry.value!r} failed to load: {exc}"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, Baseline)):
            raise ConfigError(f"entry point {entry.value!r} is not an ofabench Baseline subclass")
    _registered[name] = cls
    return cls


def get_baseline(name: str) -> Baseline:
    """An instance of the baseline called ``name``."""
    return get_baseline_class(name)()

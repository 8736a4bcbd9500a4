"""Baselines by name: built-ins imported lazily, third parties through the
``ofabench.baselines`` entry-point group (``name = "package.module:BaselineClass"``), like the
device backends. A taken name is refused; an unknown name lists the valid ones."""

from __future__ import annotations

from ..registry import Registry, RegistryMessages
from .base import Baseline

ENTRY_POINT_GROUP = "ofabench.baselines"

BUILTIN_BASELINES: dict[str, str] = {
    "random": "ofabench.baselines.searches:RandomSearch",
    "uniform": "ofabench.baselines.uniform:UniformScaling",
    "aging_evolution": "ofabench.baselines.searches:AgingEvolution",
    "local_search": "ofabench.baselines.searches:LocalSearch",
    "nsga2": "ofabench.baselines.searches:NSGA2",
}

BASELINES: Registry[Baseline] = Registry(
    "baseline",
    Baseline,
    builtin=BUILTIN_BASELINES,
    entry_point_group=ENTRY_POINT_GROUP,
    messages=RegistryMessages(unknown="unknown baseline {name!r}; available: {valid}"),
)


def register_baseline(cls: type[Baseline]) -> type[Baseline]:
    """Class decorator: make ``cls`` available as ``cls.name``; a taken name is refused."""
    return BASELINES.register(cls)


def list_baselines() -> list[str]:
    """Every baseline name: built-in, registered in code, or from an entry point."""
    return BASELINES.names()


def get_baseline_class(name: str) -> type[Baseline]:
    """The baseline class called ``name``; an unknown name lists the valid ones."""
    return BASELINES.get(name)


def get_baseline(name: str) -> Baseline:
    """An instance of the baseline called ``name``."""
    return get_baseline_class(name)()

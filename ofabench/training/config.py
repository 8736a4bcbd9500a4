"""The training configuration: space, data, optimiser settings and the stage schedule.

Loaded from YAML with strict validation (unknown keys are errors that list the valid ones); the
resolved form (:meth:`TrainConfig.to_dict`) is saved beside the checkpoints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..provenance import read_yaml_file
from ..space import ArchConfig, SpaceSpec, get_space
from ..typed_config import bounds, check, from_mapping
from .budget import with_budget
from .data import DataConfig
from .stages import (
    Stage,
    no_ps_schedule,
    sandwich_schedule,
    scratch_schedule,
    stage_from_dict,
    validate_stages,
)

SCHEDULES = ("ps", "no_ps", "sandwich", "scratch")


@dataclass(frozen=True)
class OptimConfig:
    """SGD (Nesterov) and loss settings shared by every stage. ``batch_size`` is global: under
    ``torchrun`` each of N ranks takes ``batch_size / N``."""

    batch_size: int = field(default=64, metadata=bounds(ge=1))
    momentum: float = field(default=0.9, metadata=bounds(ge=0, lt=1))
    nesterov: bool = True
    weight_decay: float = field(default=3e-5, metadata=bounds(ge=0))
    label_smoothing: float = field(default=0.1, metadata=bounds(ge=0, lt=1))
    bn_recal_images: int = field(default=2000, metadata=bounds(ge=1))
    eval_images: int = field(default=2000, metadata=bounds(ge=1))
    eval_batch_size: int = field(default=500, metadata=bounds(ge=1))

    def __post_init__(self) -> None:
        check(self, "optim")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs. ``schedule: no_ps`` / ``sandwich`` replace the stages by
    that one-stage baseline (see :func:`no_ps_schedule`, :func:`sandwich_schedule`),
    ``schedule: scratch`` by ``arch`` trained alone (see :func:`scratch_schedule`); ``teacher``
    is an optional checkpoint path used for KD instead of this run's own ``full`` stage.
    ``budget`` (subnet passes) or ``match_budget`` (another run's folder, whose planned subnet
    passes are matched) give a one-stage schedule an exact compute budget instead of epochs."""

    space: str | dict[str, Any]
    stages: tuple[Stage, ...]
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: str = "ps"
    seed: int = 0
    teacher: str | None = None
    arch: ArchConfig | None = None
    budget: int | None = None
    match_budget: str | None = None

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; allowed: {list(SCHEDULES)}")
        if self.budget is not None and (
            isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1
        ):
            raise ConfigError(
                f"budget must be a positive number of subnet passes, got {self.budget!r}"
            )
        if self.budget is not None and self.match_budget is not None:
            raise ConfigError(
                "give either budget (subnet passes) or match_budget (a run), not both"
            )
        if self.match_budget is not None and not isinstance(self.match_budget, str):
            raise ConfigError(f"match_budget must be a run folder, got {self.match_budget!r}")
        if (self.arch is not None) != (self.schedule == "scratch"):
            raise ConfigError(
                "schedule: scratch needs 'arch' (the architecture to train alone), and 'arch' "
                "is only used by schedule: scratch"
            )
        validate_stages(self.stages, self.space_spec())
        if self.arch is not None:
            validate_stages(self.schedule_stages(), self.space_spec())

    def space_spec(self) -> SpaceSpec:
        if isinstance(self.space, Mapping):
            return SpaceSpec.from_dict(self.space)
        return get_space(self.space)

    def schedule_stages(self) -> tuple[Stage, ...]:
        """The stages this run trains: the configured ones, their no-PS baseline, or the
        from-scratch training of ``arch``."""
        if self.schedule == "scratch":
            assert self.arch is not None
            stages = scratch_schedule(self.stages, self.arch)
        elif self.schedule == "no_ps":
            stages = no_ps_schedule(self.stages)
        elif self.schedule == "sandwich":
            stages = sandwich_schedule(self.stages)
        else:
            stages = self.stages
        if self.match_budget is not None and len(stages) != 1:
            with_budget(stages, 1)  # the one-stage error
        return stages if self.budget is None else with_budget(stages, self.budget)

    def stage_names(self) -> list[str]:
        return [s.name for s in self.schedule_stages()]

    def to_dict(self) -> dict[str, Any]:
        data = {
            "space": self.space,
            "schedule": self.schedule,
            "seed": self.seed,
            "teacher": self.teacher,
            "data": dataclasses.asdict(self.data),
            "optim": dataclasses.asdict(self.optim),
            "stages": [s.to_dict() for s in self.stages],
        }
        if self.arch is not None:
            data["arch"] = self.arch.to_dict()
        for key in ("budget", "match_budget"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


TOP_KEYS = (
    "space", "stages", "data", "optim", "schedule", "seed", "teacher", "arch", "budget",
    "match_budget",
)  # fmt: skip


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from a mapping (a parsed YAML file), strictly validated."""
    if not isinstance(data, Mapping):
        raise ConfigError("a training config must be a mapping with keys " + ", ".join(TOP_KEYS))
    _check_keys("config", data, TOP_KEYS)
    if "space" not in data or "stages" not in data:
        raise ConfigError("a training config needs 'space' and 'stages'")
    if not isinstance(data["stages"], list):
        raise ConfigError("'stages' must be a list of stage mappings")
    return TrainConfig(
        space=data["space"],
        stages=tuple(stage_from_dict(s) for s in data["stages"]),
        data=_section(DataConfig, "data", data.get("data") or {}),
        optim=_section(OptimConfig, "optim", data.get("optim") or {}),
        schedule=data.get("schedule", "ps"),
        seed=int(data.get("seed", 0)),
        teacher=data.get("teacher"),
        arch=_arch(data.get("arch")),
        budget=data.get("budget"),
        match_budget=data.get("match_budget"),
    )


def _arch(value: Any) -> ArchConfig | None:
    if value is None or isinstance(value, ArchConfig):
        return value
    try:
        return ArchConfig.from_dict(value)
    except ValueError as exc:
        raise ConfigError(f"'arch': {exc}") from exc


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a YAML training config; ``overrides`` that are not ``None`` replace top-level keys
    (e.g. ``schedule``, ``arch``)."""
    data = read_yaml_file(path, "training config")
    return config_from_dict({**data, **{k: v for k, v in overrides.items() if v is not None}})


def _check_keys(where: str, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {list(allowed)}")


def _section(cls: type, name: str, data: Mapping[str, Any]) -> Any:
    return from_mapping(cls, data, name)  # keys, types and limits checked (typed_config)

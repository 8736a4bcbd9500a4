"""Training schedules as data: a list of :class:`Stage` records, not ``if phase == ...`` blocks.

Every stage is named after a template (:data:`STAGE_TEMPLATES`) that fixes its defaults: which
elastic dimensions it samples, which *sampler* draws a step's subnets and which *distiller*
gives their soft targets (see :mod:`ofabench.training.strategy`), how many subnets per step,
and whether channels are sorted before it starts. A config overrides any of those per stage.

Schedules: OFA's progressive shrinking ``full → kernel → depth_1 → depth_2 → expand_1 →
expand_2``; ``no_ps``, every elastic dimension on from the start (OFA's baseline); ``sandwich``,
every dimension elastic from the start with the sandwich sampler and in-place distillation
(BigNAS); ``scratch``, one architecture trained alone (the ``fixed`` sampler). A new strategy is
a new template.

Choice values are lists of integers or keywords resolved against the space: ``max`` (the largest
choice only), ``all`` (every choice), ``top2`` (the two largest).

A stage trains ``epochs`` epochs, or exactly ``subnet_passes`` subnet forward+backward image
passes when that is set (a compute-matched baseline; see :mod:`ofabench.training.budget`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..space import ArchConfig, SpaceSpec
from .strategy import distiller_class, sampler_class

ChoiceSpec = str | tuple[int, ...]
CHOICE_KEYWORDS = ("max", "all", "top2")

# name -> defaults; OFA's subnets per step are 1, 2, 2, 4, 4 for kernel .. expand_2.
_OFA = {"sampler": "uniform", "distill": "teacher"}
STAGE_TEMPLATES: dict[str, dict[str, Any]] = {
    "full": {
        "kernel": "max",
        "depth": "max",
        "expand": "max",
        "subnets_per_step": 1,
        "kd_weight": 0.0,
        "sampler": "uniform",
        "distill": "none",
    },
    "kernel": {**_OFA, "kernel": "all", "depth": "max", "expand": "max", "subnets_per_step": 1},
    "depth_1": {**_OFA, "kernel": "all", "depth": "top2", "expand": "max", "subnets_per_step": 2},
    "depth_2": {**_OFA, "kernel": "all", "depth": "all", "expand": "max", "subnets_per_step": 2},
    "expand_1": {
        **_OFA,
        "kernel": "all",
        "depth": "all",
        "expand": "top2",
        "subnets_per_step": 4,
        "sort_channels": True,
        "protect_expands": (),
    },
    "expand_2": {
        **_OFA,
        "kernel": "all",
        "depth": "all",
        "expand": "all",
        "subnets_per_step": 4,
        "sort_channels": True,
        "protect_expands": "previous",
    },
    "no_ps": {
        "kernel": "all",
        "depth": "all",
        "expand": "all",
        "subnets_per_step": 4,
        "kd_weight": 0.0,
        "sampler": "uniform",
        "distill": "none",
    },
    "sandwich": {
        "kernel": "all",
        "depth": "all",
        "expand": "all",
        "subnets_per_step": 4,
        "kd_weight": 1.0,
        "sampler": "sandwich",
        "distill": "inplace",
    },
    "scratch": {"subnets_per_step": 1, "kd_weight": 0.0, "sampler": "fixed", "distill": "none"},
}
PS_ORDER = ("full", "kernel", "depth_1", "depth_2", "expand_1", "expand_2")


@dataclass(frozen=True)
class Stage:
    """One phase of training. ``epochs`` include ``warmup_epochs``; ``sampler`` and ``distill``
    name the stage's strategy (:mod:`ofabench.training.strategy`); ``kd_weight`` scales the
    soft-target loss; ``protect_expands`` are the expand ratios whose channels
    :meth:`OFAMobileNetV3.sort_channels` keeps in place. ``arch`` is the architecture of a
    ``fixed`` sampler (trained alone as a static network). ``subnet_passes``, when set, replaces
    ``epochs`` by an exact budget of subnet forward+backward image passes."""

    name: str
    epochs: int
    lr: float
    warmup_epochs: int = 0
    subnets_per_step: int = 1
    kd_weight: float = 1.0
    sampler: str = "uniform"
    distill: str = "teacher"
    kernel: ChoiceSpec = "all"
    depth: ChoiceSpec = "all"
    expand: ChoiceSpec = "all"
    resolutions: ChoiceSpec = "all"
    sort_channels: bool = False
    protect_expands: ChoiceSpec = ()
    arch: ArchConfig | None = None
    subnet_passes: int | None = None

    def __post_init__(self) -> None:
        _check_int(self.name, "epochs", self.epochs, 1)
        _check_int(self.name, "warmup_epochs", self.warmup_epochs, 0)
        _check_int(self.name, "subnets_per_step", self.subnets_per_step, 1)
        if self.subnet_passes is not None:
            _check_int(self.name, "subnet_passes", self.subnet_passes, 1)
        for key in ("lr", "kd_weight"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"stage {self.name!r}: {key} must be a number, got {value!r}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(
                f"stage {self.name!r}: warmup_epochs must be in 0..{self.epochs - 1}, "
                f"got {self.warmup_epochs}"
            )
        if self.lr <= 0 or self.kd_weight < 0:
            raise ConfigError(f"stage {self.name!r}: lr must be > 0 and kd_weight >= 0")
        self._check_strategy()

    def _check_strategy(self) -> None:
        sampler = sampler_class(self.sampler)
        distiller = distiller_class(self.distill)
        if (self.arch is None) != (self.sampler != "fixed"):
            raise ConfigError(
                f"stage {self.name!r}: only a stage with sampler 'fixed' takes an arch, "
                "and it needs one"
            )
        if self.subnets_per_step < sampler.min_subnets:
            raise ConfigError(
                f"stage {self.name!r}: sampler {self.sampler!r} needs at least "
                f"{sampler.min_subnets} subnets per step, got {self.subnets_per_step}"
            )
        if distiller.needs_largest_first and not (
            sampler.largest_first and self.subnets_per_step >= 2
        ):
            raise ConfigError(
                f"stage {self.name!r}: distill {self.distill!r} needs a sampler that trains the "
                "largest subnet first and at least 2 subnets per step (sampler: sandwich)"
            )

    @property
    def file_stem(self) -> str:
        """The name of this stage's files: its name, or ``<name>_<arch hash>`` for a fixed arch."""
        return self.name if self.arch is None else f"{self.name}_{arch_hash(self.arch)}"

    @property
    def distills(self) -> bool:
        """Whether the stage adds a soft-target loss (a distiller and a positive weight)."""
        return self.distill != "none" and self.kd_weight > 0

    def subspace(self, space: SpaceSpec) -> SpaceSpec:
        """The part of ``space`` this stage samples from (ConfigError if a choice is not in it);
        for a fixed arch, the space at the arch's resolution (the arch must be in it)."""
        if self.arch is not None:
            try:
                space.validate(self.arch)
            except ValueError as exc:
                raise ConfigError(f"stage {self.name!r}: {exc}") from exc
            return space.restrict(resolutions=(self.arch.r,))
        from ..families import family_of

        if (self.kernel, self.depth, self.expand) != ("all", "all", "all") or self.sort_channels:
            try:
                family_of(space).require("shrinking")
            except ConfigError as exc:
                raise ConfigError(f"stage {self.name!r}: {exc}") from exc
        try:
            return space.restrict(
                kernel_choices=resolve_choices(self.kernel, space.kernel_choices),
                expand_choices=resolve_choices(self.expand, space.expand_choices),
                depth_choices=resolve_choices(self.depth, space.depth_choices),
                resolutions=resolve_choices(self.resolutions, space.resolutions),
            )
        except ConfigError as exc:
            raise ConfigError(f"stage {self.name!r}: {exc}") from exc

    def make_sampler(self, space: SpaceSpec) -> Any:
        """This stage's :class:`~ofabench.training.strategy.SubnetSampler` over its subspace."""
        return sampler_class(self.sampler)(self.subspace(space), self.arch)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("arch", "subnet_passes"):
            if data[key] is None:
                data.pop(key)
        if self.arch is not None:
            data["arch"] = self.arch.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _check_int(stage: str, key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"stage {stage!r}: {key} must be an integer >= {minimum}, got {value!r}")


def arch_hash(arch: ArchConfig) -> str:
    """A short stable hash of an architecture (names a from-scratch run's files)."""
    return hashlib.sha256(arch.to_json().encode()).hexdigest()[:10]


STAGE_KEYS = tuple(f.name for f in dataclasses.fields(Stage))


def resolve_choices(spec: ChoiceSpec, allowed: Sequence[int]) -> tuple[int, ...]:
    """A choice keyword or list as concrete values (sorted); lists are checked by the caller."""
    ordered = sorted(allowed)
    if spec == "max":
        return (ordered[-1],)
    if spec == "all":
        return tuple(ordered)
    if spec == "top2":
        return tuple(ordered[-2:])
    return tuple(sorted(spec))


def stage_from_dict(data: Mapping[str, Any]) -> Stage:
    """A stage from its config mapping, over its template's defaults (strict keys and names)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a stage must be a mapping with a name, got {data!r}")
    name = data.get("name")
    if name not in STAGE_TEMPLATES:
        raise ConfigError(f"unknown stage name {name!r}; valid stages: {list(STAGE_TEMPLATES)}")
    unknown = sorted(set(data) - set(STAGE_KEYS))
    if unknown:
        raise ConfigError(
            f"stage {name!r}: unknown key(s) {unknown}; valid keys: {list(STAGE_KEYS)}"
        )
    missing = [k for k in ("epochs", "lr") if k not in data]
    if missing:
        raise ConfigError(f"stage {name!r}: missing key(s) {missing}")
    values = {**STAGE_TEMPLATES[name], **data}
    for key in ("kernel", "depth", "expand", "resolutions", "protect_expands"):
        values[key] = _choice_spec(
            name, key, values.get(key, "all" if key != "protect_expands" else ())
        )
    if values.get("arch") is not None:
        values["arch"] = _stage_arch(name, values["arch"])
    try:
        return Stage(**values)
    except TypeError as exc:
        raise ConfigError(f"stage {name!r}: {exc}") from exc


def _stage_arch(stage: str, value: Any) -> ArchConfig:
    if isinstance(value, ArchConfig):
        return value
    try:
        return ArchConfig.from_dict(value)
    except ValueError as exc:
        raise ConfigError(f"stage {stage!r}: arch: {exc}") from exc


def _choice_spec(stage: str, key: str, value: Any) -> ChoiceSpec:
    if isinstance(value, str):
        allowed = CHOICE_KEYWORDS + (("previous",) if key == "protect_expands" else ())
        if value not in allowed:
            raise ConfigError(
                f"stage {stage!r}: {key} {value!r} is not a list of integers or one of {list(allowed)}"
            )
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, Sequence) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        if not value and key != "protect_expands":
            raise ConfigError(f"stage {stage!r}: {key} must list at least one value")
        return tuple(int(v) for v in value)
    raise ConfigError(f"stage {stage!r}: {key} must be a list of integers, got {value!r}")


def protected_expands(stages: Sequence[Stage], index: int, space: SpaceSpec) -> tuple[int, ...]:
    """The expand ratios stage ``index`` keeps in place when it sorts channels: ``previous`` means
    the choices of the last earlier stage with elastic expand, without the largest (a no-op)."""
    spec = stages[index].protect_expands
    if spec != "previous":
        values = resolve_choices(spec, space.expand_choices) if spec else ()
        if values:
            space.restrict(expand_choices=values)  # ConfigError if not in the space
        return values
    for earlier in reversed(stages[:index]):
        choices = resolve_choices(earlier.expand, space.expand_choices)
        if len(choices) > 1:
            return tuple(v for v in choices if v != max(space.expand_choices))
    return ()


def validate_stages(stages: Sequence[Stage], space: SpaceSpec) -> None:
    """Check a schedule against a space: unique names, every choice in the space."""
    names = [s.name for s in stages]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"stage names must be unique; repeated: {duplicates}")
    if not stages:
        raise ConfigError(
            f"a schedule needs at least one stage; valid stages: {list(STAGE_TEMPLATES)}"
        )
    if len(stages) > 1 and any(s.arch is not None for s in stages):
        raise ConfigError(
            "a stage with a fixed arch trains one static network and must be the only stage; "
            "use schedule: scratch (or --scratch-arch) to derive it from a PS schedule"
        )
    for i, stage in enumerate(stages):
        stage.subspace(space)
        try:
            protected_expands(stages, i, space)
        except ConfigError as exc:
            raise ConfigError(f"stage {stage.name!r}: protect_expands: {exc}") from exc


def _elastic_baseline(name: str, stages: Sequence[Stage]) -> tuple[Stage, ...]:
    """A one-stage baseline of a PS schedule with every elastic dimension on from the start: the
    same total epochs, the first stage's lr and warm-up, the most subnets per step."""
    first = stages[0]
    return (
        stage_from_dict(
            {
                "name": name,
                "epochs": sum(s.epochs for s in stages),
                "lr": first.lr,
                "warmup_epochs": first.warmup_epochs,
                "subnets_per_step": max(2, max(s.subnets_per_step for s in stages)),
            }
        ),
    )


def no_ps_schedule(stages: Sequence[Stage]) -> tuple[Stage, ...]:
    """OFA's "no PS" baseline: every elastic dimension at once, uniform subnets, no KD."""
    return _elastic_baseline("no_ps", stages)


def sandwich_schedule(stages: Sequence[Stage]) -> tuple[Stage, ...]:
    """BigNAS's recipe: every elastic dimension at once, the sandwich sampler (largest, smallest,
    random), in-place distillation from the step's largest subnet."""
    return _elastic_baseline("sandwich", stages)


def scratch_schedule(stages: Sequence[Stage], arch: ArchConfig) -> tuple[Stage, ...]:
    """The from-scratch baseline: ``arch`` trained alone as a static network, no KD, at
    ``arch.r``, with the training the full network gets (the first stage's epochs, lr and
    warm-up) — the usual single-network budget."""
    first = stages[0]
    return (
        stage_from_dict(
            {
                "name": "scratch",
                "epochs": first.epochs,
                "lr": first.lr,
                "warmup_epochs": first.warmup_epochs,
                "arch": arch,
            }
        ),
    )

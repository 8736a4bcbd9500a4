"""Training strategies as data: which subnets a step trains (a *sampler*) and where their soft
targets come from (a *distiller*).

A stage of a schedule names one of each (see :mod:`ofabench.training.stages`):

samplers
    ``uniform``  every subnet drawn uniformly from the stage's subspace (OFA);
    ``sandwich`` the largest and the smallest subnet of the subspace, then random ones (BigNAS);
    ``fixed``    one given architecture, trained alone as a static network (from scratch).
distillers
    ``none``     hard labels only;
    ``teacher``  soft targets from a frozen, trained full network (OFA's KD; one extra forward
                 pass of the teacher per step, shared by the step's subnets);
    ``inplace``  the step's first subnet (the largest, under ``sandwich``) is trained on the
                 labels and its detached softmax teaches the others (BigNAS); no extra pass.

Each is a small class registered by name; the trainer only calls their methods, so a new
strategy is a new template (a sampler and a distiller by name), not a trainer edit.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..registry import Registry, RegistryMessages
from ..space import ArchConfig, SpaceSpec


# -- samplers ----------------------------------------------------------------------------------
class SubnetSampler(ABC):
    """Draws one step's resolution and subnets from a stage's subspace. ``min_subnets`` is the
    fewest subnets per step it can fill; ``static_arch`` is the one architecture a ``fixed``
    sampler trains (then the trainer builds a static network instead of the supernet)."""

    name: ClassVar[str]
    min_subnets: ClassVar[int] = 1
    largest_first: ClassVar[bool] = False  # is a step's first subnet the subspace's largest?

    def __init__(self, subspace: SpaceSpec, arch: ArchConfig | None = None) -> None:
        self.subspace = subspace

    @property
    def static_arch(self) -> ArchConfig | None:
        return None

    def draw(self, rng: np.random.Generator, n: int) -> tuple[int, list[ArchConfig]]:
        """The step's resolution and its ``n`` subnets (all at that resolution), drawn in this
        order from ``rng`` (resolution first) so that a resumed run repeats them."""
        resolution = int(rng.choice(self.subspace.resolutions))
        archs = self.archs(rng, n)
        return resolution, [dataclasses.replace(a, r=resolution) for a in archs]

    @abstractmethod
    def archs(self, rng: np.random.Generator, n: int) -> list[ArchConfig]:
        """``n`` subnets of the subspace (their resolution is replaced by the step's)."""


class UniformSampler(SubnetSampler):
    name = "uniform"

    def archs(self, rng: np.random.Generator, n: int) -> list[ArchConfig]:
        return [self.subspace.sample(rng) for _ in range(n)]


class SandwichSampler(SubnetSampler):
    """Largest, smallest, then ``n - 2`` uniform subnets (BigNAS's sandwich rule)."""

    name = "sandwich"
    min_subnets = 2
    largest_first = True

    def archs(self, rng: np.random.Generator, n: int) -> list[ArchConfig]:
        extremes = [self.subspace.max_arch(), self.subspace.min_arch()]
        return extremes + [self.subspace.sample(rng) for _ in range(n - 2)]


class FixedSampler(SubnetSampler):
    """One architecture, every step, at its own resolution (the from-scratch baseline)."""

    name = "fixed"

    def __init__(self, subspace: SpaceSpec, arch: ArchConfig | None = None) -> None:
        if arch is None:
            raise ConfigError("sampler 'fixed' needs an arch (the architecture to train alone)")
        super().__init__(subspace)
        self.arch = arch

    @property
    def static_arch(self) -> ArchConfig:
        return self.arch

    def draw(self, rng: np.random.Generator, n: int) -> tuple[int, list[ArchConfig]]:
        return self.arch.r, self.archs(rng, n)

    def archs(self, rng: np.random.Generator, n: int) -> list[ArchConfig]:
        return [self.arch] * n


# -- distillers --------------------------------------------------------------------------------
def soft_target_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Cross entropy against a probability distribution (a teacher's softmax), batch mean."""
    return -(soft_targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


TeacherFactory = Callable[[], torch.nn.Module]


class Distiller:
    """Adds a soft-target term to each subnet's loss within one step. The trainer calls
    :meth:`begin_step` with the step's images, then :meth:`loss` for each subnet in order.
    ``teacher_images`` counts the images an extra network forward pass has seen."""

    name: ClassVar[str]
    needs_teacher: ClassVar[bool] = False
    needs_largest_first: ClassVar[bool] = False

    def __init__(self, weight: float, teacher: torch.nn.Module | None = None) -> None:
        self.weight = weight
        self.teacher = teacher
        self.teacher_images = 0

    def begin_step(self, images: torch.Tensor) -> None:
        """Called once per step before the first subnet."""

    def loss(self, index: int, logits: torch.Tensor, hard_loss: torch.Tensor) -> torch.Tensor:
        """The loss of the step's ``index``-th subnet from its logits and its hard-label loss."""
        return hard_loss


class NoDistillation(Distiller):
    """Hard labels only (the base behaviour)."""

    name = "none"


class TeacherDistillation(Distiller):
    """OFA's KD: the frozen teacher's softmax on the step's images, computed once per step."""

    name = "teacher"
    needs_teacher = True

    def begin_step(self, images: torch.Tensor) -> None:
        assert self.teacher is not None
        with torch.no_grad():
            self._soft = F.softmax(self.teacher(images), dim=1)
        self.teacher_images += len(images)

    def loss(self, index: int, logits: torch.Tensor, hard_loss: torch.Tensor) -> torch.Tensor:
        return hard_loss + self.weight * soft_target_cross_entropy(logits, self._soft)


class InplaceDistillation(Distiller):
    """BigNAS's in-place distillation: subnet 0 learns from the labels; its detached softmax is
    the soft target of the step's other subnets. Needs a sampler that trains the largest subnet
    first (``sandwich``)."""

    name = "inplace"
    needs_largest_first = True

    def begin_step(self, images: torch.Tensor) -> None:
        self._soft: torch.Tensor | None = None

    def loss(self, index: int, logits: torch.Tensor, hard_loss: torch.Tensor) -> torch.Tensor:
        if index == 0:
            self._soft = F.softmax(logits.detach(), dim=1)
            return hard_loss
        assert self._soft is not None
        return hard_loss + self.weight * soft_target_cross_entropy(logits, self._soft)


# -- registries ---------------------------------------------------------------------------------
_TAKEN = "a {kind} named {name!r} is already registered"
SAMPLERS: Registry[SubnetSampler] = Registry(
    "sampler",
    SubnetSampler,
    messages=RegistryMessages(
        unknown="unknown sampler {name!r}; valid samplers: {valid}", taken=_TAKEN
    ),
)
DISTILLERS: Registry[Distiller] = Registry(
    "distiller",
    Distiller,
    messages=RegistryMessages(
        unknown="unknown distillation {name!r}; valid modes: {valid}", taken=_TAKEN
    ),
)


def register_sampler(cls: type[SubnetSampler]) -> type[SubnetSampler]:
    """Register a sampler class under its ``name`` (a name another class holds is refused)."""
    return SAMPLERS.register(cls)


def register_distiller(cls: type[Distiller]) -> type[Distiller]:
    """Register a distiller class under its ``name`` (a name another class holds is refused)."""
    return DISTILLERS.register(cls)


for _cls in (UniformSampler, SandwichSampler, FixedSampler):
    register_sampler(_cls)
for _cls in (NoDistillation, TeacherDistillation, InplaceDistillation):
    register_distiller(_cls)


def sampler_class(name: str) -> type[SubnetSampler]:
    return SAMPLERS.get(name)


def distiller_class(name: str) -> type[Distiller]:
    return DISTILLERS.get(name)

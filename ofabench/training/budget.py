"""Compute accounting and compute-matched baselines.

The unit of training compute is the *subnet pass*: one image through one subnet, forward and
backward. A step of a stage with ``n`` subnets per step and a global batch of ``B`` images costs
``n * B`` subnet passes (plus ``B`` teacher forward passes when it distils from a teacher).

A baseline can be given a budget in subnet passes, or the budget of another run ("match run
X"): its one stage then trains exactly that many passes — whole steps of ``n`` subnets, and a
last step with fewer subnets if the budget is not a multiple of ``n * B``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ConfigError
from .stages import Stage


@dataclass(frozen=True)
class StagePlan:
    """How a stage spends its budget: ``steps`` optimizer steps of ``subnets_per_step`` subnets,
    the last of which trains ``last_step_subnets``; ``epochs`` data epochs (the last possibly
    partial) of ``steps_per_epoch`` steps."""

    steps: int
    steps_per_epoch: int
    subnets_per_step: int
    last_step_subnets: int
    batch_size: int

    @property
    def epochs(self) -> int:
        return -(-self.steps // self.steps_per_epoch)

    def subnets_at(self, step: int) -> int:
        """Subnets trained at global step ``step`` (0-based) of the stage."""
        return self.last_step_subnets if step == self.steps - 1 else self.subnets_per_step

    def passes_until(self, steps_done: int) -> int:
        """Subnet passes of the first ``steps_done`` steps."""
        full = min(steps_done, self.steps - 1) * self.subnets_per_step
        last = self.last_step_subnets if steps_done >= self.steps else 0
        return (full + last) * self.batch_size

    @property
    def subnet_passes(self) -> int:
        return self.passes_until(self.steps)


def plan_stage(stage: Stage, n_train: int, batch_size: int) -> StagePlan:
    """The plan of ``stage`` on ``n_train`` training images at a global ``batch_size``."""
    steps_per_epoch = n_train // batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"the training split ({n_train} images) is smaller than one batch")
    n = stage.subnets_per_step
    if stage.subnet_passes is None:
        steps = stage.epochs * steps_per_epoch
        return StagePlan(steps, steps_per_epoch, n, n, batch_size)
    if stage.subnet_passes % batch_size:
        raise ConfigError(
            f"stage {stage.name!r}: a budget of {stage.subnet_passes} subnet passes is not a "
            f"multiple of the batch size {batch_size}"
        )
    batches = stage.subnet_passes // batch_size
    steps, remainder = divmod(batches, n)
    if remainder:
        return StagePlan(steps + 1, steps_per_epoch, n, remainder, batch_size)
    return StagePlan(steps, steps_per_epoch, n, n, batch_size)


def planned_passes(stages: Sequence[Stage], n_train: int, batch_size: int) -> int:
    """Total subnet passes a schedule plans to train."""
    return sum(plan_stage(s, n_train, batch_size).subnet_passes for s in stages)


def with_budget(stages: Sequence[Stage], subnet_passes: int) -> tuple[Stage, ...]:
    """A one-stage schedule given an exact budget of subnet passes."""
    if len(stages) != 1:
        raise ConfigError(
            f"a budget in subnet passes applies to one-stage schedules (no_ps, sandwich, "
            f"scratch); this schedule has {len(stages)} stages"
        )
    return (dataclasses.replace(stages[0], subnet_passes=subnet_passes),)


def reference_passes(run_dir: str | Path, space_fingerprint: str, data: dict, n_train: int) -> int:
    """The subnet passes the run in ``run_dir`` plans (from its ``config.yaml``), checked to be
    a run of the same space and data (ConfigError otherwise)."""
    from .config import config_from_dict

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(
            f"the run to match, {run_dir}, has no config.yaml; start that run first "
            "(its budget is read from its config)"
        )
    try:
        reference = config_from_dict(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the run to match, {path}: {exc}") from exc
    if reference.space_spec().fingerprint() != space_fingerprint:
        raise ConfigError(
            f"the run to match, {run_dir}, trains space {reference.space_spec().name!r}, "
            "another space than this run's"
        )
    if dataclasses.asdict(reference.data) != data:
        raise ConfigError(
            f"the run to match, {run_dir}, trains on other data ({dataclasses.asdict(reference.data)}); "
            "a budget is only comparable on the same data"
        )
    return planned_passes(reference.schedule_stages(), n_train, reference.optim.batch_size)

"""The progressive-shrinking trainer: stages run in order, each starting from the previous one's
checkpoint, with KD from the trained full network, cosine LR with warm-up and exact resume.

Output folder layout::

    config.yaml            the resolved config (a resumed run must match it)
    metrics.csv            one row per epoch (rewritten atomically from the checkpoint's history)
    <stage>.pt             the supernet after each finished stage (``load_supernet`` reads it)
    <stage>.state.pt       the in-progress state of a stage, written after every epoch and every
                           ``checkpoint_minutes`` within one (model, optimizer, scheduler, epoch,
                           step within the epoch, RNG states, stage, config, metrics history)

A stage whose sampler is ``fixed`` (``schedule: scratch``) trains one static network instead;
its files are named ``scratch_<arch hash>`` (``.pt``, ``.state.pt``) plus
``scratch_<arch hash>.json`` with the final validation and test accuracy.

Each stage's sampler draws a step's subnets and its distiller adds their soft-target loss (see
:mod:`ofabench.training.strategy`); the trainer has no per-strategy branches. Compute is
accounted per epoch in ``metrics.csv`` and per stage in the checkpoints (``compute``): subnet
forward+backward image passes, teacher forward passes and wall time (see
:mod:`ofabench.training.budget`).

Networks train in ``channels_last`` memory format (1.3-1.6x faster convolutions on CPU than NCHW,
same arithmetic); checkpoints load into NCHW networks as usual.

Every random choice of a step (batch order, augmentation, resolution, subnets) is drawn from a
generator seeded by ``(seed, stage, epoch, step)``, so a run resumed after a kill repeats exactly
the schedule of an uninterrupted one, and every rank of a distributed run samples the same subnets.
A kill loses at most ``checkpoint_minutes`` of training: the state written within an epoch records
the step reached, the epoch's running sums and the torch RNG, and the resumed run skips the batches
already seen (the batch order is a function of the seed) and ends with the same weights. With a
``stop`` callable (``ofabench train`` passes a :class:`~.stopping.StopSignal`), a SIGTERM or
SIGINT loses only the step in progress: the trainer saves the state after it and raises
:class:`~.stopping.TrainingStopped`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..latency.counting import count_macs, count_params
from ..provenance import atomic_open, provenance, write_json
from ..space import SpaceSpec
from ..supernet import OFAMobileNetV3, build_supernet
from ..supernet.checkpoint import FORMAT as SUPERNET_FORMAT
from ..supernet.checkpoint import load_supernet, save_supernet
from .budget import StagePlan, plan_stage, reference_passes, with_budget
from .config import TrainConfig
from .data import (
    Dataset,
    augment_batch,
    batches_per_epoch,
    iterate_batches,
    load_dataset,
    resize_batch,
)
from .distributed import (
    DistContext,
    allreduce_gradients,
    assert_in_sync,
    barrier,
    broadcast_state,
    max_rank,
)
from .evaluate import SubnetEvaluator, channels_last, evaluate_static
from .scratch import (
    build_static_network,
    is_static_checkpoint,
    load_static_network,
    read_checkpoint,
    save_static_network,
)
from .stages import Stage, protected_expands
from .stopping import TrainingStopped
from .strategy import Distiller, NoDistillation, distiller_class, soft_target_cross_entropy

log = logging.getLogger("ofabench")
STATE_FORMAT = "ofabench.train_state"
DEFAULT_CHECKPOINT_MINUTES = 10.0  # a kill loses at most this much training
METRIC_FIELDS = (
    "stage",
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "val_acc_max",
    "val_acc_min",
    "images_per_s",
    "seconds",
    "subnet_passes",
    "teacher_passes",
)
__all__ = ["Trainer", "soft_target_cross_entropy", "train"]


# -- pieces ------------------------------------------------------------------------------------
def cosine_lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1 over ``warmup_steps``, then a cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


def parameter_groups(net: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only; none on BN parameters and biases (1-d tensors)."""
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def step_rng(seed: int, stage_index: int, epoch: int, step: int) -> np.random.Generator:
    """The generator of one step's resolution and subnets: identical on every rank and on resume."""
    return np.random.default_rng([seed, stage_index, epoch, step])


def derived_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (for torch generators)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> np.uint64(1))


# -- the trainer -------------------------------------------------------------------------------
class Trainer:
    """Runs a :class:`TrainConfig`'s stages into ``out_dir``. ``progress`` draws a tqdm bar (the
    CLI sets it; the library itself only logs). ``dataset`` overrides loading the configured one."""

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | Path,
        dataset: Dataset | None = None,
        progress: bool = False,
        dist: DistContext | None = None,
        checkpoint_minutes: float = DEFAULT_CHECKPOINT_MINUTES,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        if not checkpoint_minutes >= 0:
            raise ConfigError(f"checkpoint_minutes must be >= 0, got {checkpoint_minutes}")
        self.config = config
        self.checkpoint_seconds = 60.0 * checkpoint_minutes
        self.stop = stop
        self.out_dir = Path(out_dir)
        self.space: SpaceSpec = config.space_spec()
        self.stages: tuple[Stage, ...] = config.schedule_stages()
        self.progress = progress
        self.dist = dist or DistContext()
        self._dataset = dataset
        self.history: list[dict[str, Any]] = []
        self.net: nn.Module | None = None
        self._teachers: dict[tuple[Path, int], OFAMobileNetV3] = {}
        self._check_batch_size()

    # -- public ------------------------------------------------------------------------------
    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            self._dataset = load_dataset(self.config.data)
        self._check_dataset(self._dataset)
        return self._dataset

    def _stem(self, name: str) -> str:
        return next((s.file_stem for s in self.stages if s.name == name), name)

    def stage_path(self, name: str) -> Path:
        """The checkpoint of the finished stage ``name``."""
        return self.out_dir / f"{self._stem(name)}.pt"

    def state_path(self, name: str) -> Path:
        """The in-progress state of stage ``name``."""
        return self.out_dir / f"{self._stem(name)}.state.pt"

    def result_path(self, name: str) -> Path:
        """The final accuracies of a from-scratch stage."""
        return self.out_dir / f"{self._stem(name)}.json"

    def run(
        self,
        stages: Sequence[str] | None = None,
        resume: bool = False,
        stop_after_epochs: int | None = None,
    ) -> list[dict[str, Any]]:
        """Train the named stages (default: all) and return the metrics history.

        Without ``resume`` a stage that already has a checkpoint here is an error (nothing is
        overwritten); with it, finished stages are skipped and an interrupted one continues from
        its last epoch. ``stop_after_epochs`` ends the call after that many epochs (a time box;
        resume later)."""
        selected = self._select(stages)
        self._check_fresh(selected, resume)
        _ = self.dataset  # fail on a missing dataset before any checkpoint is touched
        self._resolve_budget()
        self._write_config(resume)
        budget = [stop_after_epochs if stop_after_epochs is not None else math.inf]
        for index in selected:
            if budget[0] <= 0:
                break
            self._run_stage(index, budget)
        return self.history

    def plan(self, index: int) -> StagePlan:
        """How stage ``index`` spends its budget on this run's data (steps, epochs, passes)."""
        return plan_stage(self.stages[index], len(self.dataset.train), self.config.optim.batch_size)

    def _resolve_budget(self) -> None:
        """``match_budget``: give the one stage exactly the other run's planned subnet passes."""
        if self.config.match_budget is None:
            return
        passes = reference_passes(
            self.config.match_budget,
            self.space.fingerprint(),
            dataclasses.asdict(self.config.data),
            len(self.dataset.train),
        )
        self.stages = with_budget(self.stages, passes)
        log.info("budget: %d subnet passes, matched to %s", passes, self.config.match_budget)

    # -- checks --------------------------------------------------------------------------------
    def _select(self, names: Sequence[str] | None) -> list[int]:
        valid = [s.name for s in self.stages]
        if not names:
            return list(range(len(self.stages)))
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}; this config's stages: {valid}")
        return sorted(valid.index(n) for n in names)

    def _check_fresh(self, selected: list[int], resume: bool) -> None:
        if resume:
            return
        for i in selected:
            name = self.stages[i].name
            if self.stage_path(name).exists() or self.state_path(name).exists():
                raise ConfigError(
                    f"{self.out_dir} already holds a checkpoint of stage {name!r}; "
                    "pass --resume to continue it or choose another --out"
                )

    def _check_batch_size(self) -> None:
        if self.config.optim.batch_size % self.dist.world_size:
            raise ConfigError(
                f"batch_size {self.config.optim.batch_size} must divide by the "
                f"{self.dist.world_size} processes"
            )

    def _check_dataset(self, dataset: Dataset) -> None:
        if (
            dataset.in_channels != self.space.in_channels
            or dataset.n_classes > self.space.n_classes
        ):
            raise ConfigError(
                f"dataset {dataset.name!r} has {dataset.in_channels} channel(s) and "
                f"{dataset.n_classes} classes; space {self.space.name!r} expects "
                f"{self.space.in_channels} and {self.space.n_classes}"
            )
        if batches_per_epoch(len(dataset.train), self.config.optim.batch_size) < 1:
            raise ConfigError(
                f"the training split ({len(dataset.train)} images) is smaller than one batch"
            )

    def _write_config(self, resume: bool) -> None:
        text = yaml.safe_dump(self.config.to_dict(), sort_keys=False)
        path = self.out_dir / "config.yaml"
        if path.exists() and resume and not _same_config(path, self.config):
            raise ConfigError(
                f"{path} differs from this config; resume with the config the run started with"
            )
        if self.dist.is_main:
            with atomic_open(path) as handle:
                handle.write(text)

    # -- one stage ----------------------------------------------------------------------------
    def _run_stage(self, index: int, budget: list[float]) -> None:
        stage = self.stages[index]
        final = self.stage_path(stage.name)
        if final.exists():
            self.net, self.history = self.load_stage_checkpoint(final)
            log.info("stage %s already finished (%s); skipping", stage.name, final)
            return
        run = _StageRun(self, index)
        run.train(budget)
        if run.epoch == run.plan.epochs:
            self._finish_stage(stage, run)

    def _finish_stage(self, stage: Stage, run: _StageRun) -> None:
        if not assert_in_sync(self.net, self.dist):
            raise CheckpointError(f"ranks diverged during stage {stage.name!r}")
        if self.dist.is_main:
            self._save_finished(stage)
            self.state_path(stage.name).unlink(missing_ok=True)
            log.info("stage %s finished: %s", stage.name, self.stage_path(stage.name))
        barrier(self.dist)

    def compute(self) -> dict[str, dict[str, float]]:
        """Compute spent so far per stage, from the metrics history: subnet passes, teacher
        forward passes, seconds of training steps."""
        out: dict[str, dict[str, float]] = {}
        for row in self.history:
            totals = out.setdefault(
                row["stage"], {"subnet_passes": 0, "teacher_passes": 0, "seconds": 0.0}
            )
            for key in totals:
                totals[key] += row.get(key) or 0
        return out

    def _save_finished(self, stage: Stage) -> None:
        extra = {
            "stage": stage.name,
            "config": self.config.to_dict(),
            "history": self.history,
            "compute": self.compute(),
        }
        path = self.stage_path(stage.name)
        if stage.arch is None:
            save_supernet(self.net, path, **extra)
            return
        save_static_network(self.net, self.space, stage.arch, path, **extra)
        write_json(self.result_path(stage.name), self.scratch_result(stage))

    def scratch_result(self, stage: Stage) -> dict[str, Any]:
        """The final record of a from-scratch stage: accuracy on the whole validation and test
        splits after BN recalibration (as ``ofabench eval`` measures subnets)."""
        assert stage.arch is not None
        optim = self.config.optim
        accs = evaluate_static(
            self.net,
            stage.arch.r,
            self.dataset,
            recal_images=optim.bn_recal_images,
            batch_size=optim.eval_batch_size,
        )
        return {
            "space": self.space.name,
            "fingerprint": self.space.fingerprint(),
            "arch": stage.arch.to_dict(),
            "dataset": self.dataset.name,
            "epochs": stage.epochs,
            "compute": self.compute().get(stage.name, {}),
            "recal_images": min(optim.bn_recal_images, len(self.dataset.train)),
            **accs,
            "macs": count_macs(self.space, stage.arch),
            "params": count_params(self.space, stage.arch),
            "checkpoint": self.stage_path(stage.name).name,
            "provenance": provenance(seed=self.config.seed),
        }

    def load_stage_checkpoint(self, path: Path) -> tuple[nn.Module, list[dict[str, Any]]]:
        """A finished stage's network (supernet or static) and the metrics history in it, read
        from one load of the file."""
        payload = read_checkpoint(path)
        history = [_with_compute(row, self) for row in payload.get("history", [])]
        if is_static_checkpoint(payload):
            return load_static_network(path, payload)[0], history
        if payload.get("format") != SUPERNET_FORMAT:
            raise CheckpointError(f"{path} is not an ofabench supernet checkpoint")
        if payload.get("fingerprint") != self.space.fingerprint():
            raise CheckpointError(
                f"{path} was written for another search space than {self.space.name!r}"
            )
        net = build_supernet(self.space)
        net.load_state_dict(payload["state_dict"])
        return net, history

    def fresh_network(self, stage: Stage) -> nn.Module:
        """An untrained network for ``stage``: the supernet, or the static network of its arch."""
        if stage.arch is not None:
            return build_static_network(self.space, stage.arch)
        return build_supernet(self.space)

    def initial_network(self, index: int) -> nn.Module:
        """The network stage ``index`` starts from: the previous stage's checkpoint (or a fresh
        seeded network for the first stage), channels sorted if the stage asks for it."""
        stage = self.stages[index]
        if index == 0:
            torch.manual_seed(self.config.seed)
            net = self.fresh_network(stage)
        else:
            previous = self.stage_path(self.stages[index - 1].name)
            if not previous.exists():
                raise ConfigError(
                    f"stage {stage.name!r} starts from {previous}, which does not "
                    f"exist; train stage {self.stages[index - 1].name!r} first"
                )
            net, self.history = self.load_stage_checkpoint(previous)
        if stage.sort_channels:
            protect = protected_expands(self.stages, index, self.space)
            log.info("stage %s: sorting channels (protecting expand %s)", stage.name, protect)
            net.sort_channels(protect)
        broadcast_state(net, self.dist)
        return net

    def distiller(self, stage: Stage) -> Distiller:
        """The stage's distiller, with the frozen teacher when it needs one."""
        if not stage.distills:
            return NoDistillation(0.0)
        cls = distiller_class(stage.distill)
        return cls(stage.kd_weight, self.teacher(stage) if cls.needs_teacher else None)

    def teacher(self, stage: Stage) -> OFAMobileNetV3:
        """The frozen full network for KD; read once per file version and shared by the stages
        that distil from it."""
        path = Path(self.config.teacher) if self.config.teacher else self.stage_path("full")
        if not path.exists():
            raise ConfigError(
                f"stage {stage.name!r} distils from {path}, which does not exist; train the "
                "'full' stage first, set 'teacher:' to a checkpoint, or set kd_weight: 0"
            )
        key = (path.resolve(), path.stat().st_mtime_ns)
        if key not in self._teachers:
            self._teachers = {key: _frozen_teacher(path, self.space)}
        return self._teachers[key]

    # -- files ---------------------------------------------------------------------------------
    def write_metrics(self) -> None:
        """Rewrite ``metrics.csv`` from the history (atomically; rank 0 only)."""
        if not self.dist.is_main:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(self.history)
        with atomic_open(self.out_dir / "metrics.csv") as handle:
            handle.write(buffer.getvalue())


class _StageRun:
    """The mutable state of one stage being trained: network, teacher, optimizer, schedule."""

    def __init__(self, trainer: Trainer, index: int) -> None:
        self.trainer = trainer
        self.index = index
        self.stage = trainer.stages[index]
        self.subspace = self.stage.subspace(trainer.space)
        self.sampler = self.stage.make_sampler(trainer.space)
        self.optim = trainer.config.optim
        self.seed = trainer.config.seed
        self.local_batch = self.optim.batch_size // trainer.dist.world_size
        self.steps_per_epoch = batches_per_epoch(
            len(trainer.dataset.train), self.local_batch, trainer.dist.world_size
        )
        self.plan = trainer.plan(index)
        assert self.plan.steps_per_epoch == self.steps_per_epoch
        self.epoch = 0
        self.partial: dict[str, Any] | None = None  # an interrupted epoch's progress
        self.last_lr = self.stage.lr
        self._build()

    def _build(self) -> None:
        trainer = self.trainer
        state_path = trainer.state_path(self.stage.name)
        resume_state = _read_state(state_path, trainer.space) if state_path.exists() else None
        if resume_state is None:
            trainer.net = trainer.initial_network(self.index)
        else:
            trainer.net = trainer.fresh_network(self.stage)
        self.net = trainer.net = channels_last(trainer.net)
        self.distiller = trainer.distiller(self.stage)
        self.optimizer = torch.optim.SGD(
            parameter_groups(self.net, self.optim.weight_decay),
            lr=self.stage.lr,
            momentum=self.optim.momentum,
            nesterov=self.optim.nesterov,
        )
        total = self.plan.steps
        warmup = min(self.stage.warmup_epochs * self.steps_per_epoch, total - 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: cosine_lr_factor(step, total, warmup)
        )
        if resume_state is not None:
            self._restore(resume_state)

    def _restore(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.trainer.history = [_with_compute(row, self.trainer) for row in state["history"]]
        torch.set_rng_state(state["rng"]["torch"])
        self.partial = state.get("partial")
        if self.partial:
            self.last_lr = float(self.partial["lr"])
            log.info(
                "stage %s: resuming epoch %d at step %d/%d",
                self.stage.name, self.epoch + 1, self.partial["step"], self.steps_per_epoch,
            )  # fmt: skip
        else:
            log.info("stage %s: resuming after epoch %d", self.stage.name, self.epoch)

    # -- loop -------------------------------------------------------------------------------------
    def train(self, budget: list[float]) -> None:
        bar = self._progress_bar()
        try:
            while self.epoch < self.plan.epochs and budget[0] > 0:
                row = self._train_epoch(bar)
                self.epoch += 1
                budget[0] -= 1
                row.update(self._validate())
                self.trainer.history.append(row)
                self._save_state()
                log.info(
                    "stage %s epoch %d/%d: loss %.4f train acc %.4f val acc max %.4f min %.4f (%.0f img/s)",
                    self.stage.name,
                    self.epoch,
                    self.plan.epochs,
                    row["train_loss"],
                    row["train_acc"],
                    row["val_acc_max"],
                    row["val_acc_min"],
                    row["images_per_s"],
                )
        finally:
            if bar is not None:
                bar.close()

    def _progress_bar(self) -> Any:
        if not (self.trainer.progress and self.trainer.dist.is_main):
            return None
        from tqdm import tqdm

        total = self.plan.steps
        return tqdm(
            total=total,
            initial=self.epoch * self.steps_per_epoch + int((self.partial or {}).get("step", 0)),
            desc=f"{self.stage.name}",
            unit="step",
            dynamic_ncols=True,
        )

    def _train_epoch(self, bar: Any) -> dict[str, Any]:
        dist = self.trainer.dist
        partial, self.partial = self.partial or {}, None
        done = int(partial.get("step", 0))
        if not done:  # a resumed epoch continues the torch RNG restored from its state
            torch.manual_seed(derived_seed(self.seed, self.index, self.epoch, dist.rank, 1))
        order = torch.Generator().manual_seed(derived_seed(self.seed, self.index, self.epoch, 0))
        batches = iterate_batches(
            self.trainer.dataset.train, self.local_batch, order, dist.rank, dist.world_size
        )
        self.net.train()
        first = self.epoch * self.steps_per_epoch
        steps = min(self.steps_per_epoch, self.plan.steps - first)
        sums = {
            key: float(partial.get(key, 0.0))
            for key in ("loss_sum", "acc_sum", "seconds", "teacher_images")
        }
        teacher_before = self.distiller.teacher_images
        seen, start, saved = done, time.perf_counter(), time.monotonic()
        for step, (images, labels) in zip(range(done, steps), itertools.islice(batches, done, None)):
            loss, acc = self._train_step(step, images, labels)
            sums["loss_sum"] += loss
            sums["acc_sum"] += acc
            seen += 1
            if bar is not None:
                bar.set_postfix(
                    loss=f"{sums['loss_sum'] / seen:.3f}", acc=f"{sums['acc_sum'] / seen:.3f}"
                )
                bar.update(1)
            save, stopping = self._save_or_stop(saved) if seen < steps else (False, False)
            if save:
                now = time.perf_counter()
                self._save_state(partial={
                    **sums,
                    "step": seen,
                    "lr": self.last_lr,
                    "seconds": sums["seconds"] + now - start,
                    "teacher_images": sums["teacher_images"]
                    + self.distiller.teacher_images - teacher_before,
                })  # fmt: skip
                saved = time.monotonic()
                if stopping:
                    raise TrainingStopped(
                        self.stage.name, self.epoch + 1, seen,
                        self.trainer.state_path(self.stage.name),
                        getattr(self.trainer.stop, "reason", None) or "request",
                    )  # fmt: skip
        seconds = sums["seconds"] + time.perf_counter() - start
        teacher = sums["teacher_images"] + self.distiller.teacher_images - teacher_before
        passes = self.plan.passes_until(first + seen) - self.plan.passes_until(first)
        return {
            "stage": self.stage.name,
            "epoch": self.epoch + 1,
            "step": first + seen,
            "lr": self.last_lr,
            "train_loss": sums["loss_sum"] / max(1, seen),
            "train_acc": sums["acc_sum"] / max(1, seen),
            "images_per_s": passes / max(seconds, 1e-9),
            "seconds": seconds,
            "subnet_passes": passes,
            "teacher_passes": int(teacher) * dist.world_size,
        }

    def _save_or_stop(self, since: float) -> tuple[bool, bool]:
        """``(save, stop)`` within an epoch: save when ``checkpoint_minutes`` have passed since
        the last save (0: after every step) or a stop was asked for (:mod:`.stopping`), which
        also ends the run. Ranks agree (one reduction of ``2 * stop + due``: any rank due saves
        all, any rank stopping stops all), so they save and stop at the same step."""
        due = time.monotonic() - since >= self.trainer.checkpoint_seconds
        stop = self.trainer.stop is not None and bool(self.trainer.stop())
        code = max_rank(2 * int(stop) + int(due), self.trainer.dist)
        return code >= 1, code >= 2

    def _train_step(
        self, step: int, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[float, float]:
        """One optimizer step: the sampler's subnets (the same images for all), each with its
        hard-label loss and the distiller's soft-target term; their gradients accumulate (OFA sums
        them), are averaged over ranks, then SGD steps."""
        dist = self.trainer.dist
        rng = step_rng(self.seed, self.index, self.epoch, step)
        n = self.plan.subnets_at(self.epoch * self.steps_per_epoch + step)
        resolution, archs = self.sampler.draw(rng, self.stage.subnets_per_step)
        archs = archs[:n]
        aug = torch.Generator().manual_seed(
            derived_seed(self.seed, self.index, self.epoch, step, dist.rank)
        )
        images = resize_batch(augment_batch(images, self.trainer.dataset.augment, aug), resolution)
        self.distiller.begin_step(images)
        self.optimizer.zero_grad(set_to_none=True)
        loss_total = acc_total = 0.0
        for i, arch in enumerate(archs):
            if self.sampler.static_arch is None:
                self.net.set_active_subnet(arch)
            logits = self.net(images)
            hard = F.cross_entropy(logits, labels, label_smoothing=self.optim.label_smoothing)
            loss = self.distiller.loss(i, logits, hard)
            loss.backward()
            loss_total += float(loss.detach())
            acc_total += float((logits.argmax(1) == labels).float().mean())
        allreduce_gradients(self.net, dist)
        self.last_lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        return loss_total / n, acc_total / n

    def _validate(self) -> dict[str, float]:
        """Validation accuracy of the stage's largest and smallest subnets (the arch itself for a
        from-scratch stage), after BN recalibration on a copy, on the first ``eval_images``
        validation images."""
        trainer = self.trainer
        if not trainer.dist.is_main:
            return {"val_acc_max": float("nan"), "val_acc_min": float("nan")}
        settings = {
            "splits": ("val",),
            "recal_images": self.optim.bn_recal_images,
            "max_images": self.optim.eval_images,
            "batch_size": self.optim.eval_batch_size,
        }
        if self.sampler.static_arch is not None:
            acc = evaluate_static(self.net, self.sampler.static_arch.r, trainer.dataset, **settings)
            out = {"val_acc_max": acc["val_acc"], "val_acc_min": acc["val_acc"]}
        else:
            evaluator = SubnetEvaluator(self.net, trainer.dataset, **settings)
            out = {
                f"val_acc_{label}": evaluator(arch)["val_acc"]
                for label, arch in (
                    ("max", self.subspace.max_arch()),
                    ("min", self.subspace.min_arch()),
                )
            }
        self.net.train()
        return out

    def _save_state(self, partial: dict[str, Any] | None = None) -> None:
        """Write the stage's state: after a whole epoch, or within one with ``partial`` (the step
        reached and the epoch's running sums)."""
        trainer = self.trainer
        if partial is None:
            broadcast_state(self.net, trainer.dist)  # one set of BN statistics across ranks
        if trainer.dist.is_main:
            state = {
                "format": STATE_FORMAT,
                "fingerprint": trainer.space.fingerprint(),
                "stage": self.stage.name,
                "stage_index": self.index,
                "epoch": self.epoch,
                "model": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": {"torch": torch.get_rng_state()},
                "config": trainer.config.to_dict(),
                "history": trainer.history,
                "partial": partial,
            }
            with atomic_open(trainer.state_path(self.stage.name), "wb") as handle:
                torch.save(state, handle)
            trainer.write_metrics()
        barrier(trainer.dist)


def _with_compute(row: dict[str, Any], trainer: Trainer) -> dict[str, Any]:
    """A metrics row of an older run without compute columns, completed from its stage's plan
    (whole epochs of ``subnets_per_step`` subnets; KD stages saw the teacher once per step)."""
    if "subnet_passes" in row:
        return row
    index = next(i for i, s in enumerate(trainer.stages) if s.name == row["stage"])
    stage, plan = trainer.stages[index], trainer.plan(index)
    images = plan.steps_per_epoch * plan.batch_size
    teacher = images if stage.distills and stage.distill == "teacher" else 0
    return {**row, "subnet_passes": images * stage.subnets_per_step, "teacher_passes": teacher}


def _same_config(path: Path, config: TrainConfig) -> bool:
    """Whether the run's saved ``config.yaml`` resolves to ``config`` (an older file without the
    fields added since reads as their defaults)."""
    from .config import config_from_dict

    try:
        saved = config_from_dict(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ConfigError):
        return False
    return saved.to_dict() == config.to_dict()


def _frozen_teacher(path: Path, space: SpaceSpec) -> OFAMobileNetV3:
    teacher = channels_last(load_supernet(path, space)).eval()
    teacher.set_active_subnet(space.max_arch())
    teacher.requires_grad_(False)
    return teacher


def _read_state(path: Path, space: SpaceSpec) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise CheckpointError(f"cannot read training state {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not an ofabench training state")
    if state.get("fingerprint") != space.fingerprint():
        raise CheckpointError(f"{path} was written for another search space than {space.name!r}")
    return state


def train(
    config: TrainConfig,
    out_dir: str | Path,
    stages: Sequence[str] | None = None,
    resume: bool = False,
    progress: bool = False,
    dist: DistContext | None = None,
) -> list[dict[str, Any]]:
    """Run ``config``'s stages into ``out_dir`` (see :class:`Trainer`); the metrics history."""
    return Trainer(config, out_dir, progress=progress, dist=dist).run(stages, resume=resume)

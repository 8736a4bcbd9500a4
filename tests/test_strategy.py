"""Training strategies as data: every sampler and distillation mode, compute accounting and
compute-matched baselines (equal subnet passes, counted by hooks on the networks)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from ofabench.cli import main
from ofabench.errors import ConfigError
from ofabench.space import get_space
from ofabench.supernet import OFAMobileNetV3
from ofabench.training import DataConfig, Trainer, config_from_dict, load_dataset
from ofabench.training.budget import plan_stage
from ofabench.training.stages import PS_ORDER, stage_from_dict
from ofabench.training.strategy import (
    InplaceDistillation,
    SandwichSampler,
    TeacherDistillation,
    UniformSampler,
    sampler_class,
    soft_target_cross_entropy,
)

from .test_training import SPACE
from .test_training import tiny_config as tiny

pytest.importorskip("sklearn")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig("digits", max_train_images=16))


class ForwardCounter:
    """Counts images through a module's forward with gradients on (training passes) and off."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.grad_images = self.nograd_images = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if torch.is_grad_enabled():
            self.grad_images += len(inputs[0])
        else:
            self.nograd_images += len(inputs[0])


def count_supernet_passes(monkeypatch: pytest.MonkeyPatch) -> list[ForwardCounter]:
    """Attach a counter to every OFAMobileNetV3 the trainer builds (student and teacher)."""
    counters: list[ForwardCounter] = []
    original = OFAMobileNetV3.__init__

    def init(self: OFAMobileNetV3, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        counters.append(ForwardCounter(self))

    monkeypatch.setattr(OFAMobileNetV3, "__init__", init)
    return counters


def metrics(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def total(rows: list[dict[str, str]], key: str) -> int:
    return sum(int(float(r[key])) for r in rows)


# -- samplers ----------------------------------------------------------------------------------
def test_uniform_sampler_draws_from_the_subspace_at_one_resolution() -> None:
    space = get_space(SPACE).restrict(kernel_choices=(3, 5), resolutions=(24, 28))
    resolution, archs = UniformSampler(space).draw(np.random.default_rng(0), 6)
    assert resolution in (24, 28) and len(archs) == 6
    assert all(a.r == resolution and set(a.ks) <= {3, 5} for a in archs)
    assert len({a.to_json() for a in archs}) > 1  # random, not one arch repeated


def test_sandwich_sampler_trains_largest_then_smallest_then_random() -> None:
    space = get_space(SPACE)
    resolution, archs = SandwichSampler(space).draw(np.random.default_rng(1), 4)
    assert archs[0] == space.max_arch().__class__(**{**space.max_arch().__dict__, "r": resolution})
    assert archs[1].ks == space.min_arch().ks and archs[1].d == space.min_arch().d
    assert archs[2] != archs[0] and archs[2] != archs[1]


def test_fixed_sampler_repeats_its_arch_at_its_resolution() -> None:
    space = get_space(SPACE)
    arch = space.sample(np.random.default_rng(3))
    resolution, archs = sampler_class("fixed")(space, arch).draw(np.random.default_rng(0), 2)
    assert resolution == arch.r and archs == [arch, arch]


# -- distillers --------------------------------------------------------------------------------
def test_inplace_distillation_teaches_from_the_first_subnets_detached_logits() -> None:
    torch.manual_seed(0)
    first = torch.randn(5, 10, requires_grad=True)
    other = torch.randn(5, 10, requires_grad=True)
    hard = torch.tensor(1.0)
    distiller = InplaceDistillation(weight=0.5)
    distiller.begin_step(torch.zeros(5, 1, 8, 8))
    assert distiller.loss(0, first, hard) is hard  # the largest learns from the labels only
    loss = distiller.loss(1, other, hard)
    expected = hard + 0.5 * soft_target_cross_entropy(other, torch.softmax(first.detach(), 1))
    assert torch.allclose(loss, expected)
    loss.backward()
    assert first.grad is None  # the soft target is detached
    assert distiller.teacher_images == 0


def test_teacher_distillation_runs_the_teacher_once_per_step() -> None:
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    counter = ForwardCounter(teacher)
    distiller = TeacherDistillation(1.0, teacher)
    distiller.begin_step(torch.randn(4, 1, 8, 8))
    logits = torch.randn(4, 10)
    for i in range(3):
        distiller.loss(i, logits, torch.tensor(0.0))
    assert counter.nograd_images == 4 and counter.grad_images == 0
    assert distiller.teacher_images == 4


# -- config ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"sampler": "biggest"}, r"unknown sampler 'biggest'; valid samplers: \['fixed', 'sandwich', 'uniform'\]"),
        ({"distill": "self"}, r"unknown distillation 'self'; valid modes: \['inplace', 'none', 'teacher'\]"),
        ({"sampler": "sandwich", "subnets_per_step": 1}, r"sandwich' needs at least 2 subnets per step"),
        ({"distill": "inplace", "subnets_per_step": 4}, r"distill 'inplace' needs a sampler that trains the largest"),
        ({"epochs": 1.5}, r"epochs must be an integer >= 1, got 1.5"),
        ({"epochs": "two"}, r"epochs must be an integer >= 1, got 'two'"),
        ({"epochs": True}, r"epochs must be an integer >= 1, got True"),
        ({"sampler": "fixed"}, r"only a stage with sampler 'fixed' takes an arch, and it needs one"),
    ],
)  # fmt: skip
def test_strategy_config_errors(stage: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        stage_from_dict({"name": "kernel", "epochs": 2, "lr": 0.1, **stage})


def test_unknown_schedule_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"allowed: \['ps', 'no_ps', 'sandwich', 'scratch'\]"):
        config_from_dict(tiny(schedule="bignas"))


def test_sandwich_schedule_is_every_dimension_with_inplace_distillation() -> None:
    (stage,) = config_from_dict(tiny(schedule="sandwich")).schedule_stages()
    assert (stage.sampler, stage.distill, stage.subnets_per_step) == ("sandwich", "inplace", 4)
    assert (stage.kernel, stage.depth, stage.expand) == ("all", "all", "all")
    assert stage.epochs == len(PS_ORDER)


def test_budget_applies_to_one_stage_schedules_only() -> None:
    with pytest.raises(ConfigError, match="applies to one-stage schedules"):
        config_from_dict(tiny(budget=64)).schedule_stages()
    with pytest.raises(ConfigError, match="either budget"):
        config_from_dict(tiny(schedule="no_ps", budget=64, match_budget="x"))


def test_a_budget_plan_spends_exactly_its_passes() -> None:
    stage = stage_from_dict(
        {"name": "no_ps", "epochs": 1, "lr": 0.1, "subnets_per_step": 4, "subnet_passes": 8 * 10}
    )
    plan = plan_stage(stage, n_train=16, batch_size=8)  # 10 batches: 2 steps of 4, one of 2
    assert (plan.steps, plan.last_step_subnets, plan.epochs) == (3, 2, 2)
    assert plan.subnet_passes == 80 and plan.passes_until(2) == 64
    bad = stage_from_dict({**stage.to_dict(), "subnet_passes": 81})
    with pytest.raises(ConfigError, match="not a multiple of the batch size 8"):
        plan_stage(bad, 16, 8)


# -- training runs -----------------------------------------------------------------------------
def run(config: dict[str, Any], out: Path, dataset: Any) -> Trainer:
    trainer = Trainer(config_from_dict(config), out, dataset=dataset)
    trainer.run()
    return trainer


def test_ps_run_records_subnet_and_teacher_passes(
    tmp_path: Path, digits: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    counters = count_supernet_passes(monkeypatch)
    trainer = run(tiny(["full", "kernel", "depth_1"]), tmp_path, digits)
    rows = metrics(tmp_path)
    # full: 2 steps x 8 images x 1 subnet; kernel: x 1; depth_1: x 2 subnets per step
    assert [int(r["subnet_passes"]) for r in rows] == [16, 16, 32]
    assert [int(r["teacher_passes"]) for r in rows] == [0, 16, 16]
    assert total(rows, "subnet_passes") == sum(c.grad_images for c in counters)
    compute = trainer.compute()
    assert compute["kernel"]["teacher_passes"] == 16 and compute["full"]["seconds"] > 0
    payload = torch.load(tmp_path / "depth_1.pt", weights_only=True)
    assert payload["compute"]["depth_1"]["subnet_passes"] == 32


def test_sandwich_run_distils_in_place_at_no_extra_forward_pass(
    tmp_path: Path, digits: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    counters = count_supernet_passes(monkeypatch)
    trainer = run(tiny(["full", "expand_2"], schedule="sandwich"), tmp_path, digits)
    rows = metrics(tmp_path)
    assert [r["stage"] for r in rows] == ["sandwich", "sandwich"]
    # 2 epochs x 2 steps x 4 subnets x 8 images, all through the one supernet, no teacher
    assert len(counters) >= 1 and trainer.stages[0].distill == "inplace"
    assert counters[0].grad_images == total(rows, "subnet_passes") == 128
    assert total(rows, "teacher_passes") == 0
    assert sum(c.grad_images for c in counters[1:]) == 0


def test_budget_matched_baselines_train_exactly_the_ps_runs_passes(
    tmp_path: Path, digits: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ps_dir = tmp_path / "ps"
    run(tiny(["full", "kernel", "depth_1"]), ps_dir, digits)  # 16 + 16 + 32 = 64 passes
    ps = total(metrics(ps_dir), "subnet_passes")
    for schedule in ("no_ps", "sandwich"):
        counters = count_supernet_passes(monkeypatch)
        out = tmp_path / schedule
        cfg = tiny(["full", "kernel", "depth_1"], schedule=schedule, match_budget=str(ps_dir))
        run(cfg, out, digits)
        rows = metrics(out)
        assert total(rows, "subnet_passes") == ps == 64
        assert (out / f"{schedule}.pt").exists()  # finished after 1 of its nominal 3 epochs
        assert counters[0].grad_images == ps  # counted by the hook, not only by the trainer
        assert yaml.safe_load((out / "config.yaml").read_text())["match_budget"] == str(ps_dir)


def test_match_budget_needs_an_existing_run_of_the_same_space(tmp_path: Path, digits: Any) -> None:
    cfg = tiny(["full"], schedule="no_ps", match_budget=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="has no config.yaml; start that run first"):
        run(cfg, tmp_path / "a", digits)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text(yaml.safe_dump({**tiny(["full"]), "space": "small32"}))
    cfg = tiny(["full"], schedule="no_ps", match_budget=str(other))
    with pytest.raises(ConfigError, match="trains space 'small32', another space"):
        run(cfg, tmp_path / "b", digits)
    assert not (tmp_path / "b" / "config.yaml").exists()


def test_train_cli_matches_a_budget_and_refuses_bad_names(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny(["full", "kernel"])))
    ps = tmp_path / "ps"
    assert main(["train", "--config", str(config), "--out", str(ps), "--no-progress"]) == 0
    out = tmp_path / "sw"
    argv = ["train", "--config", str(config), "--schedule", "sandwich", "--match-budget", str(ps)]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    assert total(metrics(out), "subnet_passes") == total(metrics(ps), "subnet_passes") == 32
    capsys.readouterr()
    assert main([*argv[:5], "--budget", "0", "--out", str(tmp_path / "z")]) == 1
    assert "--budget must be a positive number" in capsys.readouterr().err

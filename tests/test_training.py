"""Progressive-shrinking training on tiny digits data: stage configs, a run through every stage
type, KD, exact resume, BN recalibration and the train / eval CLI."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from ofabench.cli import main
from ofabench.errors import ConfigError
from ofabench.space import get_space
from ofabench.supernet import OFAMobileNetV3
from ofabench.supernet.checkpoint import load_supernet
from ofabench.training import (
    DataConfig,
    Trainer,
    config_from_dict,
    evaluate,
    evaluate_subnet,
    load_dataset,
    recalibrate_bn,
)
from ofabench.training.stages import PS_ORDER, protected_expands, stage_from_dict
from ofabench.training.trainer import cosine_lr_factor, soft_target_cross_entropy

pytest.importorskip("sklearn")

pytestmark = pytest.mark.usefixtures("one_thread")
SPACE = "small32_w0.5"


def tiny_config(stages: list[str] | None = None, epochs: int = 1, **top: Any) -> dict[str, Any]:
    """A schedule of 2 steps of 8 digits per epoch at 24/28 px."""
    names = stages or list(PS_ORDER)
    return {
        "space": SPACE,
        "seed": 0,
        "data": {"name": "digits", "max_train_images": 16},
        "optim": {"batch_size": 8, "bn_recal_images": 32, "eval_images": 32, "eval_batch_size": 32},
        "stages": [
            {"name": n, "epochs": epochs, "lr": 0.05, "resolutions": [24, 28]} for n in names
        ],
        **top,
    }


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig("digits", max_train_images=16))


# -- stage configs -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "shrink_all"}, r"unknown stage name 'shrink_all'; valid stages: \['full'"),
        ({"lr_max": 1.0}, r"unknown key\(s\) \['lr_max'\]; valid keys: \['name', 'epochs'"),
        ({"depth": [2, 5]}, r"depth_choices \[5\] are not in space"),
        ({"kernel": "biggest"}, r"kernel 'biggest' is not a list of integers or one of"),
        ({"warmup_epochs": 3}, r"warmup_epochs must be in 0..2"),
        ({"protect_expands": [5]}, r"protect_expands.*\[5\]"),
    ],
)
def test_stage_validation_errors(change: dict[str, Any], message: str) -> None:
    cfg = tiny_config(["full", "kernel"])
    cfg["stages"][1] = {**cfg["stages"][1], "epochs": 3, **change}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(cfg)


def test_config_level_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epochs'\]"):
        config_from_dict({**tiny_config(), "epochs": 3})
    with pytest.raises(ConfigError, match="repeated"):
        config_from_dict(tiny_config(["full", "full"]))
    with pytest.raises(ConfigError, match="missing key"):
        stage_from_dict({"name": "full", "lr": 0.1})
    with pytest.raises(ConfigError, match="unknown schedule"):
        config_from_dict(tiny_config(schedule="fast"))


def test_stage_templates_resolve_against_the_space() -> None:
    cfg = config_from_dict(tiny_config())
    space = get_space(SPACE)
    subspaces = {s.name: s.subspace(space) for s in cfg.stages}
    assert subspaces["full"].kernel_choices == (7,) and subspaces["full"].depth_choices == (4,)
    assert subspaces["kernel"].kernel_choices == (3, 5, 7)
    assert subspaces["depth_1"].depth_choices == (3, 4)
    assert subspaces["expand_1"].expand_choices == (4, 6)
    assert [s.subnets_per_step for s in cfg.stages] == [1, 1, 2, 2, 4, 4]
    assert protected_expands(cfg.stages, 4, space) == ()
    assert protected_expands(cfg.stages, 5, space) == (4,)


def test_no_ps_schedule_keeps_total_epochs() -> None:
    cfg = config_from_dict(tiny_config(epochs=2, schedule="no_ps"))
    (stage,) = cfg.schedule_stages()
    assert stage.name == "no_ps" and stage.epochs == 12 and stage.kd_weight == 0
    assert stage.subspace(get_space(SPACE)).expand_choices == (3, 4, 6)


def test_shipped_configs_validate() -> None:
    from ofabench.training import load_config

    for path in sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml")):
        assert load_config(path).stage_names()


# -- pieces ----------------------------------------------------------------------------------------
def test_cosine_lr_with_warmup() -> None:
    factors = [cosine_lr_factor(s, 10, 2) for s in range(10)]
    assert factors[0] == 0.5 and factors[1] == 1.0
    assert all(a >= b for a, b in zip(factors[1:], factors[2:])) and factors[-1] > 0


def test_soft_target_cross_entropy_matches_hard_labels() -> None:
    logits = torch.randn(5, 10)
    labels = torch.randint(0, 10, (5,))
    one_hot = torch.nn.functional.one_hot(labels, 10).float()
    expected = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.allclose(soft_target_cross_entropy(logits, one_hot), expected)


def test_recalibrate_bn_uses_the_requested_images(digits) -> None:
    space = get_space(SPACE)
    net = OFAMobileNetV3(space)
    arch = space.uniform(3, 4, 2, 24)
    before = net.stem_bn.running_mean.clone()
    images = digits.train.images
    used = recalibrate_bn(net, arch, images, n=12, batch_size=100)
    assert used == 12 and not net.training
    assert not torch.equal(net.stem_bn.running_mean, before)
    assert int(net.stem_bn.num_batches_tracked) == 1
    with torch.no_grad():  # cumulative average over one batch = that batch's mean
        from ofabench.training.data import resize_batch

        stem = net.stem_conv(resize_batch(images[:12], 24))
    assert torch.allclose(net.stem_bn.running_mean, stem.mean((0, 2, 3)), atol=1e-5)
    assert recalibrate_bn(net, arch, images, n=12, batch_size=5) == 12
    assert int(net.stem_bn.num_batches_tracked) == 3


def test_evaluate_subnet_leaves_the_supernet_alone(digits) -> None:
    space = get_space(SPACE)
    net = OFAMobileNetV3(space)
    state = copy.deepcopy(net.state_dict())
    accs = evaluate_subnet(net, space.min_arch(), digits, recal_images=16, max_images=20)
    assert set(accs) == {"val_acc", "test_acc"} and 0 <= accs["val_acc"] <= 1
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert 0 <= evaluate(net, space.max_arch(), digits.val.take(slice(0, 10))) <= 1


def test_subnet_evaluator_matches_nchw_recalibration_in_any_order(digits) -> None:
    from ofabench.training.evaluate import SubnetEvaluator, recal_subset

    space = get_space(SPACE)
    net = OFAMobileNetV3(space)
    small, big = space.min_arch(), space.uniform(5, 6, 3, 28)
    evaluator = SubnetEvaluator(net, digits, ("val",), recal_images=16, max_images=40)
    first = evaluator(small)["val_acc"]
    assert evaluator(big)["val_acc"] >= 0 and evaluator(small)["val_acc"] == first
    reference = copy.deepcopy(net)  # NCHW, as before the channels_last evaluation
    recalibrate_bn(reference, small, recal_subset(digits.train, 16), 16)
    assert first == evaluate(reference, small, digits.val.take(slice(0, 40)))
    assert net.stem_conv.weight.is_contiguous()  # the caller's network is untouched


# -- runs ------------------------------------------------------------------------------------------
def test_ps_run_through_every_stage(tmp_path: Path, digits) -> None:
    cfg = config_from_dict(tiny_config())
    history = Trainer(cfg, tmp_path, dataset=digits).run()
    assert [row["stage"] for row in history] == list(PS_ORDER)
    space = get_space(SPACE)
    for name in PS_ORDER:
        load_supernet(tmp_path / f"{name}.pt", space)
        assert not (tmp_path / f"{name}.state.pt").exists()
    with open(tmp_path / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["stage"] for r in rows] == list(PS_ORDER)
    assert float(rows[2]["train_loss"]) > 0 and 0 <= float(rows[-1]["val_acc_min"]) <= 1
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == cfg.to_dict()


def test_kd_stage_needs_a_teacher(tmp_path: Path, digits) -> None:
    cfg = config_from_dict(tiny_config(["kernel"]))
    with pytest.raises(ConfigError, match="distils from"):
        Trainer(cfg, tmp_path, dataset=digits).run()


def test_resume_after_an_interrupted_run_is_exact(tmp_path: Path, digits) -> None:
    data = tiny_config(["full", "kernel"])
    data["stages"][1]["epochs"] = 2
    cfg = config_from_dict(data)
    straight = Trainer(cfg, tmp_path / "a", dataset=digits)
    straight.run()
    Trainer(cfg, tmp_path / "b", dataset=digits).run(stop_after_epochs=2)  # "killed" mid-kernel
    assert (tmp_path / "b" / "kernel.state.pt").exists() and not (
        tmp_path / "b" / "kernel.pt"
    ).exists()
    resumed = Trainer(cfg, tmp_path / "b", dataset=digits)
    history = resumed.run(resume=True)
    assert len(history) == 3
    assert_same_kernel_weights(tmp_path / "a", tmp_path / "b")


class _Killed(Exception):
    """Stands for a kill between two steps."""


def patch_steps(
    monkeypatch: pytest.MonkeyPatch, at: tuple[str, int], action: Any
) -> list[tuple[str, int, int]]:
    """Record every training step as ``(stage, epoch, step)``; call ``action()`` once, when the
    step ``at`` (stage, step) starts."""
    from ofabench.training import trainer as trainer_module

    real_step = trainer_module._StageRun._train_step
    calls: list[tuple[str, int, int]] = []
    acted: list[bool] = []

    def step(self, index, images, labels):
        calls.append((self.stage.name, self.epoch, index))
        if (self.stage.name, index) == at and not acted:
            acted.append(True)
            action()
        return real_step(self, index, images, labels)

    monkeypatch.setattr(trainer_module._StageRun, "_train_step", step)
    return calls


def assert_same_kernel_weights(a: Path, b: Path) -> None:
    first = torch.load(a / "kernel.pt", weights_only=True)["state_dict"]
    second = torch.load(b / "kernel.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_run_killed_within_an_epoch_resumes_at_its_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``checkpoint_minutes=0`` the state is saved after every step; a run killed at the
    third step of the kernel stage's 4-step epoch resumes there (not at the epoch's start) and
    ends with the weights and the metrics row of a run never killed."""
    data = tiny_config(["full", "kernel"])
    data["data"]["max_train_images"] = 32  # 4 steps of 8 per epoch
    cfg = config_from_dict(data)
    dataset = load_dataset(DataConfig("digits", max_train_images=32))
    straight = Trainer(cfg, tmp_path / "a", dataset=dataset, checkpoint_minutes=0).run()

    def kill() -> None:
        raise _Killed

    calls = patch_steps(monkeypatch, ("kernel", 2), kill)
    with pytest.raises(_Killed):
        Trainer(cfg, tmp_path / "b", dataset=dataset, checkpoint_minutes=0).run()
    state = torch.load(tmp_path / "b" / "kernel.state.pt", weights_only=True)
    assert state["epoch"] == 0 and state["partial"]["step"] == 2
    calls.clear()
    resumed = Trainer(cfg, tmp_path / "b", dataset=dataset, checkpoint_minutes=0).run(resume=True)
    assert calls == [("kernel", 0, 2), ("kernel", 0, 3)]  # the two steps not yet done, only
    assert_same_kernel_weights(tmp_path / "a", tmp_path / "b")
    volatile = {"seconds", "images_per_s"}
    for row_a, row_b in zip(straight, resumed, strict=True):
        assert {k: v for k, v in row_a.items() if k not in volatile} == {
            k: v for k, v in row_b.items() if k not in volatile
        }


def test_checkpoint_minutes_must_not_be_negative(digits) -> None:
    with pytest.raises(ConfigError, match="checkpoint_minutes must be >= 0"):
        Trainer(config_from_dict(tiny_config(["full"])), "unused", dataset=digits,
                checkpoint_minutes=-1)  # fmt: skip


def test_rerun_without_resume_overwrites_nothing(tmp_path: Path, digits) -> None:
    cfg = config_from_dict(tiny_config(["full"]))
    Trainer(cfg, tmp_path, dataset=digits).run()
    before = (tmp_path / "full.pt").read_bytes()
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(cfg, tmp_path, dataset=digits).run()
    assert (tmp_path / "full.pt").read_bytes() == before


# -- CLI ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A one-stage run through the CLI; returns its output folder."""
    root = tmp_path_factory.mktemp("cli")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(["full"])))
    out = root / "run"
    assert (
        main(
            ["train", "--config", str(config), "--out", str(out), "--no-progress", "--threads", "1"]
        )
        == 0
    )
    return out


def test_eval_cli_json(trained: Path, capsys) -> None:
    code = main(
        [
            "eval",
            "--arch",
            "min",
            "--checkpoint",
            str(trained / "full.pt"),
            "--recal-images",
            "64",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["space"] == SPACE and result["dataset"] == "digits"
    assert result["recal_images"] == 16
    assert 0 <= result["val_acc"] <= 1 and 0 <= result["test_acc"] <= 1


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ofabench: error:"), err
    return err[0]


def test_cli_errors_exit_1_with_one_line(trained: Path, tmp_path: Path, capsys) -> None:
    config = str(trained.parent / "tiny.yaml")
    ckpt = str(trained / "full.pt")
    before = (trained / "full.pt").read_bytes()
    assert "unknown stage(s) ['nope']" in one_line_error(
        capsys, ["train", "--config", config, "--out", str(trained), "--stage", "nope"]
    )
    assert "--resume" in one_line_error(
        capsys, ["train", "--config", config, "--out", str(trained)]
    )
    assert "not 'small32'" in one_line_error(
        capsys, ["eval", "--arch", "max", "--checkpoint", ckpt, "--space", "small32"]
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {**tiny_config(["full"]), "data": {"name": "fashion_mnist", "root": str(tmp_path)}}
        )
    )
    assert "Fashion-MNIST not found" in one_line_error(
        capsys, ["train", "--config", str(bad), "--out", str(tmp_path / "x")]
    )
    assert not (tmp_path / "x" / "full.pt").exists()
    (tmp_path / "img" / "train").mkdir(parents=True)
    (tmp_path / "img" / "val").mkdir()
    assert "empty" in one_line_error(
        capsys,
        [
            "eval",
            "--arch",
            "max",
            "--checkpoint",
            ckpt,
            "--data",
            "imagefolder",
            "--data-root",
            str(tmp_path / "img"),
        ],
    )
    assert (trained / "full.pt").read_bytes() == before


def test_sigterm_saves_after_the_step_in_progress_and_the_run_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ofabench train`` gets SIGTERM during the kernel stage's second step (no mid-epoch
    checkpoint is due for 100 minutes): it finishes that step, saves the state at step 2 and
    exits 130; ``--resume`` runs only the two remaining steps and ends with the weights of a run
    never stopped."""
    import os
    import signal

    data = tiny_config(["full", "kernel"])
    data["data"]["max_train_images"] = 32  # 4 steps of 8 per epoch
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    args = ["train", "--config", str(config), "--no-progress", "--checkpoint-minutes", "100"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0

    # the signal arrives while the kernel stage's second step runs
    calls = patch_steps(monkeypatch, ("kernel", 1), lambda: os.kill(os.getpid(), signal.SIGTERM))
    handler = signal.getsignal(signal.SIGTERM)
    assert main([*args, "--out", str(tmp_path / "b")]) == 130
    assert calls[-1] == ("kernel", 0, 1)  # stopped after the step that got the signal
    state = torch.load(tmp_path / "b" / "kernel.state.pt", weights_only=True)
    assert state["epoch"] == 0 and state["partial"]["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is handler  # the previous handler is back
    calls.clear()
    assert main([*args, "--out", str(tmp_path / "b"), "--resume"]) == 0
    assert calls == [("kernel", 0, 2), ("kernel", 0, 3)]
    assert_same_kernel_weights(tmp_path / "a", tmp_path / "b")

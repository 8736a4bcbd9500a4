"""The from-scratch baseline on tiny digits data: one arch trained alone as a static network,
with the trainer's checkpoint / resume / metrics hygiene, and ``ofabench eval`` on its file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ofabench.cli import main
from ofabench.errors import ConfigError
from ofabench.space import get_space
from ofabench.supernet import OFAMobileNetV3
from ofabench.training import Trainer, config_from_dict, load_dataset
from ofabench.training.data import DataConfig
from ofabench.training.scratch import build_static_network, load_static_network
from ofabench.training.stages import arch_hash

from .test_training import SPACE, tiny_config

pytest.importorskip("sklearn")

pytestmark = pytest.mark.usefixtures("one_thread")
ARCH = get_space(SPACE).sample(np.random.default_rng(5))


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig("digits", max_train_images=16))


def scratch_config(**top):
    """``ARCH`` trained from scratch with the tiny schedule's full-network training (its first
    stage: 2 epochs)."""
    return config_from_dict(
        tiny_config(["full", "kernel"], epochs=2, schedule="scratch", arch=ARCH.to_dict(), **top)
    )


def test_the_static_network_is_the_extracted_subnet_freshly_initialised() -> None:
    space = get_space(SPACE)
    supernet = OFAMobileNetV3(space)
    supernet.set_active_subnet(ARCH)
    extracted = supernet.get_active_subnet().state_dict()

    def stem(seed: int) -> torch.Tensor:
        return build_static_network(space, ARCH, seed).state_dict()["stem_conv.weight"]

    fresh = build_static_network(space, ARCH, seed=3).state_dict()
    assert {k: v.shape for k, v in fresh.items()} == {k: v.shape for k, v in extracted.items()}
    assert torch.equal(fresh["stem_conv.weight"], stem(3))
    assert not torch.equal(stem(3), stem(4))


def test_scratch_schedule() -> None:
    (stage,) = scratch_config().schedule_stages()
    assert (stage.name, stage.epochs, stage.subnets_per_step) == ("scratch", 2, 1)
    assert stage.kd_weight == 0
    assert stage.arch == ARCH and stage.subspace(get_space(SPACE)).resolutions == (ARCH.r,)
    assert stage.file_stem == f"scratch_{arch_hash(ARCH)}"
    with pytest.raises(ConfigError, match="schedule: scratch needs 'arch'"):
        config_from_dict(tiny_config(["full"], schedule="scratch"))
    with pytest.raises(ConfigError, match="is only used by schedule: scratch"):
        config_from_dict(tiny_config(["full"], arch=ARCH.to_dict()))
    bad = {**ARCH.to_dict(), "d": [5, 2, 2, 2, 2]}
    with pytest.raises(ConfigError, match=r"arch field 'd'\[0\] = 5"):
        config_from_dict(tiny_config(["full"], schedule="scratch", arch=bad))
    listed = tiny_config(["full"])
    listed["stages"].append({"name": "scratch", "epochs": 1, "lr": 0.1, "arch": ARCH.to_dict()})
    with pytest.raises(ConfigError, match="must be the only stage"):
        config_from_dict(listed)


def test_scratch_run_resumes_exactly_and_evaluates(tmp_path: Path, digits, capsys) -> None:
    cfg = scratch_config()
    stem = f"scratch_{arch_hash(ARCH)}"
    Trainer(cfg, tmp_path / "a", dataset=digits).run()
    Trainer(cfg, tmp_path / "b", dataset=digits).run(stop_after_epochs=1)  # "killed"
    assert (tmp_path / "b" / f"{stem}.state.pt").exists()
    assert not (tmp_path / "b" / f"{stem}.pt").exists()
    history = Trainer(cfg, tmp_path / "b", dataset=digits).run(resume=True)
    assert [row["epoch"] for row in history] == [1, 2]
    net_a, space, arch = load_static_network(tmp_path / "a" / f"{stem}.pt")
    net_b = load_static_network(tmp_path / "b" / f"{stem}.pt")[0]
    assert arch == ARCH and space.name == SPACE
    assert all(torch.equal(v, net_b.state_dict()[k]) for k, v in net_a.state_dict().items())
    with open(tmp_path / "b" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["stage"] for r in rows] == ["scratch", "scratch"]
    result = json.loads((tmp_path / "b" / f"{stem}.json").read_text())
    assert result["arch"] == ARCH.to_dict() and result["epochs"] == 2
    assert 0 <= result["val_acc"] <= 1 and 0 <= result["test_acc"] <= 1 and result["macs"] > 0

    ckpt = str(tmp_path / "b" / f"{stem}.pt")  # config.yaml beside it sets the data
    assert main(["eval", "--checkpoint", ckpt, "--recal-images", "16", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["kind"] == "static" and evaluated["arch"] == ARCH.to_dict()
    assert evaluated["val_acc"] == pytest.approx(result["val_acc"])  # same 16 recal images
    assert main(["eval", "--checkpoint", ckpt, "--arch", "max"]) == 1
    assert "static network of another arch" in capsys.readouterr().err


def test_cli_scratch_arch(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(["full"])))
    out = tmp_path / "run"
    argv = ["train", "--config", str(config), "--out", str(out), "--no-progress"]
    assert main([*argv, "--scratch-arch", ARCH.to_json(), "--threads", "1"]) == 0
    assert (out / f"scratch_{arch_hash(ARCH)}.pt").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["arch"] == ARCH.to_dict()
    assert main([*argv, "--scratch-arch", ARCH.to_json(), "--schedule", "no_ps"]) == 1

"""Accuracy datasets (``ofabench sample-accuracy``) on tiny digits data: deterministic sampling,
resume after a kill, refusal of foreign files, sharding across ranks, the CLI and torchrun."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ofabench.cli import main
from ofabench.errors import ConfigError, DatasetError
from ofabench.latency.counting import count_macs, count_params
from ofabench.predictor.dataset import (
    COLUMNS,
    Settings,
    merge_shards,
    meta_path,
    sample_accuracy_dataset,
    sample_arch,
    shard_path,
)
from ofabench.predictor.mlp import read_accuracy_table
from ofabench.space import get_space
from ofabench.supernet import OFAMobileNetV3
from ofabench.supernet.checkpoint import save_supernet
from ofabench.training import DataConfig, load_dataset

pytest.importorskip("sklearn")

pytestmark = pytest.mark.usefixtures("one_thread")
SPACE = "small32_w0.5"
SETTINGS = Settings(seed=0, recal_images=16, val_images=24, batch_size=32)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig("digits", max_train_images=16))


@pytest.fixture(scope="module")
def supernet(tmp_path_factory) -> tuple[OFAMobileNetV3, Path]:
    """A randomly initialised supernet and its checkpoint file."""
    torch.manual_seed(1)
    net = OFAMobileNetV3(get_space(SPACE))
    path = tmp_path_factory.mktemp("ckpt") / "full.pt"
    save_supernet(net, path)
    return net, path


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def run(supernet, digits, out: Path, n: int, **kwargs):
    net, ckpt = supernet
    settings = kwargs.pop("settings", SETTINGS)
    return sample_accuracy_dataset(net, digits, n, out, settings, ckpt, **kwargs)


@pytest.fixture(scope="module")
def straight(supernet, digits, tmp_path_factory) -> list[dict[str, str]]:
    """Five subnets evaluated in one uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("straight") / "acc.csv"
    report = run(supernet, digits, out, 5)
    assert (report.evaluated, report.skipped, report.rows) == (5, 0, 5)
    return rows_of(out)


def test_the_ith_arch_depends_only_on_seed_and_index() -> None:
    space = get_space(SPACE)
    archs = [sample_arch(space, 7, i) for i in range(40)]
    assert archs[3] == sample_arch(space, 7, 3) and archs[3] != sample_arch(space, 8, 3)
    assert all(space.contains(a) for a in archs)
    assert {a.r for a in archs} == set(space.resolutions)  # resolution is sampled too
    assert len(set(archs)) == 40


def test_rows_provenance_and_predictor_format(straight, supernet, digits, tmp_path) -> None:
    space = get_space(SPACE)
    assert list(straight[0]) == list(COLUMNS)
    assert [int(r["index"]) for r in straight] == list(range(5))
    for row in straight:
        arch = sample_arch(space, 0, int(row["index"]))
        assert json.loads(row["arch"]) == arch.to_dict() and int(row["r"]) == arch.r
        assert int(row["macs"]) == count_macs(space, arch)
        assert int(row["params"]) == count_params(space, arch)
        assert 0 <= float(row["accuracy"]) <= 1
    out = tmp_path / "acc.csv"
    run(supernet, digits, out, 2)
    archs, accs = read_accuracy_table(out, space)  # what `ofabench fit-predictor` reads
    assert len(archs) == 2 and accs.dtype.kind == "f"
    meta = json.loads(meta_path(out).read_text())
    identity = meta["identity"]
    assert identity["space_fingerprint"] == space.fingerprint() and identity["seed"] == 0
    assert identity["val_images"] == 24 and identity["recal_images"] == 16
    assert len(meta["checkpoint"]["sha256"]) == 64 and meta["checkpoint"]["path"]
    assert "torch" in meta["provenance"]["versions"] and meta["provenance"]["command"] is not None


def test_resume_after_a_kill_drops_the_torn_line(straight, supernet, digits, tmp_path) -> None:
    out = tmp_path / "acc.csv"
    calls: list[tuple[int, int]] = []

    def killed_after_two(done: int, total: int) -> None:
        calls.append((done, total))
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(supernet, digits, out, 5, progress=killed_after_two)
    assert calls == [(0, 5), (1, 5), (2, 5)]
    with open(out, "a") as handle:
        handle.write('2,"{""ks"": [3, 5')  # a write cut by kill -9
    calls.clear()
    report = run(supernet, digits, out, 5, progress=lambda d, t: calls.append((d, t)))
    assert (report.evaluated, report.skipped, report.rows) == (3, 2, 5)
    assert calls[0] == (2, 5) and calls[-1] == (5, 5)
    assert rows_of(out) == straight  # same rows, same accuracies as an uninterrupted run
    again = run(supernet, digits, out, 5)
    assert again.evaluated == 0 and rows_of(out) == straight


def test_foreign_files_are_refused(supernet, digits, tmp_path) -> None:
    out = tmp_path / "acc.csv"
    run(supernet, digits, out, 1)
    before = out.read_bytes()
    with pytest.raises(DatasetError, match=r"other settings \(seed: file 0, now 3"):
        run(supernet, digits, out, 2, settings=Settings(3, 16, 24, 32))
    with pytest.raises(DatasetError, match="val_images"):
        run(supernet, digits, out, 2, settings=Settings(0, 16, 20, 32))
    torch.manual_seed(2)
    other = OFAMobileNetV3(get_space(SPACE))
    save_supernet(other, tmp_path / "other.pt")
    with pytest.raises(DatasetError, match="checkpoint_sha256"):
        sample_accuracy_dataset(other, digits, 2, out, SETTINGS, tmp_path / "other.pt")
    assert out.read_bytes() == before
    meta_path(out).unlink()
    with pytest.raises(DatasetError, match="has no acc.csv.meta.json"):
        run(supernet, digits, out, 2)
    with pytest.raises(ConfigError, match=r"must be a \.csv"):
        run(supernet, digits, tmp_path / "acc.parquet", 2)
    with pytest.raises(ConfigError, match="--seed must be a non-negative"):
        Settings(seed=-1)


def test_sharded_ranks_merge_to_the_single_process_rows(straight, supernet, digits, tmp_path):
    out = tmp_path / "acc.csv"
    reports = [run(supernet, digits, out, 5, rank=r, world_size=2) for r in (1, 0)]
    assert [r.evaluated for r in reports] == [2, 3]  # rank 1: 1, 3; rank 0: 0, 2, 4
    assert [int(r["index"]) for r in rows_of(shard_path(out, 1))] == [1, 3]
    assert not out.exists()
    assert merge_shards(out, get_space(SPACE), 0) == 5
    assert not shard_path(out, 0).exists() and not shard_path(out, 1).exists()
    assert rows_of(out) == straight
    # a later single-process run with a larger n extends the merged file
    report = run(supernet, digits, out, 6)
    assert (report.evaluated, report.rows) == (1, 6)
    assert rows_of(out)[:5] == straight


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ofabench: error:"), err
    return err[0]


DIGITS = ("--space", SPACE, "--data", "digits")


def cli_args(ckpt: Path, out: Path, *extra: str, source: tuple[str, ...] = DIGITS) -> list[str]:
    return [
        "sample-accuracy", "--checkpoint", str(ckpt), *source, "--out", str(out), "--recal-images", "16", "--val-images", "24", "--batch-size", "32",
        "--threads", "1", "--no-progress", *extra,
    ]  # fmt: skip


def test_cli(supernet, tmp_path, capsys) -> None:
    _, ckpt = supernet
    out = tmp_path / "acc.csv"
    assert main(cli_args(ckpt, out, "--n", "2", "--json")) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == 2 and result["evaluated"] == 2
    assert "seed: file 0, now 5" in one_line_error(
        capsys, cli_args(ckpt, out, "--n", "3", "--seed", "5")
    )
    assert "--n must be at least 1" in one_line_error(capsys, cli_args(ckpt, out, "--n", "0"))
    assert "does not exist" in one_line_error(
        capsys, cli_args(tmp_path / "missing.pt", out, "--n", "2")
    )
    assert len(rows_of(out)) == 2


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_torchrun_two_ranks_shard_and_merge(straight, supernet, tmp_path) -> None:
    _, ckpt = supernet
    config = tmp_path / "tiny.yaml"  # the fixture's data: 16 training images
    config.write_text(
        "space: small32_w0.5\ndata: {name: digits, max_train_images: 16}\n"
        "stages: [{name: full, epochs: 1, lr: 0.1}]\n"
    )
    out = tmp_path / "acc.csv"
    args = cli_args(ckpt, out, "--num-subnets", "5", source=("--config", str(config)))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        "-m", "ofabench", *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(tmp_path.glob("acc.csv.rank*.csv"))
    assert rows_of(out) == straight  # same rows and accuracies as one process

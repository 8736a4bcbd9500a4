"""The trainer under ``torchrun`` with 2 CPU processes (gloo) on tiny digits data."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ofabench.space import get_space
from ofabench.supernet.checkpoint import load_supernet

from .test_training import SPACE, tiny_config

pytest.importorskip("sklearn")


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(["full", "kernel"])))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--standalone", "-m", "ofabench", "train", "--config", str(config),
        "--out", str(out), "--no-progress", "--threads", "1",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # the trainer checks at the end of each stage that both ranks hold identical weights
    for name in ("full", "kernel"):
        load_supernet(out / f"{name}.pt", get_space(SPACE))
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["stage"] for r in rows] == ["full", "kernel"]

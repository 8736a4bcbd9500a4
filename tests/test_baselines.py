"""Baselines: the shipped published points (every row cited), uniform scaling, random search at
equal evaluations through the registry, and the external-points loader's error messages."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pytest

from ofabench.baselines import (
    SweepTask,
    best_within,
    get_baseline,
    list_baselines,
    load_external_points,
    load_published,
    uniform_archs,
    uniform_points,
)
from ofabench.baselines.published import published_text
from ofabench.errors import ConfigError
from ofabench.search.evolution import macs_fn, params_fn
from ofabench.search.points import ParetoPoint
from ofabench.space import ArchBatch, get_space

SMALL = get_space("small32")
W10 = get_space("ofa_mbv3_w1.0")


# -- published points ----------------------------------------------------------------------------
def test_every_published_row_is_cited_and_well_formed() -> None:
    rows = list(csv.DictReader(io.StringIO(published_text("imagenet"))))
    points = load_published("imagenet")
    assert len(points) == len(rows) > 20
    for row, p in zip(rows, points):
        assert row["citation"].strip() and p.source == row["citation"].strip()
        assert p.kind == "published" and p.accuracy_kind == "measured"
        assert 0.6 < p.accuracy < 0.85
        assert p.latency_ms is not None or p.mmacs is not None
        assert (p.latency_ms is None) == (p.device is None)


def test_published_note10_points_are_the_ofa_readme_ones() -> None:
    note10 = {
        p.latency_ms: round(100 * p.accuracy, 1) for p in load_published() if p.device == "note10"
    }
    assert note10 == {
        64: 80.2, 50: 79.7, 41: 79.3, 30: 78.4, 22: 76.6, 16: 75.5, 11: 73.6, 8: 71.4,
    }  # fmt: skip
    flops = {
        p.mmacs: round(100 * p.accuracy, 1)
        for p in load_published()
        if p.model.startswith("flops@")
    }
    assert flops == {595: 80.0, 482: 79.6, 389: 79.1}
    table1 = {
        p.model: (round(100 * p.accuracy, 1), p.mmacs)
        for p in load_published()
        if "Table 1" in p.source
    }
    assert table1["MobileNetV3-Large"] == (75.2, 219) and table1["ProxylessNAS"] == (74.6, 320)


def test_unknown_published_dataset() -> None:
    with pytest.raises(ConfigError, match="available: \\['imagenet'\\]"):
        load_published("cifar")


# -- uniform scaling -----------------------------------------------------------------------------
class FakeProblem:
    """Accuracy grows with kernel, expand, depth and resolution; costs are the real counts."""

    def __init__(self, space) -> None:
        self.space, self.device = space, None

    def measure(self, archs):
        batch = ArchBatch.from_archs(list(archs))
        acc = 0.5 + 0.01 * batch.ks[:, 0] + 0.01 * batch.e[:, 0] + 0.01 * batch.d[:, 0]
        return {
            "accuracy": acc + 0.001 * batch.r,
            "mmacs": macs_fn(self.space)(batch),
            "mparams": params_fn(self.space)(batch),
        }


def test_uniform_scaling_enumerates_every_uniform_subnet() -> None:
    archs = uniform_archs(W10)
    assert len(archs) == 3 * 3 * 3 * len(W10.resolutions) == len(set(archs))
    for arch in archs:
        assert len(set(arch.ks)) == len(set(arch.e)) == len(set(arch.d)) == 1
        assert W10.contains(arch)
    combos = {(a.ks[0], a.e[0], a.d[0], a.r) for a in archs}
    assert combos == {
        (k, e, d, r)
        for k in (3, 5, 7)
        for e in (3, 4, 6)
        for d in (2, 3, 4)
        for r in W10.resolutions
    }


def test_uniform_baseline_keeps_the_best_feasible_per_budget() -> None:
    problem = FakeProblem(SMALL)
    points = uniform_points(problem)
    budgets = [5.0, 20.0, 80.0, 1e6]
    outcome = get_baseline("uniform").run(SweepTask(problem, "mmacs", budgets))
    found, skipped = outcome.points, outcome.skipped
    for p in found:
        feasible = [q for q in points if q.mmacs <= p.budget]
        assert p.mmacs <= p.budget and p.accuracy == max(q.accuracy for q in feasible)
        assert p.kind == "baseline" and p.axis == "mmacs"
    assert found[-1].arch == SMALL.max_arch().to_dict()
    smallest = min(q.mmacs for q in points)
    assert {s["budget"] for s in skipped} == {b for b in budgets if b < smallest}
    assert best_within(points, {"mmacs": smallest - 1}) is None


def test_random_baseline_uses_the_evaluations_it_is_given() -> None:
    class Problem(FakeProblem):
        latency_model = None

        @property
        def predictor(self):
            return self

        def constraints(self, budgets):
            from ofabench.search import macs_constraint

            return [macs_constraint(self.space, budgets["mmacs"])]

        def predict(self, batch):
            return self.measure(batch.to_archs())["accuracy"]

        def describe(self, arch):
            values = self.measure([arch])
            return {"arch": arch.to_dict(), **{k: float(v[0]) for k, v in values.items()}}

    outcome = get_baseline("random").run(
        SweepTask(Problem(SMALL), "mmacs", [1.0, 30.0], {}, {30.0: 200}, seed=1)
    )
    found, skipped = outcome.points, outcome.skipped
    assert [s["budget"] for s in skipped] == [1.0] and "smallest value" in skipped[0]["reason"]
    (point,) = found
    assert point.method == "random" and point.mmacs <= 30.0 and "200 evaluations" in point.source


def test_unknown_baseline_lists_the_valid_names() -> None:
    names = ["aging_evolution", "local_search", "nsga2", "random", "uniform"]
    assert list_baselines() == names
    with pytest.raises(ConfigError, match=f"available: {re.escape(str(names))}"):
        get_baseline("no-ps")


# -- external points -----------------------------------------------------------------------------
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "points.csv"
    path.write_text(text)
    return path


def test_external_points_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "method,accuracy,latency_ms,device,mmacs,source,model\n"
        "no-PS supernet,0.712,21.5,note10,230,runs/nops/eval.json,a\n"
        "from scratch,0.74,,,310,runs/scratch/eval.json,b\n",
    )
    a, b = load_external_points(path)
    assert (a.method, a.accuracy, a.latency_ms, a.device, a.mmacs) == (
        "no-PS supernet", 0.712, 21.5, "note10", 230.0,
    )  # fmt: skip
    assert b.latency_ms is None and b.kind == "external" and b.accuracy_kind == "measured"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("method,accuracy,mmacs\n", "lacks column(s) ['source']"),
        ("method,accuracy,source\nx,0.5,s\n", "needs a column latency_ms or mmacs"),
        ("method,accuracy,mmacs,source\nx,71.2,300,s\n", "points.csv:2: accuracy '71.2'"),
        ("method,accuracy,mmacs,source\nx,0.7,lots,s\n", "points.csv:2: column 'mmacs'"),
        ("method,accuracy,mmacs,source\nx,0.7,,s\n", "give latency_ms or mmacs"),
        ("method,accuracy,latency_ms,source\nx,0.7,20,s\n", "needs the device"),
        ("method,accuracy,mmacs,source\nx,0.7,300,\n", "column 'source' is empty"),
        ("method,accuracy,mmacs,source,colour\nx,0.7,300,s,red\n", "unknown column(s) ['colour']"),
        ("method,accuracy,mmacs,source\n", "no rows"),
    ],
)
def test_external_points_refuse_bad_csv(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_external_points(write(tmp_path, text))
    assert needle in str(info.value)


def test_external_points_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_external_points(tmp_path / "missing.csv")


def test_points_validate_themselves() -> None:
    with pytest.raises(ConfigError, match="fraction"):
        ParetoPoint("m", 76.0, mmacs=1.0)
    with pytest.raises(ConfigError, match="kind"):
        ParetoPoint("m", 0.7, mmacs=1.0, kind="guess")
    assert ParetoPoint.from_dict(ParetoPoint("m", 0.7, mmacs=np.float64(3.0)).to_dict()).mmacs == 3

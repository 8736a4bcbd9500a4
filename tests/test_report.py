"""Pareto sweeps and reports: a tiny `ofabench pareto --report` run writes PNG (print
resolution), CSV and Markdown naming the command; fronts, hypervolume and best-within-budget
tables on hand-checked points; the latency axis never mixes devices."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ofabench.cli import main
from ofabench.errors import ConfigError
from ofabench.predictor.mlp import AccuracyPredictor
from ofabench.report import plot_accuracy_vs
from ofabench.search.points import ParetoPoint
from ofabench.search.sweep import best_at_budgets, load_sweep, summarize_axis
from ofabench.space import get_space

SMALL = get_space("small32")


def png_dpi(path: Path) -> float:
    """Horizontal resolution from the PNG's pHYs chunk (pixels per metre -> dpi)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at = data.index(b"pHYs")
    per_metre, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    assert unit == 1
    return per_metre * 0.0254


@pytest.fixture(scope="module")
def predictor_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small, untrained but well-behaved predictor (outputs about 0.7)."""
    predictor = AccuracyPredictor(SMALL, hidden_size=16, seed=0)
    with torch.no_grad():
        predictor.model[-1].weight.mul_(0.05)
        predictor.model[-1].bias.fill_(0.7)
    predictor.refresh()
    path = tmp_path_factory.mktemp("pred") / "tiny.pt"
    predictor.save(path)
    return path


def cli(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    """Run the CLI in-process as the shell would (the command line is recorded from argv)."""
    monkeypatch.setattr(sys, "argv", ["ofabench", *argv])
    return main(argv)


def test_tiny_pareto_run_writes_the_report(
    tmp_path: Path,
    predictor_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    external = tmp_path / "ext.csv"
    external.write_text("method,accuracy,mmacs,source\nfrom scratch,0.69,15,runs/scratch\n")
    report = tmp_path / "reports" / "tiny"
    argv = [
        "pareto", "--space", "small32", "--predictor", str(predictor_file),
        "--macs", "5M,12M,20M,28M", "--population", "12", "--generations", "4",
        "--published", "imagenet", "--external", str(external),
        "--out", str(tmp_path / "pareto.json"), "--csv", str(tmp_path / "points.csv"),
        "--report", str(report), "--name", "tiny", "--json",
    ]  # fmt: skip
    assert cli(monkeypatch, argv) == 0
    out = json.loads(capsys.readouterr().out)
    doc = load_sweep(str(tmp_path / "pareto.json"))
    assert out["budgets"] == doc["budgets"] == [5.0, 12.0, 20.0, 28.0]
    skipped = {(s["method"], s["budget"]) for s in doc["skipped"]}
    assert skipped == {("evolution", 5.0), ("random", 5.0), ("uniform", 5.0)}
    methods = {p["method"] for p in doc["points"]}
    assert {"evolution", "random", "uniform", "from scratch", "MobileNetV3"} <= methods
    for p in doc["points"]:
        if p["method"] in ("evolution", "random", "uniform"):
            assert p["mmacs"] <= p["budget"]
    assert (
        set(doc["summary"]) == {"mmacs"} and doc["summary"]["mmacs"]["hypervolume"]["evolution"] > 0
    )
    files = {p.name for p in report.iterdir()}
    assert files == {"accuracy_macs.png", "points.csv", "pareto.json", "summary.md"}
    assert png_dpi(report / "accuracy_macs.png") >= 200
    table = pd.read_csv(report / "points.csv")
    assert len(table) == len(doc["points"]) and "on_front" in table.columns
    assert pd.read_csv(tmp_path / "points.csv").equals(table)
    text = (report / "summary.md").read_text()
    assert text.startswith("# tiny") and "ofabench pareto --space small32" in text
    for heading in ("## Best top-1 (%) within each budget", "## Hypervolume", "## Provenance"):
        assert heading in text
    assert "Table 1" in text  # published sources are listed


def test_report_command_rewrites_from_the_document(
    tmp_path: Path,
    predictor_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = tmp_path / "p.json"
    assert cli(monkeypatch, ["pareto", "--space", "small32", "--predictor", str(predictor_file),
                 "--macs", "10M,30M", "--population", "8", "--generations", "2",
                 "--baselines", "uniform", "--out", str(doc)]) == 0  # fmt: skip
    capsys.readouterr()
    assert (
        cli(
            monkeypatch,
            ["report", "--input", str(doc), "--name", "again", "--out", str(tmp_path / "r")],
        )
        == 0
    )
    text = (tmp_path / "r" / "summary.md").read_text()
    assert "ofabench pareto" in text and "ofabench report --input" in text
    assert (
        main(["report", "--input", str(tmp_path / "none.json"), "--name", "x", "--out", "y"]) == 1
    )
    assert "does not exist" in capsys.readouterr().err


def test_fronts_and_hypervolume_by_hand() -> None:
    points = [
        ParetoPoint("m", 0.5, mmacs=1.0),
        ParetoPoint("m", 0.7, mmacs=2.0),
        ParetoPoint("m", 0.6, mmacs=3.0),
        ParetoPoint("n", 0.65, mmacs=1.5),
        ParetoPoint("pub", 0.9, latency_ms=5.0, device="note10", kind="published"),
    ]
    summary = summarize_axis(points, "mmacs", None, ref_cost=4.0)
    assert summary["reference"] == {"cost": 4.0, "accuracy": 0.49}
    assert summary["fronts"] == {"m": [0, 1], "n": [3]}
    # staircase (1, .5), (2, .7) to (4, .49): 1 x .01 + 2 x .21, in points of accuracy
    assert summary["hypervolume"]["m"] == pytest.approx(100 * (0.01 + 0.42))
    assert summary["hypervolume"]["n"] == pytest.approx(100 * 2.5 * 0.16)
    best = best_at_budgets(points, "mmacs", [1.0, 2.5], None)
    assert best == {"m": {"1": 0.5, "2.5": 0.7}, "n": {"1": None, "2.5": 0.65}}


def test_latency_axis_keeps_devices_apart(tmp_path: Path) -> None:
    points = [
        ParetoPoint("a", 0.7, latency_ms=20.0, device="note10"),
        ParetoPoint("b", 0.75, latency_ms=58.0, device="pixel1", kind="published"),
    ]
    assert summarize_axis(points, "latency_ms", "note10")["fronts"] == {"a": [0]}
    assert plot_accuracy_vs(points, "latency_ms", tmp_path / "x.png", device="s7") is None
    assert plot_accuracy_vs(points, "latency_ms", tmp_path / "y.png", device="note10") is not None


def test_load_sweep_refuses_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ConfigError, match="not an ofabench pareto file"):
        load_sweep(str(bad))
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_sweep(str(bad))

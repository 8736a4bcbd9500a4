"""The ImageNet replay on one local device (``ofabench replay``): OFA's front under the device's
latency table, the NAS search baselines at OFA's evaluations (several seeds), torchvision's
standard mobile networks measured on the device, published points, a MACs view and a
hypervolume table, written to ``reports/imagenet_<device>/`` with the command that made it.

Predicted and measured accuracies differ in kind: OFA's predictor was fitted to accuracies on
10K ImageNet *training* images. Its offset against OFA's own published, fine-tuned networks is
stated beside the front, read from the Note10 replay (``reports/note10_replay/pareto.json``):
at each published Note10 latency, OFA's predicted front there minus the published top-1.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..provenance import atomic_open
from ..space import ArchBatch

logger = logging.getLogger("ofabench")

BASELINES = ("random", "uniform", "aging_evolution", "local_search", "nsga2")  # all built-ins
NOTE10_REPLAY = "reports/note10_replay/pareto.json"
LOW_QUANTILE = 0.05
BUDGET_SAMPLES = 2000


@dataclass(frozen=True)
class ReplayConfig:
    """What ``ofabench replay`` runs (see the command's help for each field)."""

    device: str
    predictor: str
    out: str
    space: str = "ofa_mbv3_w1.2"
    latency_table: str | None = None
    table_root: str = "latency_tables"
    budgets: Sequence[float] | None = None
    n_budgets: int = 10
    baselines: Sequence[str] = BASELINES
    seeds: int = 3
    seed: int = 0
    population: int = 100
    generations: int = 500
    networks: Sequence[str] = ()
    resolution: int = 224
    warmup: int = 10
    repeats: int = 30
    published: str | None = "imagenet"
    note10_replay: str | None = NOTE10_REPLAY
    allow_space_mismatch: bool = False
    name: str = field(default="")


def run_replay(config: ReplayConfig, command: str) -> dict[str, Any]:
    """Run the replay and write its folder; returns what was written and the headline numbers."""
    from ..baselines.reference_nets import reference_points
    from ..search.problem import load_problem
    from ..search.sweep import pareto_sweep
    from .writer import write_report

    problem = load_problem(
        config.space, config.predictor, config.device, config.latency_table,
        config.table_root, allow_space_mismatch=config.allow_space_mismatch,
    )  # fmt: skip
    budgets = list(config.budgets) if config.budgets else auto_budgets(problem, config.n_budgets)
    measured = _measure_networks(config, problem.latency_model.table)
    document = pareto_sweep(
        problem, "latency_ms", budgets, None, config.population, config.generations,
        config.seed, list(config.baselines), config.published, (), config.seeds,
        reference_points(measured),
    )  # fmt: skip
    document["reference_networks"] = [m.to_dict() for m in measured]
    document["predictor_offset"] = predictor_offset(config.note10_replay)
    out = Path(config.out)
    files = write_report(document, config.name or out.name, out, command)
    files["readme"] = _write_readme(out, document, command)
    files["networks"] = _write_networks_csv(out, measured)
    return _summary(document, files)


# -- budgets -------------------------------------------------------------------------------------
def auto_budgets(problem: Any, n: int, seed: int = 0) -> list[float]:
    """``n`` latency budgets from the 5% quantile of random subnets' predicted latency to the
    largest subnet's, rounded to three significant digits."""
    if n < 1:
        raise ConfigError(f"the number of budgets must be >= 1, got {n}")
    space, model = problem.space, problem.latency_model
    rng = np.random.default_rng(seed)
    randoms = model.predict_batch(
        ArchBatch.from_archs([space.sample(rng) for _ in range(BUDGET_SAMPLES)])
    )
    hi = float(model.predict_batch([space.max_arch()])[0])
    lo = float(np.quantile(randoms, LOW_QUANTILE))
    values = [hi] if n == 1 else np.linspace(lo, hi, n).tolist()
    return sorted({_round3(v) for v in values})


def _round3(value: float) -> float:
    digits = 2 - int(math.floor(math.log10(abs(value)))) if value else 2
    return round(value, max(digits, 0))


# -- standard networks -----------------------------------------------------------------------------
def _measure_networks(config: ReplayConfig, table: Any) -> list[Any]:
    """The torchvision networks timed on the device; where the table records a probe
    reference, with the drift probe (as its subnets were), at the table's reference speed."""
    if not config.networks:
        return []
    from ..baselines.reference_nets import measure_reference_nets
    from ..devices.base import MeasureSettings
    from ..devices.profiles import load_profile
    from ..latency.probe import DriftGuard, Probe, ProbeSettings, backend_probe_id, table_reference

    backend = load_profile(config.device).open()
    settings = MeasureSettings(warmup=config.warmup, repeats=config.repeats)
    reference = table_reference(table, backend_probe_id(backend))
    if reference is None:
        return measure_reference_nets(
            backend, config.device, config.networks, config.resolution, settings
        )
    with Probe(backend, settings) as probe:
        guard = DriftGuard(probe, ProbeSettings(), reference)
        guard.start()
        return measure_reference_nets(
            backend, config.device, config.networks, config.resolution, settings, guard
        )


# -- the predictor's offset ------------------------------------------------------------------------
def predictor_offset(note10_replay: str | None) -> dict[str, Any]:
    """OFA's predicted Note10 front minus OFA's published fine-tuned Note10 networks at the
    same latency (points of accuracy), read from the Note10 replay document."""
    path = Path(note10_replay) if note10_replay else None
    if path is None or not path.is_file():
        return {"source": note10_replay, "available": False, "pairs": []}
    points = json.loads(path.read_text())["points"]
    front = [p for p in points if p["method"] == "evolution" and p["latency_ms"] is not None]
    pairs = []
    for p in points:
        if p["kind"] != "published" or p.get("device") != "note10":
            continue
        within = [q["accuracy"] for q in front if q["latency_ms"] <= p["latency_ms"]]
        if within:
            predicted = max(within)
            pairs.append({"model": p["model"], "latency_ms": p["latency_ms"],
                          "published": p["accuracy"], "predicted": predicted,
                          "offset_pts": 100.0 * (predicted - p["accuracy"])})  # fmt: skip
    offsets = [x["offset_pts"] for x in pairs]
    return {
        "source": str(path),
        "available": bool(pairs),
        "pairs": pairs,
        "mean_pts": float(np.mean(offsets)) if offsets else None,
        "min_pts": min(offsets, default=None),
        "max_pts": max(offsets, default=None),
    }


# -- files -----------------------------------------------------------------------------------------
def _write_networks_csv(out: Path, measured: Sequence[Any]) -> Path:
    path = out / "reference_networks.csv"
    columns = ["name", "weights", "top1", "mmacs", "mparams", "device", "resolution",
               "median_ms", "converter", "error", "citation"]  # fmt: skip
    with atomic_open(path) as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        for m in measured:
            writer.writerow(m.to_dict())
    return path


def _write_readme(out: Path, document: Mapping[str, Any], command: str) -> Path:
    sections = [
        f"# ImageNet replay on {document['device']}",
        _made_by(command),
        _offset_section(document["predictor_offset"]),
        _networks_section(document.get("reference_networks", [])),
        _spread_section(document),
        "Plots, every point and the per-budget table: [summary.md](summary.md).",
    ]
    path = out / "README.md"
    with atomic_open(path) as handle:
        handle.write("\n\n".join(s for s in sections if s) + "\n")
    return path


def _made_by(command: str) -> str:
    return f"Made by:\n\n```\n{command}\n```"


def _offset_section(offset: Mapping[str, Any]) -> str:
    head = "## OFA's predictor against OFA's published networks\n\n"
    if not offset.get("available"):
        return head + f"Not available: no Note10 replay at `{offset.get('source')}`."
    rows = "\n".join(
        f"| {p['model']} | {p['latency_ms']:g} | {100 * p['published']:.1f} | "
        f"{100 * p['predicted']:.2f} | {p['offset_pts']:+.2f} |"
        for p in offset["pairs"]
    )
    return head + (
        "Predicted top-1 comes from OFA's accuracy predictor, fitted to accuracies on 10K "
        "ImageNet *training* images; published top-1 is ImageNet validation accuracy of "
        "fine-tuned networks. At each published Note10 latency, OFA's predicted Note10 front "
        f"(from `{offset['source']}`) lies **{offset['mean_pts']:+.2f} points** above OFA's "
        f"published network on average (range {offset['min_pts']:+.2f} to "
        f"{offset['max_pts']:+.2f}). Read predicted levels on this device with that offset "
        "in mind.\n\n"
        "| published network | Note10 ms | published top-1 % | predicted front % | offset |\n"
        "|---|---|---|---|---|\n" + rows
    )


def _networks_section(networks: Sequence[Mapping[str, Any]]) -> str:
    if not networks:
        return ""
    rows = "\n".join(
        f"| {n['name']} | {100 * n['top1']:.2f} | {n['mmacs']:.0f} | {n['mparams']:.2f} | "
        + (f"{n['median_ms']:.3f} |" if n["median_ms"] is not None else f"not run: {n['error']} |")
        for n in networks
    )
    first = networks[0]
    return (
        f"## Standard mobile networks on {first['device']} ({first['resolution']} px, end to end)\n\n"
        "Top-1, MACs and parameters cited from torchvision's documentation (its weights "
        "metadata; weights and version in `reference_networks.csv`); latency measured here "
        f"through {first['converter']}.\n\n"
        "| network | top-1 % | M MACs | M params | median ms |\n|---|---|---|---|---|\n" + rows
    )


def _spread_section(document: Mapping[str, Any]) -> str:
    lines = []
    for axis, summary in document["summary"].items():
        spread = summary.get("hypervolume_spread") or {}
        ref = summary.get("reference")
        if not spread or ref is None:
            continue
        lines.append(
            f"\n**{axis}** (reference ≤ {ref['cost']:g}, ≥ {100 * ref['accuracy']:.0f}%)\n"
        )
        lines.append("| method | mean | std | min | max | seeds |\n|---|---|---|---|---|---|")
        lines += [
            f"| {m} | {s['mean']:,.1f} | {s['std']:,.1f} | {s['min']:,.1f} | {s['max']:,.1f} | {s['n']} |"
            for m, s in spread.items()
        ]
    evaluations = ", ".join(f"{m} {n:,}" for m, n in document.get("evaluations", {}).items())
    return (
        "## Hypervolume over seeds\n\nPredictor evaluations per method (first seed): "
        f"{evaluations}.\n" + "\n".join(lines)
    )


def _summary(document: Mapping[str, Any], files: Mapping[str, Path]) -> dict[str, Any]:
    return {
        "device": document["device"],
        "space": document["space"],
        "budgets": document["budgets"],
        "files": {k: str(v) for k, v in files.items()},
        "hypervolume_spread": {
            axis: s.get("hypervolume_spread", {}) for axis, s in document["summary"].items()
        },
        "evaluations": document.get("evaluations", {}),
        "predictor_offset_pts": document["predictor_offset"].get("mean_pts"),
        "networks": {
            n["name"]: n["median_ms"] if n["median_ms"] is not None else f"failed: {n['error']}"
            for n in document.get("reference_networks", [])
        },
        "space_mismatch": document.get("space_mismatch"),
    }

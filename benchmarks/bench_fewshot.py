#!/usr/bin/env python
"""Few-shot onboarding (``ofabench.latency.transfer``), leave one device out: how well a table
made from K measured ops (plus 10 whole subnets) and the other devices' tables predicts
end-to-end latency, as a function of K. Nothing is timed: the "measurements" are the held-out
device's own table entries (among its measured ones) and its own whole-subnet measurements.

Targets and their ground truth:

- the local backends' committed ImageNet-space (w1.0) tables in ``latency_tables/``; sources:
  the other local tables. Whole subnets for the calibration: the first 10 calibration subnets
  of the target's profile (measured end to end when it was made). Ground truth: the committed
  validation CSV ``benchmarks/results/latency_<device>/validation/ofa_mbv3_w1.0_subnets.csv``
  (100 random subnets, TVM 30; each subnet's fastest pass), measured in the same session as
  the table.
- Note10 (OFA's published LUT of the **w1.2** space, read from ``--note10``; never copied). No
  source table is of its space, so two variants: ``sources: []`` (op features only) and the
  local tables *projected* to the w1.2 space (each one's log latency regressed on the op
  features over its own full table, then evaluated at the w1.2 ops). Ground truth and whole
  subnets: the Note10 table's own full sum (no end-to-end measurements are published) on 100
  and 10 random w1.2 subnets.

``k = full``: the target's full table (local: with its stored calibration).

    nice -n 19 python benchmarks/bench_fewshot.py
    # writes benchmarks/results/fewshot.json and fewshot.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from ofabench.latency.model import LatencyModel  # noqa: E402
from ofabench.latency.profiler import (  # noqa: E402
    fit_calibration,
    latency_model,
    measured_keys,
)
from ofabench.latency.table import LatencyEntry, LatencyTable, OpSpec  # noqa: E402
from ofabench.latency.transfer import (  # noqa: E402
    _ridge,
    op_features,
    plan_measurements,
    predict_table_ms,
)
from ofabench.latency.validate import fastest_by_index, fidelity, read_rows  # noqa: E402
from ofabench.provenance import provenance, write_json  # noqa: E402
from ofabench.space import ArchConfig, SpaceSpec, as_rng, get_space  # noqa: E402

LOCAL = ("cpu-onnxruntime", "cpu-torch", "cpu-litert", "cpu-tvm")
BUDGETS = (10, 25, 50, 100, 200)
N_SUBNETS = 10
NOTE10 = Path("/work/shared/data/ofa_reference/note10_lut")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tables", default=str(REPO / "latency_tables"))
    p.add_argument("--results", default=str(HERE / "results"))
    p.add_argument("--note10", default=str(NOTE10), help="folder of OFA's Note10 YAML LUTs")
    p.add_argument("--out", default=str(HERE / "results" / "fewshot.json"))
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# -- a target: its ops, candidates, whole subnets and ground truth ----------------------------------
class Target:
    """What one held-out device offers the evaluation."""

    def __init__(
        self,
        name: str,
        space: SpaceSpec,
        table: LatencyTable,
        subnets: tuple[list[ArchConfig], np.ndarray],
        truth: tuple[list[ArchConfig], np.ndarray],
        ground_truth: str,
    ) -> None:
        self.name, self.space, self.table = name, space, table
        self.ops = [OpSpec.parse(k) for k in sorted(table)]
        self.candidates = measured_keys(table)
        self.subnets, self.truth, self.ground_truth = subnets, truth, ground_truth


def local_target(name: str, args: argparse.Namespace) -> Target:
    space = get_space("ofa_mbv3_w1.0")
    table = LatencyTable.load(Path(args.tables) / name / f"{space.name}.json")
    points = table.provenance["calibration"]["points"][:N_SUBNETS]
    subnets = (
        [ArchConfig.from_dict(p["arch"]) for p in points],
        np.array([p["measured_ms"] for p in points]),
    )
    csv = Path(args.results) / f"latency_{name}" / "validation" / f"{space.name}_subnets.csv"
    rows = read_rows(csv, {})
    n = max(r["index"] for r in rows) + 1
    archs = {r["index"]: r["arch"] for r in rows}
    truth = ([archs[i] for i in range(n)], fastest_by_index(rows, n))
    where = f"end-to-end measurements: {csv.relative_to(REPO)} ({n} subnets, fastest pass)"
    return Target(name, space, table, subnets, truth, where)


def note10_target(args: argparse.Namespace) -> Target:
    space = get_space("ofa_mbv3_w1.2").restrict(resolutions=(160, 176, 192, 208, 224))
    table = LatencyTable.from_ofa_yaml(args.note10, space=space, device="note10")
    full = LatencyModel(table, space)
    rng = as_rng(args.seed + 1)
    calib = [space.sample(rng) for _ in range(N_SUBNETS)]
    rng = as_rng(args.seed + 2)
    archs = [space.sample(rng) for _ in range(100)]
    where = "the Note10 table's full sum (OFA publishes no end-to-end measurements)"
    return Target(
        "note10",
        space,
        table,
        (calib, full.predict_batch(calib)),
        (archs, full.predict_batch(archs)),
        where,
    )


# -- the evaluation ------------------------------------------------------------------------------------
def project_source(source: LatencyTable, space: SpaceSpec, ops: list[OpSpec]) -> LatencyTable:
    """``source`` (another space) carried to ``ops`` of ``space``: its log latency regressed on
    the op features over its whole table, evaluated at ``ops``."""
    own = [OpSpec.parse(k) for k in source]
    x = np.array([op_features(op) for op in own])
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    y = np.log([source[op.key].mean_ms for op in own])
    coef = _ridge((x - mean) / std, y, 1.0)
    new = np.array([op_features(op) for op in ops])
    values = np.exp(y.mean() + ((new - mean) / std) @ coef)
    table = LatencyTable.for_space(
        space, device=f"{source.device} (projected)", backend="projection"
    )
    for op, value in zip(ops, values):
        table.add(op, LatencyEntry(float(value)))
    return table


def evaluate(target: Target, sources: list[LatencyTable], k: int, seed: int) -> dict[str, float]:
    chosen = plan_measurements(target.space, target.ops, sources, k, target.candidates, seed)
    measured = {op.key: target.table[op.key].mean_ms for op in chosen}
    values, _ = predict_table_ms(target.ops, sources, measured)
    table = LatencyTable.for_space(target.space, device=target.name, backend="transfer")
    for op, value in zip(target.ops, values):
        table.add(op, LatencyEntry(float(value)))
    archs, measured_subnets = target.subnets
    model, _ = fit_calibration(LatencyModel(table, target.space), archs, measured_subnets, "auto")
    return score(model, target, k / len(target.ops))


def score(model: LatencyModel, target: Target, fraction: float) -> dict[str, float]:
    archs, truth = target.truth
    m = fidelity(model.predict_batch(archs), truth)
    n_full = len(target.candidates)
    return {
        "fraction_measured": round(fraction, 4),
        "fraction_of_full_measurements": round(fraction * len(target.ops) / n_full, 4),
        "within_10": m.within_10,
        "within_5": m.within_5,
        "kendall_tau": round(m.kendall_tau, 4),
        "mape": round(m.mape, 3),
        "n_subnets": m.n,
    }


def rows_for(target: Target, sources: dict[str, LatencyTable], seed: int) -> list[dict[str, Any]]:
    rows = []
    for k in BUDGETS:
        result = evaluate(target, list(sources.values()), k, seed)
        rows.append({"target": target.name, "sources": list(sources), "k": k, **result})
        print(target.name, list(sources), k, result, file=sys.stderr, flush=True)
    return rows


def full_row(target: Target) -> dict[str, Any]:
    model = (
        latency_model(target.table, target.space)
        if target.name != "note10"
        else LatencyModel(target.table, target.space)
    )
    n = len(target.candidates)
    return {
        "target": target.name,
        "sources": [],
        "k": "full",
        **score(model, target, n / len(target.ops)),
    }


# -- plot ----------------------------------------------------------------------------------------------
def plot(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    series: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["k"] != "full":
            label = row["target"] + (
                "" if row["sources"] or row["target"] != "note10" else " (no source)"
            )
            series.setdefault(label, []).append(row)
    for label, points in series.items():
        k = [p["k"] for p in points]
        axes[0].plot(k, [p["within_10"] for p in points], "o-", label=label)
        axes[1].plot(k, [p["kendall_tau"] for p in points], "o-", label=label)
    for ax, name, goal in ((axes[0], "share within ±10%", 0.9), (axes[1], "Kendall τ", 0.9)):
        ax.axhline(goal, color="k", lw=0.8, ls="--")
        ax.set(xscale="log", xlabel="ops measured (K)", ylabel=name, ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("few-shot tables: K ops + 10 whole subnets, other devices' tables", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    targets = {name: local_target(name, args) for name in LOCAL}
    rows: list[dict[str, Any]] = []
    for name, target in targets.items():
        sources = {s: t.table for s, t in targets.items() if s != name}
        rows += [*rows_for(target, sources, args.seed), full_row(target)]
    note10 = note10_target(args)
    rows += rows_for(note10, {}, args.seed)
    projected = {
        f"{s} (projected to w1.2)": project_source(t.table, note10.space, note10.ops)
        for s, t in targets.items()
    }
    rows += [*rows_for(note10, projected, args.seed), full_row(note10)]
    out = Path(args.out)
    document = {
        "rows": rows,
        "ground_truth": {t.name: t.ground_truth for t in [*targets.values(), note10]},
        "whole_subnets": f"{N_SUBNETS} per target: the first calibration subnets of its profile (local) or Note10 sums",
        "method": "ofabench.latency.transfer (see its docstring)",
        "fraction_measured": "K / entries of the full table; fraction_of_full_measurements: K / entries the full table measured",
        "wall_s": round(time.perf_counter() - start, 1),
        "provenance": provenance(command="python benchmarks/bench_fewshot.py"),
    }
    write_json(out, document)
    plot(rows, out.with_suffix(".png"))
    print(
        json.dumps([{k: r[k] for k in ("target", "k", "within_10", "kendall_tau")} for r in rows])
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""NSGA-II's two engines on the ImageNet space, against the 10-budget OFA sweep, in one process.

The NSGA-II baseline of ``reports/imagenet_<device>`` runs once over the whole sweep with the
sweep's total evaluations (501,000: 10 budgets x (100 + 500 x 100)). ``engine="pymoo"`` runs
pymoo's ``NSGA2`` class (per-individual objects); ``engine="arrays"`` (the default since this
benchmark) the same generation on numpy arrays with pymoo's sorting, crowding, SBX and
polynomial mutation functions. For each seed, both engines and the sweep run in turn; reported:
wall seconds (median over seeds), their ratios, evaluations, predictor rows, and the hypervolume
of each engine's front (latency ms x top-1 points, the report's reference point) with its spread
over seeds, so that the faster engine is seen to find fronts as good.

    python benchmarks/bench_nsga2.py            # writes benchmarks/results/nsga2_imagenet.json

Inputs as ``bench_sweep.py``: the ``ofa_mbv3_w1.2`` space, OFA's predictor (``--predictor``) and
a device's committed table and report (``--device``, default cpu-onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ofabench.provenance import provenance, write_json  # noqa: E402
from ofabench.search.nsga2 import nsga2  # noqa: E402
from ofabench.search.pareto import hypervolume_2d, hypervolume_spread  # noqa: E402
from ofabench.search.problem import load_problem  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_sweep import sweep  # noqa: E402  (the same sweep bench_sweep.py times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu-onnxruntime")
    p.add_argument("--predictor", default="ofa:../shared/data/ofa_reference/acc_predictor.pth")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--evaluations", type=int, help="default: the report's NSGA-II evaluations")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "nsga2_imagenet.json"))
    args = p.parse_args(argv)
    report = json.loads((ROOT / "reports" / f"imagenet_{args.device}" / "pareto.json").read_text())
    budgets = [float(b) for b in report["budgets"]]
    n_evals = args.evaluations or int(report["evaluations"]["nsga2"])
    ref = report["summary"]["latency_ms"]["reference"]
    ref_cost, ref_score = float(ref["cost"]), 100.0 * float(ref["accuracy"])
    problem = load_problem("ofa_mbv3_w1.2", args.predictor, device=args.device)
    (cost,) = problem.constraints({"latency_ms": max(budgets)})

    seconds: dict[str, list[float]] = {"nsga2_arrays": [], "nsga2_pymoo": [], "ofa_sweep": []}
    fronts: dict[str, list[tuple[list[float], list[float]]]] = {"arrays": [], "pymoo": []}
    counts: dict[str, list[dict[str, int]]] = {"arrays": [], "pymoo": [], "sweep": []}
    for seed in range(args.seeds):
        for engine in ("arrays", "pymoo"):
            front = nsga2(problem.space, problem.predict, cost, [], n_evals, 100, seed,
                          engine=engine)  # fmt: skip
            seconds[f"nsga2_{engine}"].append(front.wall_time_s)
            costs = front.costs[cost.name].tolist()
            fronts[engine].append((costs, (100.0 * front.scores).tolist()))
            counts[engine].append({"evaluations": front.n_evaluations,
                                   "predictor_rows": front.settings["n_predicted"]})  # fmt: skip
            hv = hypervolume_2d(costs, 100.0 * front.scores, ref_cost, ref_score)
            print(f"seed {seed} {engine}: {front.wall_time_s:.1f} s, {len(costs)} points, "
                  f"hypervolume {hv:.1f}", file=sys.stderr)  # fmt: skip
        wall, results, rows = sweep(problem, budgets, "lockstep", seed=seed)
        seconds["ofa_sweep"].append(wall)
        counts["sweep"].append(
            {"evaluations": sum(r.n_evaluations for r in results), "predictor_rows": rows}
        )
        print(f"seed {seed} sweep: {seconds['ofa_sweep'][-1]:.1f} s", file=sys.stderr)

    median = {k: statistics.median(v) for k, v in seconds.items()}
    data = {
        "benchmark": "nsga2_imagenet",
        "command": " ".join(["python", "benchmarks/bench_nsga2.py", *(argv or sys.argv[1:])]),
        "device_table": args.device,
        "evaluations": n_evals,
        "population": 100,
        "seconds": seconds,
        "median_s": median,
        "arrays_speedup_over_pymoo": median["nsga2_pymoo"] / median["nsga2_arrays"],
        "arrays_over_sweep": median["nsga2_arrays"] / median["ofa_sweep"],
        "counts": counts,
        "hypervolume_reference": {"latency_ms": ref_cost, "top1": ref_score},
        "hypervolume": {
            engine: hypervolume_spread(runs, ref_cost, ref_score) for engine, runs in fronts.items()
        },
        "loadavg_1min_end": os.getloadavg()[0],  # other work on the machine (ratios still hold)
        "provenance": provenance(space="ofa_mbv3_w1.2"),
    }
    write_json(args.out, data)
    summary = {k: data[k] for k in ("median_s", "arrays_speedup_over_pymoo", "arrays_over_sweep")}
    summary["hypervolume"] = {e: round(h["mean"], 1) for e, h in data["hypervolume"].items()}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

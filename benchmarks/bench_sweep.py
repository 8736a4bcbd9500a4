#!/usr/bin/env python
"""What a 10-budget OFA sweep on the ImageNet space costs, three ways in the same process,
alternating, several repeats: the budgets in lockstep with one predictor cache (what ``ofabench
pareto`` / ``replay`` / the study do: ``evolve_many``, one predictor call per generation for all
budgets), one after another with one shared cache (before), and with a cache per budget (the
first version).

Inputs: the ``ofa_mbv3_w1.2`` space, OFA's accuracy predictor (``--predictor``, default
``ofa:../shared/data/ofa_reference/acc_predictor.pth``) and a device's committed latency table
(``--device``, default cpu-onnxruntime); budgets: the 10 of ``reports/imagenet_<device>``
(spread from the 5% latency quantile of random subnets to the largest). Population 100, 500
generations, seed 0. Reports each way's wall seconds (median over ``--repeats``), the ratios,
the predictor rows each computed, and how many budgets found the same architecture each way
(the MLP's last bit depends on the batch's size, which lockstep changes; see ``evolve``).

    python benchmarks/bench_sweep.py            # writes benchmarks/results/sweep_imagenet.json

The ratios are what the changes buy; the absolute seconds depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ofabench.provenance import provenance, write_json  # noqa: E402
from ofabench.search.problem import load_problem, run_search, run_searches  # noqa: E402

MODES = ("per_budget_cache", "shared_cache", "lockstep")


def sweep(problem, budgets, mode: str = "lockstep", seed: int = 0) -> tuple[float, list, int]:
    """The 10-budget OFA sweep (population 100, 500 generations) one of the ``MODES`` ways:
    its wall seconds, results and predictor rows."""
    start = time.perf_counter()
    if mode == "lockstep":
        results = run_searches(problem, [{"latency_ms": b} for b in budgets], 100, 500, seed)
    else:
        cache: dict[bytes, float] | None = {} if mode == "shared_cache" else None
        results = [
            run_search(problem, {"latency_ms": b}, "evolution", 100, 500, seed, score_cache=cache)
            for b in budgets
        ]
    seconds = time.perf_counter() - start
    return seconds, results, sum(r.settings["n_predicted"] for r in results)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu-onnxruntime")
    p.add_argument("--predictor", default="ofa:../shared/data/ofa_reference/acc_predictor.pth")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep_imagenet.json"))
    args = p.parse_args(argv)
    report = json.loads((ROOT / "reports" / f"imagenet_{args.device}" / "pareto.json").read_text())
    budgets = [float(b) for b in report["budgets"]]
    problem = load_problem("ofa_mbv3_w1.2", args.predictor, device=args.device)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    predicted: dict[str, int] = {}
    best: dict[str, list] = {}
    for _ in range(args.repeats):
        for mode in MODES:
            seconds, results, n = sweep(problem, budgets, mode)
            times[mode].append(seconds)
            predicted[mode] = n
            best[mode] = [(r.best.to_dict(), r.best_score) for r in results]
            print(f"{mode}: {seconds:.2f} s, {n} predictor rows", file=sys.stderr)
    median = {k: statistics.median(v) for k, v in times.items()}
    reference = best["per_budget_cache"]
    data = {
        "benchmark": "sweep_imagenet",
        "command": " ".join(["python", "benchmarks/bench_sweep.py", *(argv or sys.argv[1:])]),
        "device_table": args.device,
        "budgets_ms": budgets,
        "seconds": times,
        "median_s": median,
        "speedup": {
            "shared_cache_over_per_budget": median["per_budget_cache"] / median["shared_cache"],
            "lockstep_over_shared_cache": median["shared_cache"] / median["lockstep"],
        },
        "predictor_rows": predicted,
        "same_architecture_as_per_budget_cache": {
            m: sum(a[0] == b[0] for a, b in zip(best[m], reference)) for m in MODES
        },
        "largest_score_difference": {
            m: max(abs(a[1] - b[1]) for a, b in zip(best[m], reference)) for m in MODES
        },
        "n_budgets": len(budgets),
        "target_s": 5.0,
        "loadavg_1min_end": os.getloadavg()[0],  # other work on the machine (ratios still hold)
        "provenance": provenance(space="ofa_mbv3_w1.2"),
    }
    write_json(args.out, data)
    keys = ("median_s", "speedup", "predictor_rows", "same_architecture_as_per_budget_cache")
    print(json.dumps({k: data[k] for k in keys}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

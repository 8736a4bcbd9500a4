#!/usr/bin/env python
"""What a 10-budget OFA sweep on the ImageNet space costs, with the predictor cache shared by the
budgets (what ``ofabench pareto`` / ``replay`` do since this benchmark) against one cache per
budget (before), in the same process, alternating, several repeats.

Inputs: the ``ofa_mbv3_w1.2`` space, OFA's accuracy predictor (``--predictor``, default
``ofa:../shared/data/ofa_reference/acc_predictor.pth``) and a device's committed latency table
(``--device``, default cpu-onnxruntime); budgets: the 10 of ``reports/imagenet_<device>``
(spread from the 5% latency quantile of random subnets to the largest). Population 100, 500
generations, seed 0. Reports each way's wall seconds (median over ``--repeats``), their ratio,
the predictor rows each computed, and checks that both found the same architectures.

    python benchmarks/bench_sweep.py            # writes benchmarks/results/sweep_imagenet.json

The ratio is what the change buys; the absolute seconds depend on what else the machine runs.
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
from ofabench.search.problem import load_problem, run_search  # noqa: E402


def sweep(problem, budgets, shared: bool, seed: int = 0) -> tuple[float, list, int]:
    """The 10-budget OFA sweep (population 100, 500 generations): its wall seconds, results and
    predictor rows; ``shared``: one predictor cache for all budgets."""
    cache: dict[bytes, float] | None = {} if shared else None
    start = time.perf_counter()
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
    times: dict[str, list[float]] = {"per_budget_cache": [], "shared_cache": []}
    predicted: dict[str, int] = {}
    best: dict[str, list] = {}
    for _ in range(args.repeats):
        for name, shared in (("per_budget_cache", False), ("shared_cache", True)):
            seconds, results, n = sweep(problem, budgets, shared)
            times[name].append(seconds)
            predicted[name] = n
            best[name] = [r.best.to_dict() for r in results]
            print(f"{name}: {seconds:.2f} s, {n} predictor rows", file=sys.stderr)
    median = {k: statistics.median(v) for k, v in times.items()}
    data = {
        "benchmark": "sweep_imagenet",
        "command": " ".join(["python", "benchmarks/bench_sweep.py", *(argv or sys.argv[1:])]),
        "device_table": args.device,
        "budgets_ms": budgets,
        "seconds": times,
        "median_s": median,
        "speedup": median["per_budget_cache"] / median["shared_cache"],
        "predictor_rows": predicted,
        "same_architectures": best["per_budget_cache"] == best["shared_cache"],
        "target_s": 5.0,
        "loadavg_1min_end": os.getloadavg()[0],  # other work on the machine (ratios still hold)
        "provenance": provenance(space="ofa_mbv3_w1.2"),
    }
    write_json(args.out, data)
    print(json.dumps({k: data[k] for k in ("median_s", "speedup", "predictor_rows",
                                           "same_architectures")}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

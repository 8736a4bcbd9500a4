#!/usr/bin/env python
"""How well does one subnet's measured latency repeat on this machine? The floor under any
latency table's fidelity: a table cannot predict a measurement more closely than the
measurement repeats itself.

For each device and each of a few fixed random subnets of the ImageNet space (one per
``--resolutions`` entry), the subnet is converted and measured ``--sessions`` times in a row,
each time in a fresh session (a new ONNX Runtime session, LiteRT interpreter, TVM module or
torch module: as ``ofabench validate`` measures every subnet), with ofabench's default timing
(warm-up 10, rounds of 30 runs). Per subnet it reports, across the sessions, the coefficient of
variation and the range of four statistics of the timed runs: the median of the calmest round
(what ofabench stores), the median of all runs, the 10th percentile and the minimum; and the
share of sessions within +-2.5% and +-5% of the sessions' median.

    python benchmarks/bench_latency_repeatability.py                   # ORT, torch, LiteRT
    python benchmarks/bench_latency_repeatability.py --devices cpu-onnxruntime --sessions 20

Writes ``benchmarks/results/latency_repeatability.json`` (``--out``); ``--json`` prints it.
Run it on a machine doing nothing else.
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
STATISTICS = ("calmest_round_median", "median", "p10", "min")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="cpu-onnxruntime,cpu-torch,cpu-litert")
    p.add_argument("--resolutions", default="160,224", help="one random subnet at each")
    p.add_argument("--sessions", type=int, default=12, help="fresh sessions per subnet")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "results" / "latency_repeatability.json")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p.parse_args(argv)


def session_stats(backend: Any, module: Any, shape: tuple[int, ...]) -> dict[str, float]:
    """One fresh session: warm-up 10, three rounds of 30 timed runs (ofabench's defaults)."""
    from ofabench.devices.base import MeasureSettings

    settings = MeasureSettings()
    prepared = backend.prepare(module, shape)
    try:
        backend.run_many(prepared, settings.warmup)
        rounds = [
            np.asarray(backend.run_many(prepared, settings.repeats), dtype=np.float64) * 1e3
            for _ in range(3)
        ]
    finally:
        backend.close(prepared)
    runs = np.concatenate(rounds)
    return {
        "calmest_round_median": float(min(np.median(r) for r in rounds)),
        "median": float(np.median(runs)),
        "p10": float(np.percentile(runs, 10)),
        "min": float(runs.min()),
        "time": time.time(),
    }


def spread(values: np.ndarray) -> dict[str, float]:
    rel = values / np.median(values) - 1.0
    return {
        "cv_pct": float(100 * values.std() / values.mean()),
        "range_pct": float(100 * np.ptp(values) / np.median(values)),
        "within_2.5": float(np.mean(np.abs(rel) <= 0.025)),
        "within_5": float(np.mean(np.abs(rel) <= 0.05)),
    }


def run_device(device: str, resolutions: list[int], sessions: int, seed: int) -> list[dict]:
    from ofabench.devices.profiles import load_profile
    from ofabench.latency.ops import build_subnet_module
    from ofabench.latency.profiler import open_backend
    from ofabench.space import get_space

    space = get_space("ofa_mbv3_w1.0")
    backend = open_backend(load_profile(device))
    out = []
    for i, r in enumerate(resolutions):
        arch = space.restrict(resolutions=[r]).sample(np.random.default_rng(seed + i))
        module, shape = build_subnet_module(space, arch)
        rows = [session_stats(backend, module, shape) for _ in range(sessions)]
        print(f"{device} r={r}: {len(rows)} sessions", file=sys.stderr, flush=True)
        out.append({
            "arch": arch.to_dict(),
            "sessions": rows,
            **{name: spread(np.array([x[name] for x in rows])) for name in STATISTICS},
        })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ofabench.provenance import provenance, write_json

    resolutions = [int(r) for r in args.resolutions.split(",")]
    devices = [d for d in args.devices.split(",") if d]
    results = {d: run_device(d, resolutions, args.sessions, args.seed) for d in devices}
    doc = {
        "benchmark": "latency_repeatability",
        "command": " ".join(
            ["python", "benchmarks/bench_latency_repeatability.py", *(argv or sys.argv[1:])]
        ),
        "settings": {"sessions": args.sessions, "resolutions": resolutions, "seed": args.seed},
        "devices": results,
        "provenance": provenance(),
    }
    write_json(args.out, doc)
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print("| device | r | statistic | CV % | range % | sessions within ±2.5% | within ±5% |")
    print("|---|---|---|---|---|---|---|")
    for device, subnets in results.items():
        for s in subnets:
            for name in STATISTICS:
                x = s[name]
                print(
                    f"| {device} | {s['arch']['r']} | {name} | {x['cv_pct']:.2f} | "
                    f"{x['range_pct']:.1f} | {100 * x['within_2.5']:.0f}% | "
                    f"{100 * x['within_5']:.0f}% |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Is this machine quiet enough to make a latency table now? The noise floor of one backend,
split into its parts, in about a minute.

One fixed subnet of the ImageNet space (seeded, ``--resolution`` px) is prepared in ``--sessions``
separate sessions (ONNX Runtime sessions, LiteRT interpreters, torch modules ...) at once; then
``--rounds`` rounds each measure every session once, interleaved, with ofabench's timing of one
measurement (warm-up, then a round of ``--repeats`` runs, its median). From the matrix of
medians (rounds x sessions):

- ``within_session_cv``: how much one session's measurement repeats from round to round (the
  machine's speed moving at the scale of seconds, plus timing noise);
- ``between_round_cv``: the spread of the rounds' means (every session moved together: the
  machine's speed, which a probe timed alongside can take out);
- ``between_session_cv`` and ``rank_stability``: the spread of the sessions' means and whether
  their order repeats between the first and second half of the rounds (a per-session effect,
  such as memory layout, which no probe can take out);
- ``verdict``: whether a single measurement is likely to repeat within +-5% (2 x within-session
  CV <= 5%).

    python benchmarks/bench_latency_noise.py --device cpu-onnxruntime
    python benchmarks/bench_latency_noise.py --device cpu-torch --out results/noise_torch.json

Appends one record per run to ``benchmarks/results/latency_noise.json`` (``--out``), so that
noisy and quiet spells of the same machine can be compared. Run it with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu-onnxruntime")
    p.add_argument("--space", default="ofa_mbv3_w1.0")
    p.add_argument("--resolution", type=int, default=160)
    p.add_argument("--seed", type=int, default=3, help="which random subnet")
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--out", type=Path, default=HERE / "results" / "latency_noise.json")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    args = p.parse_args(argv)
    if args.sessions < 2 or args.rounds < 4:
        p.error("--sessions must be >= 2 and --rounds >= 4")
    return args


def noise_figures(t: np.ndarray) -> dict[str, float]:
    """The figures of a (rounds x sessions) matrix of medians (see the module docstring)."""
    from scipy.stats import spearmanr

    mean = float(t.mean())
    per_session, per_round = t.mean(axis=0), t.mean(axis=1)
    half = t.shape[0] // 2
    rho = spearmanr(t[:half].mean(axis=0), t[half:].mean(axis=0)).statistic
    return {
        "mean_ms": mean,
        "within_session_cv": float(t.std(axis=0, ddof=1).mean() / mean),
        "between_round_cv": float(per_round.std(ddof=1) / mean),
        "between_session_cv": float(per_session.std(ddof=1) / mean),
        "rank_stability": float(rho),
    }


def measure(args: argparse.Namespace) -> np.ndarray:
    import torch

    from ofabench.devices.base import MeasureSettings
    from ofabench.devices.profiles import load_profile
    from ofabench.latency.profiler import build_subnet_module
    from ofabench.space import ArchConfig, get_space

    torch.set_num_threads(1)
    space = get_space(args.space)
    sampled = space.sample(np.random.default_rng(args.seed))
    arch = ArchConfig(sampled.ks, sampled.e, sampled.d, args.resolution)
    backend = load_profile(args.device).open()
    module, shape = build_subnet_module(space, arch)
    settings = MeasureSettings(warmup=args.warmup, repeats=args.repeats, max_rounds=1)
    prepared = [backend.prepare(module, shape) for _ in range(args.sessions)]
    t = np.zeros((args.rounds, args.sessions))
    try:
        for r in range(args.rounds):
            for k, session in enumerate(prepared):
                t[r, k] = backend.measure_prepared(session, settings).median_ms
    finally:
        for session in prepared:
            backend.close(session)
    return t


def main(argv: list[str] | None = None) -> int:
    from ofabench.provenance import provenance, write_json

    args = parse_args(argv)
    start = time.time()
    load_before = os.getloadavg()
    t = measure(args)
    figures = noise_figures(t)
    record: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start)),
        "device": args.device,
        "subnet": {"space": args.space, "seed": args.seed, "resolution": args.resolution},
        "sessions": args.sessions,
        "rounds": args.rounds,
        "timing": {"warmup": args.warmup, "repeats": args.repeats},
        "medians_ms": np.round(t, 4).tolist(),
        **{k: round(v, 5) for k, v in figures.items()},
        "verdict": {
            "single_measurement_within_5pct_likely": 2 * figures["within_session_cv"] <= 0.05,
            "rule": "2 x within-session CV <= 5%",
        },
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": round(time.time() - start, 1),
        "provenance": provenance(),
    }
    runs = []
    if args.out.exists():
        runs = json.loads(args.out.read_text()).get("runs", [])
    write_json(args.out, {"benchmark": "latency_noise", "runs": [*runs, record]})
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(
            f"{args.device}: within-session CV {100 * figures['within_session_cv']:.2f}%, "
            f"between rounds {100 * figures['between_round_cv']:.2f}%, between sessions "
            f"{100 * figures['between_session_cv']:.2f}% (rank stability "
            f"{figures['rank_stability']:.2f}); single measurement within ±5% likely: "
            f"{record['verdict']['single_measurement_within_5pct_likely']}  -> {args.out}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

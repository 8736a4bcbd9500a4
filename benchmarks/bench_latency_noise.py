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
import sys
import time
from pathlib import Path
from typing import Any

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


def main(argv: list[str] | None = None) -> int:
    from ofabench.devices.base import MeasureSettings
    from ofabench.latency.noise import measure_noise
    from ofabench.provenance import provenance, write_json

    args = parse_args(argv)
    settings = MeasureSettings(warmup=args.warmup, repeats=args.repeats, max_rounds=1)
    report = measure_noise(args.device, args.space, args.resolution, args.seed, args.sessions,
                           args.rounds, settings)  # fmt: skip
    record: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **report.to_dict(),
        "provenance": provenance(),
    }
    runs = []
    if args.out.exists():
        runs = json.loads(args.out.read_text()).get("runs", [])
    write_json(args.out, {"benchmark": "latency_noise", "runs": [*runs, record]})
    print(json.dumps(record, indent=2) if args.json else f"{report.summary()}  -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

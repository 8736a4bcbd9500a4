#!/usr/bin/env python
"""Cost and fidelity of a device's latency table: profile the ImageNet OFA space, then validate
the table against end-to-end measurements of random subnets.

1. ``ofabench.latency.profiler.profile_device``: every op of the space at every resolution
   (``--resolutions all``: the 25 of 128..224), measuring only ``--fit-resolutions`` (default
   ``every:4``: 128, 144, ..., 224) and fitting the others' ops linearly in H*W, then
   ``--calibrate K`` random subnets end to end for the scale/overhead term. The wall time of
   this step is the cost of a complete table (target: <= 10 min on this 2-core machine).
2. ``ofabench.latency.validate.validate_device``: ``--n`` fresh random subnets (another seed than
   the calibration's) measured end to end; fidelity of the plain LUT sum and of the calibrated
   model (target: >= 95% within +-5%, >= 99% within +-10%).

Writes ``benchmarks/results/latency_<device>.json`` (``--out``): cost, per-op timings, the
projected cost of the full run (from this run's seconds per op, useful after a reduced run),
fidelity with and without calibration, the measurement settings and provenance. The table and the
validation files go to ``--work-dir`` (default ``benchmarks/results/latency_<device>/``); a killed
run resumes from them (its cost is then flagged as not measured in one go), ``--fresh`` starts
over.

    python benchmarks/bench_latency_fidelity.py --device cpu-onnxruntime --n 100
    python benchmarks/bench_latency_fidelity.py --device cpu-litert --n 100
    # a quick check (2-3 resolutions, 10 subnets), written elsewhere:
    python benchmarks/bench_latency_fidelity.py --device cpu-onnxruntime --resolutions 192,208,224 \\
        --fit-resolutions every:2 --n 10 --calibrate 5 --out /tmp/latency.json --work-dir /tmp/lat

Per-op cost on this machine (2 cores, loaded): ONNX Runtime ~0.3-0.4 s, LiteRT ~0.35 s, torch
~0.3 s (conversion and timing), TVM untuned ~2.6 s (compile ~1-1.5 s per block); whole subnets
~4 s (ORT), ~5 s (torch), ~14 s (LiteRT: XNNPACK's slow 7x7 depthwise), ~60 s (TVM untuned).
For TVM use lighter timing, e.g. ``--repeats 10 --warmup 3 --max-rounds 3 --fit-resolutions
every:8``: untuned blocks run for milliseconds, and compilation dominates.

Progress goes to stderr; the summary to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCHEMA = 1
TARGETS = {"within_5": 0.95, "within_10": 0.99, "profile_wall_s": 600.0}


def _bench_common() -> Any:
    """bench_supernet.py's shared helpers (git state, CPU meter), imported from beside this file."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_supernet

    return bench_supernet


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--device", default="cpu-onnxruntime", help="device profile name or path")
    p.add_argument("--space", default="ofa_mbv3_w1.0")
    p.add_argument("--resolutions", default="all", help="comma list or all")
    p.add_argument("--fit-resolutions", default="every:4", help="every:N, measure:R1,.. or none")
    p.add_argument("--max-fit-rms", type=float, default=0.05, help="measure badly fitting groups")
    p.add_argument("--profile-passes", type=int, default=1,
                   help="sweeps over the ops when profiling, each op keeping its fastest")
    p.add_argument("--calibrate", type=int, default=20, help="subnets for the calibration term")
    p.add_argument("--calibration-method", choices=["auto", "affine", "ratio"], default="auto")
    p.add_argument(
        "--calibrate-split", type=float, help="also fit a calibration on this share of the n"
    )
    p.add_argument("--anchor", type=int, default=0,
                   help="validation first re-measures this many calibration subnets "
                   "(table_anchored; judged on when given)")
    p.add_argument("--n", type=int, default=100, help="validation subnets")
    p.add_argument("--passes", type=int, default=2, help="validation sweeps (fastest kept)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--max-rounds", type=int, default=4)
    p.add_argument("--seed", type=int, default=0, help="calibration seed; validation uses seed+1")
    p.add_argument("--out", type=Path, help="results JSON (default results/latency_<device>.json)")
    p.add_argument("--work-dir", type=Path, help="table and validation files")
    p.add_argument("--fresh", action="store_true", help="delete the work dir's files first")
    p.add_argument(
        "--probe-mode",
        choices=["paired", "rounds", "off"],
        default=None,
        help="drift probe: timed alternately with every item, read between rounds, or not at "
        "all (default: the device profile's probe_mode)",
    )
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class ProgressLog:
    """Logs every ~10% and records when each item finished (for seconds per op)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.times: list[float] = []
        self.keys: list[str] = []
        self.start = time.perf_counter()
        self._next = 0.0

    def __call__(self, done: int, total: int, key: str) -> None:
        if done == 0:
            self.start = time.perf_counter()
            log(f"{self.what}: {total} to measure")
            return
        self.times.append(time.perf_counter())
        self.keys.append(key)
        if done / max(total, 1) >= self._next or done == total:
            elapsed = self.times[-1] - self.start
            eta = elapsed / done * (total - done)
            log(f"{self.what}: {done}/{total} ({elapsed:.0f} s, ETA {eta:.0f} s) {key[:70]}")
            self._next = done / total + 0.1

    def durations(self) -> list[tuple[str, float]]:
        starts = [self.start, *self.times[:-1]]
        return [(k, t - s) for k, s, t in zip(self.keys, starts, self.times)]


def timing_summary(durations: list[tuple[str, float]]) -> dict[str, Any]:
    """Seconds per measured item, overall and per op kind (calibration subnets apart)."""
    import numpy as np

    groups: dict[str, list[float]] = {}
    for key, seconds in durations:
        if key.startswith("calibration"):
            kind = "calibration_subnet"
        elif key.startswith("subnet"):
            kind = "subnet pass " + key.rsplit("pass ", 1)[-1].rstrip(")")
        else:
            kind = key.split("-")[0]
        groups.setdefault(kind, []).append(seconds)
    out = {}
    for kind, values in sorted(groups.items()):
        arr = np.asarray(values)
        out[kind] = {
            "n": int(arr.size),
            "mean_s": round(float(arr.mean()), 4),
            "median_s": round(float(np.median(arr)), 4),
            "max_s": round(float(arr.max()), 4),
            "total_s": round(float(arr.sum()), 2),
        }
    return out


def projection(args: argparse.Namespace, space: Any, timings: dict[str, Any]) -> dict[str, Any]:
    """Projected wall time of a complete table of the whole space with this run's fit schedule
    and calibration, from this run's seconds per op (and per calibration subnet)."""
    from ofabench.latency.profiler import measured_resolutions, plan_profile

    measure_at = measured_resolutions(space.resolutions, args.fit_resolutions)
    plan = plan_profile(space, space.resolutions, measure_at)
    op_items = [v for k, v in timings.items() if k != "calibration_subnet"]
    n_ops = sum(v["n"] for v in op_items)
    if not n_ops:
        return {}
    s_per_op = sum(v["total_s"] for v in op_items) / n_ops
    s_per_subnet = timings.get("calibration_subnet", {}).get("mean_s", 0.0)
    n_all = len(plan.to_measure) + len(plan.to_fit)
    return {
        "fit_resolutions": args.fit_resolutions,
        "measured_resolutions": list(measure_at),
        "ops_to_measure": len(plan.to_measure),
        "ops_fitted": len(plan.to_fit),
        "s_per_op": round(s_per_op, 4),
        "s_per_calibration_subnet": s_per_subnet,
        "projected_profile_s": round(
            s_per_op * len(plan.to_measure) + s_per_subnet * args.calibrate, 1
        ),
        "projected_profile_s_measuring_all": round(
            s_per_op * n_all + s_per_subnet * args.calibrate, 1
        ),
        "note": "the per-op mix of this run may differ from the full space's (large early blocks "
        "at high resolutions cost more)",
    }


def fidelity_verdict(metrics: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """Judged on the table as used: anchored when the run anchored (``--anchor``), else its
    stored calibration, else the plain sum (the held-out split is reported, not judged)."""
    judged = next(k for k in ("table_anchored", "table_calibrated", "plain") if k in metrics)
    best = metrics[judged]
    return {
        "targets": TARGETS,
        "within_5_ok": best["within_5"] >= TARGETS["within_5"],
        "within_10_ok": best["within_10"] >= TARGETS["within_10"],
        "profile_wall_ok": wall_s <= TARGETS["profile_wall_s"],
        "judged_on": judged,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ofabench.devices.base import MeasureSettings
    from ofabench.devices.profiles import load_profile
    from ofabench.latency.probe import ProbeSettings
    from ofabench.latency.profiler import profile_device
    from ofabench.latency.validate import validate_device
    from ofabench.provenance import provenance, write_json
    from ofabench.space import get_space

    profile = load_profile(args.device)
    space = get_space(args.space)
    work = args.work_dir or HERE / "results" / f"latency_{profile.name}"
    out = args.out or HERE / "results" / f"latency_{profile.name}.json"
    if args.fresh and work.exists():
        shutil.rmtree(work)
    settings = MeasureSettings(warmup=args.warmup, repeats=args.repeats, max_rounds=args.max_rounds)
    probe = (
        ProbeSettings(enabled=False)
        if args.probe_mode == "off"
        else ProbeSettings(mode=args.probe_mode)
    )
    load_start = os.getloadavg()

    progress = ProgressLog("profile")
    profiled = profile_device(
        profile,
        space,
        resolutions=args.resolutions,
        out_path=work / f"{space.name}.json",
        settings=settings,
        fit_resolutions=args.fit_resolutions,
        progress=progress,
        calibrate=args.calibrate,
        seed=args.seed,
        calibration_method=args.calibration_method,
        max_fit_rms=args.max_fit_rms,
        passes=args.profile_passes,
        probe=probe,
    )
    timings = timing_summary(progress.durations())
    log(f"profile: {profiled.n_entries} entries in {profiled.wall_s:.0f} s")

    checking = ProgressLog("validate")
    validated = validate_device(
        profile,
        space,
        table=profiled.path,
        n=args.n,
        seed=args.seed + 1,
        out_dir=work / "validation",
        settings=settings,
        passes=args.passes,
        progress=checking,
        calibrate_split=args.calibrate_split,
        calibration_method=args.calibration_method,
        probe=probe,
        anchor=args.anchor,
    )
    metrics = {k: m.to_dict() for k, m in validated.metrics.items()}
    result = {
        "schema": SCHEMA,
        "benchmark": "latency_fidelity",
        "command": " ".join(
            ["python", "benchmarks/bench_latency_fidelity.py", *(argv or sys.argv[1:])]
        ),
        "device": profile.name,
        "backend": profile.backend,
        "device_settings": dict(profile.settings),
        "space": space.name,
        "measure_settings": dataclasses.asdict(settings),
        "probe_settings": probe.to_dict(),
        "profile": {
            **profiled.to_dict(),
            "complete_in_one_run": profiled.n_skipped == 0,
            "passes": args.profile_passes,
            "seconds_per_item": timings,
        },
        "projection_full_space": projection(args, space, timings),
        "validation": {
            "n": validated.n,
            "passes": validated.passes,
            "seed": args.seed + 1,
            "wall_s": round(validated.wall_s, 1),
            "measured_in_this_run": validated.n_measured_now,
            "seconds_per_subnet": timing_summary(checking.durations()),
            "metrics": metrics,
            "calibration": dict(validated.calibration),
            "files": dict(validated.files),
        },
        "verdict": fidelity_verdict(metrics, profiled.wall_s),
        "loadavg_start": [round(v, 2) for v in load_start],
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "git": _bench_common().git_state(),
        "provenance": provenance(device=profile.name, backend=profile.backend, space=space.name),
    }
    write_json(out, result)
    log(f"wrote {out}")
    summary = {
        "profile_wall_s": round(profiled.wall_s, 1),
        "n_measured": profiled.n_measured,
        "n_fitted": profiled.n_fitted,
        "projected_full_profile_s": result["projection_full_space"].get("projected_profile_s"),
        **{f"{k}_within_5": v["within_5"] for k, v in metrics.items()},
        **{f"{k}_within_10": v["within_10"] for k, v in metrics.items()},
        **{f"{k}_mape": round(v["mape"], 2) for k, v in metrics.items()},
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

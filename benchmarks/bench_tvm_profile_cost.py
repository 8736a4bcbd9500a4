#!/usr/bin/env python
"""What a TVM latency table costs: compiling each op in-line (as ``compile_pool: false``) vs
compiling every op first in a process pool into a library cache, then timing (the default since
issue 15, part 4). Both paths in one run, on the same ops, with the same timing settings.

The ops are those ``ofabench profile`` measures first for ``--space`` with ``--fit-resolutions``
(before any badly fitting group is measured too). In-line: per op, ``backend.prepare`` (ONNX
export, Relax import, ``tvm.compile``) is timed as compile seconds and
``backend.measure_prepared`` as timing seconds. Pool: ``prebuild_ops`` into a fresh cache (wall
seconds; the workers' own compile seconds besides), then every op loaded from its library and
timed. Reports both paths' compile, timing and total seconds, their ratios (in-line / pool), and
how the two paths' medians agree (the same compiled code either way: within noise).

    python benchmarks/bench_tvm_profile_cost.py --space small32_w0.5 --resolutions 24 --limit 20
    python benchmarks/bench_tvm_profile_cost.py --space ofa_mbv3_w1.0 --fit-resolutions every:8

Writes ``benchmarks/results/tvm_profile_cost_<space>.json`` (``--out``). The ImageNet run takes
about half an hour: run it on a machine doing nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu-tvm", help="a tvm device profile")
    p.add_argument("--space", default="small32_w0.5")
    p.add_argument("--resolutions", default="all", help="'all' or comma-separated")
    p.add_argument("--fit-resolutions", default="none", help="as ofabench profile's")
    p.add_argument("--limit", type=int, default=0, help="only the first N ops (0: all)")
    p.add_argument("--workers", type=int, default=0, help="pool workers (0: the cores)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--max-rounds", type=int, default=3)
    p.add_argument("--out", type=Path, help="default results/tvm_profile_cost_<space>.json")
    return p.parse_args(argv)


def ops_to_measure(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    from ofabench.latency.profiler import measured_resolutions, plan_profile, select_resolutions
    from ofabench.space import get_space

    space = get_space(args.space)
    resolutions = select_resolutions(space, args.resolutions)
    plan = plan_profile(space, resolutions, measured_resolutions(resolutions, args.fit_resolutions))
    ops = list(plan.to_measure)
    return space, ops[: args.limit] if args.limit else ops


def make_backend(args: argparse.Namespace, **extra: Any) -> Any:
    from ofabench.devices.profiles import load_profile

    profile = load_profile(args.device)
    if profile.backend != "tvm":
        raise SystemExit(f"device {args.device!r} uses backend {profile.backend!r}, not tvm")
    settings = {**dict(profile.settings), **extra}
    if args.workers:
        settings["compile_workers"] = args.workers
    return dataclasses.replace(profile, settings=settings).open()


def inline_path(backend: Any, ops: list[Any], settings: Any) -> dict[str, Any]:
    """Each op compiled in this process, then timed: compile and timing seconds apart."""
    from ofabench.latency.ops import build_op_module

    compile_s = timing_s = 0.0
    medians = {}
    for op in ops:
        module, shape = build_op_module(op)
        start = time.perf_counter()
        prepared = backend.prepare(module, shape)
        compiled = time.perf_counter()
        try:
            medians[op.key] = backend.measure_prepared(prepared, settings).median_ms
        finally:
            backend.close(prepared)
        compile_s += compiled - start
        timing_s += time.perf_counter() - compiled
    return {"compile_s": compile_s, "timing_s": timing_s, "medians": medians}


def pool_path(backend: Any, ops: list[Any], settings: Any) -> dict[str, Any]:
    """Every op compiled in the pool into an empty cache, then each loaded and timed."""
    from ofabench.devices.tvm_build import prebuild_ops

    start = time.perf_counter()
    built = prebuild_ops(backend, ops)
    if built is None:
        raise SystemExit("the compile pool does not apply to this device (remote or tuned)")
    compiled = time.perf_counter()
    medians = {op.key: built.measure(op.key, settings).median_ms for op in ops if op.key in built}
    return {
        "compile_s": compiled - start,
        "worker_compile_s": built.compile_s,
        "workers": built.workers,
        "failed": built.failures,
        "timing_s": time.perf_counter() - compiled,
        "medians": medians,
    }


def summary(path: dict[str, Any]) -> dict[str, Any]:
    out = {k: round(v, 2) if isinstance(v, float) else v for k, v in path.items() if k != "medians"}
    out["total_s"] = round(path["compile_s"] + path["timing_s"], 2)
    return out


def agreement(inline: dict[str, float], pool: dict[str, float]) -> dict[str, Any]:
    """How the pool path's medians compare with the in-line path's, op by op."""
    ratios = np.array([pool[k] / inline[k] for k in inline if k in pool and inline[k] > 0])
    if ratios.size == 0:
        return {"n": 0}
    error = np.abs(ratios - 1.0)
    return {
        "n": int(ratios.size),
        "median_ratio_pool_over_inline": round(float(np.median(ratios)), 4),
        "within_5": round(float(np.mean(error <= 0.05)), 3),
        "within_10": round(float(np.mean(error <= 0.10)), 3),
        "max_abs_error": round(float(error.max()), 4),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ofabench.devices.base import MeasureSettings
    from ofabench.provenance import provenance

    settings = MeasureSettings(args.warmup, args.repeats, args.max_rounds)
    space, ops = ops_to_measure(args)
    load_start = os.getloadavg()
    inline = inline_path(make_backend(args, compile_pool=False), ops, settings)
    with tempfile.TemporaryDirectory(prefix="ofabench-bench-tvm-lib-") as cache:
        pool = pool_path(make_backend(args, build_cache=cache), ops, settings)
    a, b = summary(inline), summary(pool)
    return {
        "schema": 1,
        "benchmark": "tvm_profile_cost",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "device": args.device,
        "space": space.name,
        "n_ops": len(ops),
        "measure_settings": {"warmup": args.warmup, "repeats": args.repeats,
                             "max_rounds": args.max_rounds},
        "inline": a,
        "pool": b,
        "ratio_inline_over_pool": {
            "compile": round(a["compile_s"] / max(b["compile_s"], 1e-9), 3),
            "timing": round(a["timing_s"] / max(b["timing_s"], 1e-9), 3),
            "total": round(a["total_s"] / max(b["total_s"], 1e-9), 3),
        },
        "agreement": agreement(inline["medians"], pool["medians"]),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "provenance": provenance(),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    out = args.out or HERE / "results" / f"tvm_profile_cost_{result['space']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    ratio = result["ratio_inline_over_pool"]
    print(
        f"{result['n_ops']} ops: in-line {result['inline']['total_s']} s "
        f"(compile {result['inline']['compile_s']}, timing {result['inline']['timing_s']}), "
        f"pool {result['pool']['total_s']} s (compile {result['pool']['compile_s']}, timing "
        f"{result['pool']['timing_s']}); in-line / pool: total {ratio['total']}, compile "
        f"{ratio['compile']}, timing {ratio['timing']}; agreement {result['agreement']}; {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

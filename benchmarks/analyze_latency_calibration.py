#!/usr/bin/env python
"""What limits a latency table's fidelity on this machine: calibration methods compared on the
measurements ``bench_latency_fidelity.py`` already made, and the repeatability of those
measurements. Nothing is measured again.

For each device's work dir (``benchmarks/results/latency_<device>/``):

1. **Calibration methods.** The table's calibration subnets (measured end to end during
   profiling, stored in its provenance) fit each method -- plain sum, ``ratio``, ``affine`` and
   ``auto`` (the one with the smallest leave-one-out error on those subnets) -- and each
   predicts the validation subnets (measured minutes later, fastest pass kept, as
   ``ofabench validate`` does): MAPE, share within +-5% and +-10%.
2. **Same-run calibration.** An affine fit on a random half of the *validation* subnets, scored
   on the other half (mean over 200 splits): what calibration reaches when fitted and checked
   on measurements from the same minutes; the gap to (1) is the machine's drift between
   profiling and validation.
3. **Repeatability.** Where validation measured every subnet twice (``--passes 2``), how
   often the two passes over the same subnet agree within +-2.5%, +-5% and +-10%: no table
   can predict a measurement more reliably than the measurement repeats itself.
4. **Calibration level.** An affine fit on *all* the validation subnets (the best a calibration
   of this form could do on them: ``oracle_affine``), and where the table's calibration
   subnets sit against it (median measured / fitted): above 1, they ran slower, relative to
   the probe, at the end of profiling than the validation's subnets did minutes later.

    python benchmarks/analyze_latency_calibration.py            # all devices with results
    python benchmarks/analyze_latency_calibration.py --json     # the figures as JSON
    # other runs' work dirs (each holding <space>.json and validation/), results elsewhere:
    python benchmarks/analyze_latency_calibration.py --work-dirs \
        benchmarks/results/latency_cpu-onnxruntime_paired3 --out /tmp/calibration.json

Writes ``benchmarks/results/latency_calibration.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEVICES = ("cpu-onnxruntime", "cpu-torch", "cpu-litert", "cpu-tvm")
METHODS = ("plain", "ratio", "affine", "auto")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=HERE / "results", help="results folder")
    p.add_argument("--space", default="ofa_mbv3_w1.0")
    p.add_argument("--splits", type=int, default=200, help="random halves for the same-run fit")
    p.add_argument("--out", type=Path, help="default: <results>/latency_calibration.json")
    p.add_argument("--work-dirs", type=Path, nargs="+",
                   help="analyze these runs' work dirs instead of <results>/latency_<device>")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args(argv)


def measurement_column(csv: Path) -> str:
    """``normalised_ms`` (the drift probe's normalisation, what the table's entries and
    calibration are on) where the run recorded it, else the raw ``measured_ms``."""
    import pandas as pd

    df = pd.read_csv(csv, comment="#")
    column = "normalised_ms"
    return column if column in df and df[column].notna().all() else "measured_ms"


def load_validation(csv: Path) -> tuple[list[dict[str, Any]], dict[int, list[float]]]:
    """Archs (by index) and every pass's measurement of each (see :func:`measurement_column`)."""
    import pandas as pd

    df = pd.read_csv(csv, comment="#")
    archs = {int(i): json.loads(a) for i, a in zip(df["index"], df["arch"])}
    passes: dict[int, list[float]] = {}
    for i, ms in zip(df["index"], df[measurement_column(csv)]):
        passes.setdefault(int(i), []).append(float(ms))
    order = sorted(archs)
    return [archs[i] for i in order], {i: passes[i] for i in order}


def repeatability(passes: dict[int, list[float]]) -> dict[str, Any] | None:
    pairs = np.array([p[:2] for p in passes.values() if len(p) >= 2])
    if not len(pairs):
        return None
    diff = np.abs(pairs[:, 1] / pairs[:, 0] - 1.0)
    return {
        "n_subnets": len(pairs),
        "median_abs_diff_pct": float(100 * np.median(diff)),
        **{f"within_{t}": float(np.mean(diff <= t / 100)) for t in (2.5, 5, 10)},
    }


def same_run_affine(sums: np.ndarray, measured: np.ndarray, splits: int) -> dict[str, float]:
    from ofabench.latency.validate import fidelity

    rng = np.random.default_rng(0)
    n = len(sums)
    scores = []
    for _ in range(splits):
        idx = rng.permutation(n)
        fit, test = idx[: n // 2], idx[n // 2 :]
        design = np.stack([sums[fit], np.ones(len(fit))], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, measured[fit], rcond=None)
        m = fidelity(a * sums[test] + b, measured[test])
        scores.append((m.mape, m.within_5, m.within_10))
    mape, w5, w10 = np.mean(scores, axis=0)
    return {"splits": splits, "mape": float(mape), "within_5": float(w5), "within_10": float(w10)}


def analyze(work: Path, space_name: str, splits: int) -> dict[str, Any]:
    from ofabench.latency import LatencyModel, LatencyTable
    from ofabench.latency.profiler import fit_calibration
    from ofabench.latency.validate import fidelity
    from ofabench.space import ArchConfig, get_space

    space = get_space(space_name)
    table = LatencyTable.load(work / f"{space_name}.json")
    plain = LatencyModel(table, space)
    calib = table.provenance.get("calibration") or {}
    points = calib.get("points") or []
    archs, passes = load_validation(work / "validation" / f"{space_name}_subnets.csv")
    val_archs = [ArchConfig.from_dict(a) for a in archs]
    measured = np.array([min(p) for p in passes.values()])
    sums = plain.predict_batch(val_archs)
    out: dict[str, Any] = {
        "work_dir": str(work),
        "n_validation": len(val_archs),
        "n_calibration": len(points),
        "measurement": measurement_column(work / "validation" / f"{space_name}_subnets.csv"),
        "stored_calibration_method": calib.get("method"),
        "methods": {},
    }
    calib_archs = [ArchConfig.from_dict(p["arch"]) for p in points]
    calib_ms = [p["measured_ms"] for p in points]
    for method in METHODS:
        if method == "plain":
            model, used = plain, "plain"
        elif len(points) >= 3:
            model, used = fit_calibration(plain, calib_archs, calib_ms, method)
        else:
            continue
        m = fidelity(model.predict_batch(val_archs), measured)
        out["methods"][method] = {
            "used": used,
            "scale": model.scale,
            "overhead_ms": model.overhead_ms,
            "mape": m.mape,
            "within_5": m.within_5,
            "within_10": m.within_10,
        }
    out["same_run_affine"] = same_run_affine(sums, measured, splits)
    out["repeatability"] = repeatability(passes)
    out["calibration_level"] = calibration_level(
        sums, measured, plain.predict_batch(calib_archs) if points else None, calib_ms
    )
    out["probe_vs_raw"] = probe_vs_raw(
        work / "validation" / f"{space_name}_subnets.csv", sums, points,
        plain.predict_batch(calib_archs) if points else None,
    )  # fmt: skip
    return out


def probe_vs_raw(
    csv: Path, sums: np.ndarray, points: list[dict[str, Any]], calib_sums: np.ndarray | None
) -> dict[str, Any] | None:
    """Medians of the raw subnet timings over their table sums and of the paired probe's
    readings, for the calibration subnets (end of profiling) and the validation's first pass:
    where a level difference between the two comes from, the subnets or the probe."""
    import pandas as pd

    df = pd.read_csv(csv, comment="#")
    if calib_sums is None or "probe_ms" not in df or df["probe_ms"].isna().any():
        return None
    if not all(p.get("raw_ms") and p.get("probe_ms") for p in points):
        return None
    first = df[df["pass"] == df["pass"].min()].sort_values("index")
    raw = np.array([p["raw_ms"] for p in points]) / calib_sums
    return {
        "calibration": {"raw_over_sum": float(np.median(raw)),
                        "probe_ms": float(np.median([p["probe_ms"] for p in points]))},
        "validation": {"raw_over_sum": float(np.median(first["measured_ms"].to_numpy() / sums)),
                       "probe_ms": float(first["probe_ms"].median())},
    }  # fmt: skip


def calibration_level(
    sums: np.ndarray, measured: np.ndarray, calib_sums: np.ndarray | None, calib_ms: list[float]
) -> dict[str, Any]:
    from ofabench.latency.validate import fidelity

    design = np.stack([sums, np.ones(len(sums))], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, measured, rcond=None)
    m = fidelity(a * sums + b, measured)
    out: dict[str, Any] = {
        "oracle_affine": {"scale": float(a), "overhead_ms": float(b), "mape": m.mape,
                          "within_5": m.within_5, "within_10": m.within_10},
    }  # fmt: skip
    if calib_sums is not None and len(calib_ms):
        ratio = np.asarray(calib_ms) / (a * calib_sums + b)
        out["calibration_over_oracle"] = {
            "median": float(np.median(ratio)),
            "sd": float(np.std(ratio, ddof=1)) if len(ratio) > 1 else 0.0,
        }
    return out


def table_text(results: dict[str, Any]) -> str:
    lines = [
        "| device | plain | ratio | affine | auto (its choice) | same-run affine "
        "| two passes agree within +-5% | oracle affine | calibration subnets / oracle |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(m: dict[str, Any] | None) -> str:
        if not m:
            return "-"
        return f"{100 * m['within_5']:.0f}% / {100 * m['within_10']:.0f}% ({m['mape']:.1f})"

    def level(c: dict[str, Any]) -> str:
        over = c.get("calibration_over_oracle")
        return "-" if not over else f"{over['median']:.3f} (sd {over['sd']:.3f})"

    for device, r in results.items():
        methods = r["methods"]
        auto = methods.get("auto")
        choice = auto["used"].split(" (")[0].removeprefix("auto: ") if auto else ""
        rep = r["repeatability"]
        agree = "-" if rep is None else f"{100 * rep['within_5']:.0f}%"
        lines.append(
            f"| {device} | {cell(methods.get('plain'))} | {cell(methods.get('ratio'))} "
            f"| {cell(methods.get('affine'))} | {cell(auto)} {choice} "
            f"| {cell(r['same_run_affine'])} "
            f"| {agree} | {cell(r['calibration_level']['oracle_affine'])} "
            f"| {level(r['calibration_level'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ofabench.provenance import provenance, write_json

    results = {}
    works = args.work_dirs or [args.results / f"latency_{device}" for device in DEVICES]
    for work in works:
        if (work / "validation" / f"{args.space}_subnets.csv").is_file():
            name = work.name.removeprefix("latency_") if not args.work_dirs else str(work)
            results[name] = analyze(work, args.space, args.splits)
        elif args.work_dirs:
            print(f"{work}: no validation/{args.space}_subnets.csv", file=sys.stderr)
            return 1
    if not results:
        print(f"no validation results under {args.results}", file=sys.stderr)
        return 1
    doc = {
        "benchmark": "latency_calibration",
        "command": " ".join(["python", "benchmarks/analyze_latency_calibration.py", *sys.argv[1:]]),
        "cells": "share within +-5% / +-10% of the measured latency (MAPE %)",
        "devices": results,
        "provenance": provenance(),
    }
    write_json(args.out or args.results / "latency_calibration.json", doc)
    print(json.dumps(doc, indent=1) if args.json else table_text(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

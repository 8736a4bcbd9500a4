#!/usr/bin/env python
"""Refit a latency table's fitted entries from its measured ones with today's fit and report how
far each moves (nothing is written). Used to size what a fitting bug changed in a committed
table, e.g.

    python benchmarks/refit_table.py benchmarks/results/latency_cpu-tvm/ofa_mbv3_w1.0.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ofabench.latency.profiler import MAX_FIT_RMS, fit_entries, fitted_keys  # noqa: E402
from ofabench.latency.table import LatencyTable, OpSpec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tables", nargs="+", type=Path)
    p.add_argument("--max-fit-rms", type=float, default=MAX_FIT_RMS)
    args = p.parse_args(argv)
    out = []
    for path in args.tables:
        table = LatencyTable.load(path)
        keys = sorted(fitted_keys(table))
        before = {key: table[key].mean_ms for key in keys}
        _, rejected = fit_entries(table, [OpSpec.parse(k, table.family) for k in keys],
                                  args.max_fit_rms)  # fmt: skip
        lost = {op.key for op in rejected}
        moved = np.array([table[k].mean_ms / before[k] - 1 for k in keys if k not in lost])
        out.append({
            "table": str(path), "fitted": len(keys), "rejected_now": len(lost),
            "moved_over_1pct": int((np.abs(moved) > 0.01).sum()),
            "max_abs_pct": round(float(np.abs(moved).max() * 100), 2) if moved.size else 0.0,
        })  # fmt: skip
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

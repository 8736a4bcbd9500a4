#!/usr/bin/env python
"""The accuracy predictor's held-out quality over several random splits of an accuracy
dataset, for a few settings, against a ridge regression on the same features.

One train/held-out split gives one Kendall tau; with a few hundred subnets whose accuracies
differ by tenths of a point, that figure moves by several hundredths from split to split. This
runs ``--splits`` random splits (``--val-fraction`` held out) and reports, per setting, the mean
and range of RMSE (points) and Kendall tau on the held-out subnets:

- ``mlp wd=W``: :class:`ofabench.predictor.AccuracyPredictor` (OFA's 3x400 MLP, Adam, cosine,
  ``--epochs``) with weight decay ``W``;
- ``ensemble5 wd=W``: the mean of 5 such MLPs from different initialisations;
- ``ridge l=L``: least squares with an L2 penalty ``L`` on the same one-hot features.

    python benchmarks/bench_predictor_cv.py runs/fashion_mnist/accuracy.csv \\
        --predictor runs/fashion_mnist/predictor.pt

``--predictor`` names a fitted predictor whose space and encoder are used (the study's);
without it, ``--space`` names the space. Writes ``benchmarks/results/predictor_cv.json``
(``--out``); ``--json`` prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", type=Path, help="accuracy CSV (ofabench sample-accuracy)")
    p.add_argument("--predictor", type=Path, help="a fitted predictor: its space and encoder")
    p.add_argument("--space", default="small32_w0.5", help="space, without --predictor")
    p.add_argument("--splits", type=int, default=5)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--weight-decays", default="1e-4,1e-3", help="MLP weight decays")
    p.add_argument("--ridge", default="1,3,10", help="ridge penalties")
    p.add_argument("--out", type=Path, default=HERE / "results" / "predictor_cv.json")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def scores(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from ofabench.predictor.mlp import kendall_tau

    return float(100 * np.sqrt(np.mean((pred - y) ** 2))), float(kendall_tau(pred, y))


def ridge(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, lam: float):
    xa = np.c_[x, np.ones(len(x))]
    a = xa[train]
    penalty = lam * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0  # no penalty on the intercept
    w = np.linalg.solve(a.T @ a + penalty, a.T @ y[train])
    return xa[test] @ w


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from ofabench.predictor.mlp import AccuracyPredictor, read_accuracy_table
    from ofabench.provenance import provenance, write_json
    from ofabench.space import get_space

    torch.set_num_threads(1)
    if args.predictor is not None:
        base = AccuracyPredictor.load(args.predictor)
        space, encoder = base.space, base.encoder
    else:
        space = get_space(args.space)
        encoder = AccuracyPredictor(space).encoder
    archs, accs = read_accuracy_table(args.dataset, space)
    y = np.asarray(accs, dtype=np.float64)
    x = encoder.encode(archs)
    n_val = int(round(args.val_fraction * len(y)))
    results: dict[str, list[tuple[float, float]]] = {}
    for split in range(args.splits):
        order = np.random.default_rng(split).permutation(len(y))
        test, train = order[:n_val], order[n_val:]
        train_archs = [archs[i] for i in train]
        test_archs = [archs[i] for i in test]
        for lam in (float(v) for v in args.ridge.split(",")):
            results.setdefault(f"ridge l={lam:g}", []).append(
                scores(ridge(x, y, train, test, lam), y[test])
            )
        for wd in (float(v) for v in args.weight_decays.split(",")):
            preds = []
            for k in range(5):
                model = AccuracyPredictor(space, encoder, seed=k)
                model.fit(
                    train_archs, y[train], epochs=args.epochs, val_fraction=0.0, seed=k,
                    weight_decay=wd,
                )  # fmt: skip
                preds.append(model.predict(test_archs).astype(np.float64))
            results.setdefault(f"mlp wd={wd:g}", []).append(scores(preds[0], y[test]))
            results.setdefault(f"ensemble5 wd={wd:g}", []).append(
                scores(np.mean(preds, axis=0), y[test])
            )
        print(f"split {split + 1}/{args.splits} done", file=sys.stderr, flush=True)
    summary: dict[str, Any] = {}
    for name, rows in results.items():
        a = np.array(rows)
        summary[name] = {
            "rmse_pct_mean": float(a[:, 0].mean()),
            "kendall_tau_mean": float(a[:, 1].mean()),
            "kendall_tau_min": float(a[:, 1].min()),
            "kendall_tau_max": float(a[:, 1].max()),
            "per_split": [{"rmse_pct": r, "kendall_tau": t} for r, t in rows],
        }
    doc = {
        "benchmark": "predictor_cv",
        "command": " ".join(["python", "benchmarks/bench_predictor_cv.py", *sys.argv[1:]]),
        "dataset": str(args.dataset),
        "n": len(y),
        "n_val": n_val,
        "splits": args.splits,
        "epochs": args.epochs,
        "label_sd_pct": float(100 * y.std()),
        "settings": summary,
        "provenance": provenance(space=space.name),
    }
    write_json(args.out, doc)
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(f"{len(y)} subnets, {args.splits} splits holding out {n_val}:")
    print("| setting | RMSE (points), mean | Kendall tau, mean (min–max) |")
    print("|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['rmse_pct_mean']:.3f} | {s['kendall_tau_mean']:.3f} "
            f"({s['kendall_tau_min']:.3f}–{s['kendall_tau_max']:.3f}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

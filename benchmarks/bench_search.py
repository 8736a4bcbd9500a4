#!/usr/bin/env python
"""Benchmark ofabench's evolutionary search against the reference ``ofa`` tutorial's
``EvolutionFinder`` on OFA's own Note10 setting.

Both searches get the same inputs: OFA's ImageNet accuracy predictor (``acc_predictor.pth``)
and OFA's Note10 latency lookup tables for the w1.2 space (160-224 px), read from
``../shared/data/ofa_reference`` (never downloaded, never copied), and the same
hyperparameters: population 100, 500 generations, parents 25%, mutation ratio 0.5, mutation
probability 0.1. ofabench runs with its defaults for the rest: resolution mutation 0.5 (OFA's
search default, ``ofa.nas.search_algorithm``) and ``unique_children`` (a child equal to a
member of its generation is redrawn). The tutorial finder has neither: it resamples the
resolution with ``mutate_prob`` and keeps copies, so ofabench also runs with exactly those
semantics (``ofabench_ofa_semantics``: ``unique_children=False``, resolution mutation 0.1).

The reference is imported from the installed ``ofa`` package's files directly (not through
``ofa/tutorial/__init__.py``, which needs ``gdown``); its predictor is built with
``pretrained=False`` and given the local weights, and its ``LatencyTable`` is assembled from the
local YAML files (its constructor would download them). It runs with one torch thread (a second
thread only slows it on this shared two-core machine); tqdm bars are silenced.

Per constraint (15-60 ms, step 5): ``--ref-repeats`` reference searches and ``--repeats``
ofabench searches (seeds 0, 1, ...), in alternating order. Reported: wall time
(``perf_counter``) and CPU time (``process_time``) of each search, their medians, the speed-up
(reference median / ofabench median), and the best predicted accuracy of every run. ofabench's
best architecture is re-scored with the *reference* predictor and latency table as a
cross-check.

    python benchmarks/bench_search.py                 # full run, writes results/search_note10.json
    python benchmarks/bench_search.py --quick         # 3 constraints, 1 reference run each
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.util
import json
import os
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data" / "ofa_reference"
DEFAULT_OUT = HERE / "results" / "search_note10.json"
RESOLUTIONS = (160, 176, 192, 208, 224)
HYPER = {
    "population": 100,
    "generations": 500,
    "parent_ratio": 0.25,
    "mutation_ratio": 0.5,
    "mutate_prob": 0.1,
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help="OFA reference data folder")
    p.add_argument("--constraints", default="15,20,25,30,35,40,45,50,55,60", help="Note10 ms")
    p.add_argument("--repeats", type=int, default=5, help="ofabench searches per constraint")
    p.add_argument("--ref-repeats", type=int, default=1, help="reference searches per constraint")
    p.add_argument("--quick", action="store_true", help="constraints 15,30,60 only")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results file")
    return p.parse_args(argv)


# -- the reference -------------------------------------------------------------------------------
def import_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_modules() -> dict[str, ModuleType]:
    try:
        import ofa
    except ImportError:
        log("the reference `ofa` package is not installed: pip install ofa --no-deps")
        sys.exit(2)
    tutorial = Path(ofa.__file__).parent / "tutorial"
    mods = {
        name: import_file(f"ofa_tutorial_{name}", tutorial / f"{name}.py")
        for name in ("evolution_finder", "latency_table", "accuracy_predictor")
    }
    mods["evolution_finder"].tqdm = lambda iterable, **_: iterable  # no progress bars
    return mods


def reference_latency_table(mods: dict[str, ModuleType], data: Path) -> Any:
    """The tutorial's LatencyTable for Note10, built from the local YAML files."""
    import yaml

    lt = mods["latency_table"]
    table = lt.LatencyTable.__new__(lt.LatencyTable)
    table.latency_tables = {}
    for r in RESOLUTIONS:
        estimator = lt.LatencyEstimator.__new__(lt.LatencyEstimator)
        estimator.lut = yaml.safe_load((data / "note10_lut" / f"{r}_lookup_table.yaml").read_text())
        table.latency_tables[r] = estimator
    return table


def reference_predictor(mods: dict[str, ModuleType], data: Path) -> Any:
    import torch

    predictor = mods["accuracy_predictor"].AccuracyPredictor(pretrained=False, device="cpu")
    state = torch.load(data / "acc_predictor.pth", map_location="cpu", weights_only=True)
    predictor.model.load_state_dict(state)
    predictor.model.eval()
    return predictor


def run_reference(
    mods: dict[str, ModuleType], table: Any, predictor: Any, limit: float, seed: int
) -> dict[str, Any]:
    random.seed(seed)
    np.random.seed(seed)
    finder = mods["evolution_finder"].EvolutionFinder(
        "note10",
        limit,
        table,
        predictor,
        population_size=HYPER["population"],
        max_time_budget=HYPER["generations"],
        parent_ratio=HYPER["parent_ratio"],
        mutation_ratio=HYPER["mutation_ratio"],
        mutate_prob=HYPER["mutate_prob"],
    )
    with timed() as t:
        _, (acc, arch, latency) = finder.run_evolution_search()
    return {
        "seed": seed,
        **t,
        "best_accuracy": float(acc),
        "latency_ms": float(latency),
        "arch": arch,
    }


# -- ofabench ------------------------------------------------------------------------------------
def ofabench_setup(data: Path) -> tuple[Any, Any, Any, dict[str, float]]:
    from ofabench.latency import LatencyModel, LatencyTable
    from ofabench.predictor.mlp import load_ofa_predictor
    from ofabench.space import get_space

    setup: dict[str, float] = {}
    space = get_space("ofa_mbv3_w1.2")
    with timed() as t:
        table = LatencyTable.from_ofa_yaml(data / "note10_lut", space=space, device="note10")
        model = LatencyModel(table, space)
    setup["latency_table_load_s"] = t["wall_s"]
    space = space.restrict(resolutions=model.resolutions)
    with timed() as t:
        predictor = load_ofa_predictor(data / "acc_predictor.pth", space)
    setup["predictor_load_s"] = t["wall_s"]
    with timed() as t:
        model.additive_cost()  # the latency model's exact additive form, built once
    setup["latency_additive_form_s"] = t["wall_s"]
    return space, model, predictor, setup


def run_ours(
    space: Any,
    model: Any,
    predictor: Any,
    limit: float,
    seed: int,
    res_prob: float = 0.5,
    unique: bool = True,
) -> dict[str, Any]:
    from ofabench.search import evolve, latency_constraint

    with timed() as t:
        result = evolve(
            space,
            predictor.predict,
            [latency_constraint(model, limit)],
            population=HYPER["population"],
            generations=HYPER["generations"],
            parent_ratio=HYPER["parent_ratio"],
            mutation_ratio=HYPER["mutation_ratio"],
            mutate_prob=HYPER["mutate_prob"],
            resolution_mutate_prob=res_prob,
            unique_children=unique,
            seed=seed,
        )
    return {
        "seed": seed,
        **t,
        "best_accuracy": result.best_score,
        "latency_ms": result.constraint_values["latency_ms"],
        "arch": result.best.to_ofa_dict(),
        "n_predicted": result.settings["n_predicted"],
        "n_checked": result.settings["n_checked"],
    }


def cross_check(ref_table: Any, ref_predictor: Any, arch: dict[str, Any]) -> dict[str, float]:
    """Score one of ofabench's architectures with the reference predictor and table."""
    sample = {"wid": None, **{k: list(v) for k, v in arch.items()}}
    acc = float(ref_predictor.predict_accuracy([sample])[0, 0])
    latency = float(ref_table.predict_efficiency(sample))
    return {"reference_accuracy": acc, "reference_latency_ms": latency}


# -- measurement helpers -------------------------------------------------------------------------
@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    out: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield out
    out["wall_s"] = time.perf_counter() - wall
    out["cpu_s"] = time.process_time() - cpu


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def one_constraint(
    limit: float, args: argparse.Namespace, ref: dict[str, Any], ours: dict[str, Any], order: int
) -> dict[str, Any]:
    """Reference and ofabench searches at one constraint, in alternating order."""
    ref_runs: list[dict[str, Any]] = []
    our_runs: list[dict[str, Any]] = []
    faithful: list[dict[str, Any]] = []

    def reference() -> None:
        for seed in range(args.ref_repeats):
            run = run_reference(ref["mods"], ref["table"], ref["predictor"], limit, seed)
            ref_runs.append(run)
            log(
                f"  reference {limit:g} ms seed {seed}: {run['wall_s']:.1f} s, acc {run['best_accuracy']:.4f}"
            )

    def mine() -> None:
        for seed in range(args.repeats):
            our_runs.append(run_ours(*ours["setup"], limit, seed))
            faithful.append(run_ours(*ours["setup"], limit, seed, res_prob=0.1, unique=False))
        log(
            f"  ofabench  {limit:g} ms: median {median_of(our_runs, 'wall_s'):.3f} s wall, "
            f"acc median {median_of(our_runs, 'best_accuracy'):.4f}"
        )

    for job in [reference, mine] if order % 2 == 0 else [mine, reference]:
        job()
    check = cross_check(ref["table"], ref["predictor"], our_runs[0]["arch"])
    return summarize(limit, ref_runs, our_runs, faithful, check)


def side(runs: list[dict[str, Any]]) -> dict[str, Any]:
    accs = [r["best_accuracy"] for r in runs]
    return {
        "wall_s_median": median_of(runs, "wall_s"),
        "cpu_s_median": median_of(runs, "cpu_s"),
        "best_accuracy_mean": float(statistics.mean(accs)),
        "best_accuracy_median": float(statistics.median(accs)),
        "best_accuracy_min": min(accs),
        "best_accuracy_max": max(accs),
        "best_accuracy_seed0": accs[0],
        "runs": runs,
    }


def summarize(
    limit: float,
    ref_runs: list[dict[str, Any]],
    our_runs: list[dict[str, Any]],
    faithful: list[dict[str, Any]],
    check: dict[str, float],
) -> dict[str, Any]:
    ref, ours, plain = side(ref_runs), side(our_runs), side(faithful)
    ours["cross_check_seed0"] = check
    return {
        "constraint_ms": limit,
        "reference": ref,
        "ofabench": ours,
        "ofabench_ofa_semantics": plain,
        "speedup_wall": ref["wall_s_median"] / ours["wall_s_median"],
        "speedup_cpu": ref["cpu_s_median"] / ours["cpu_s_median"],
        "speedup_wall_ofa_semantics": ref["wall_s_median"] / plain["wall_s_median"],
        "accuracy_delta_mean": ours["best_accuracy_mean"] - ref["best_accuracy_mean"],
        "accuracy_delta_seed0": ours["best_accuracy_seed0"] - ref["best_accuracy_seed0"],
        "accuracy_delta_worst_vs_best": ours["best_accuracy_min"] - ref["best_accuracy_max"],
    }


def host_info() -> dict[str, Any]:
    from ofabench.provenance import cpu_model, library_versions

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": library_versions("ofabench", "ofa", "torch", "numpy", "threadpoolctl"),
        "loadavg_start": os.getloadavg(),
    }


def table_text(rows: list[dict[str, Any]]) -> str:
    head = (
        "| constraint | reference wall / CPU s | ofabench wall / CPU s | speed-up wall / CPU "
        "| top-1 reference (seeds) | top-1 ofabench mean (min-max) | OFA semantics: wall s, top-1 mean |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        ref, ours, plain = r["reference"], r["ofabench"], r["ofabench_ofa_semantics"]
        seeds = " / ".join(f"{100 * x['best_accuracy']:.2f}" for x in ref["runs"])
        lines.append(
            f"| {r['constraint_ms']:g} ms | {ref['wall_s_median']:.1f} / {ref['cpu_s_median']:.1f} "
            f"| {ours['wall_s_median']:.2f} / {ours['cpu_s_median']:.2f} "
            f"| {r['speedup_wall']:.0f}x / {r['speedup_cpu']:.0f}x | {seeds} "
            f"| {100 * ours['best_accuracy_mean']:.2f} ({100 * ours['best_accuracy_min']:.2f}-"
            f"{100 * ours['best_accuracy_max']:.2f}) "
            f"| {plain['wall_s_median']:.2f}, {100 * plain['best_accuracy_mean']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if not (args.data / "acc_predictor.pth").is_file():
        log(f"OFA reference data not found in {args.data}")
        return 2
    constraints = (
        [15.0, 30.0, 60.0] if args.quick else [float(c) for c in args.constraints.split(",")]
    )
    mods = reference_modules()
    ref = {
        "mods": mods,
        "table": reference_latency_table(mods, args.data),
        "predictor": reference_predictor(mods, args.data),
    }
    space, model, predictor, setup = ofabench_setup(args.data)
    ours = {"setup": (space, model, predictor)}
    run_ours(space, model, predictor, 30.0, 99)  # warm-up (numpy, BLAS, caches)
    info = host_info()
    rows = []
    for i, limit in enumerate(constraints):
        log(f"constraint {limit:g} ms")
        rows.append(one_constraint(limit, args, ref, ours, i))
    info["loadavg_end"] = os.getloadavg()
    results = {
        "benchmark": "search_note10",
        "command": " ".join(
            ["python", "benchmarks/bench_search.py", *map(shlex.quote, argv or sys.argv[1:])]
        ),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": info,
        "settings": {
            **HYPER,
            "resolution_mutate_prob": 0.5,
            "unique_children": True,
            "ofa_semantics_variant": "unique_children=False, resolution_mutate_prob=0.1 (as the tutorial finder)",
            "reference_resolution_mutate": "mutate_prob (0.1): the tutorial finder has no separate setting",
            "resolutions": list(RESOLUTIONS),
            "torch_threads": 1,
            "repeats": args.repeats,
            "ref_repeats": args.ref_repeats,
            "data": str(args.data),
        },
        "ofabench_setup_s": setup,
        "per_constraint": rows,
        "summary": {
            "speedup_wall_min": min(r["speedup_wall"] for r in rows),
            "speedup_wall_median": statistics.median(r["speedup_wall"] for r in rows),
            "speedup_cpu_min": min(r["speedup_cpu"] for r in rows),
            "speedup_cpu_median": statistics.median(r["speedup_cpu"] for r in rows),
            "ofabench_wall_s_median": statistics.median(
                r["ofabench"]["wall_s_median"] for r in rows
            ),
            "ofabench_cpu_s_median": statistics.median(r["ofabench"]["cpu_s_median"] for r in rows),
            "ofa_semantics_wall_s_median": statistics.median(
                r["ofabench_ofa_semantics"]["wall_s_median"] for r in rows
            ),
            "constraints_mean_accuracy_ge_reference": sum(
                r["accuracy_delta_mean"] >= 0 for r in rows
            ),
            "constraints_seed0_ge_reference_seed0": sum(
                r["accuracy_delta_seed0"] >= 0 for r in rows
            ),
            "n_constraints": len(rows),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(table_text(rows))
    print(json.dumps(results["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

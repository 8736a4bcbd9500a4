"""Commands of the predictor-search-comparison part: fit-predictor, search, pareto, report."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import check_distinct, check_output
from ._common import add_json, add_space, emit, input_paths, space_arg

log = logging.getLogger("ofabench")


# -- fit-predictor -----------------------------------------------------------------------------
def cmd_fit_predictor(args: argparse.Namespace) -> None:
    from ..predictor.dataset import meta_path
    from ..predictor.mlp import fit_from_file

    check_output(args.out, input_paths(args.data, meta_path(args.data), args.space))
    report = fit_from_file(
        args.data,
        space_arg(args),
        args.out,
        epochs=args.epochs,
        val_fraction=args.val_fraction,
        seed=args.seed,
        hidden_size=args.hidden,
        lr=args.lr,
    )
    data = {"out": str(args.out), **report.to_dict()}
    emit(
        args,
        data,
        lambda d: (
            f"wrote {d['out']}: RMSE {d['rmse_pct']:.3f} points, Kendall tau "
            f"{d['kendall_tau']:.3f}, Spearman rho {d['spearman_rho']:.3f} on "
            f"{d['n_val'] or d['n_train']} {d['evaluated_on']} subnets ({d['n_train']} trained on)"
        ),
    )


# -- search ------------------------------------------------------------------------------------
def _problem(args: argparse.Namespace) -> Any:
    from ..search.problem import load_problem

    return load_problem(
        space_arg(args),
        args.predictor,
        args.device,
        args.latency_table,
        args.table_root,
        allow_space_mismatch=args.allow_space_mismatch,
    )


def cmd_search(args: argparse.Namespace) -> None:
    from ..search.budgets import single_budgets
    from ..search.problem import run_search, search_report

    budgets = single_budgets(args.latency, args.macs, args.params)
    check_output(args.out, _problem_inputs(args))
    problem, speed = _speed_checked(args, _problem(args))
    result = run_search(problem, budgets, args.method, args.population, args.generations, args.seed)
    data = search_report(problem, budgets, result)
    if speed is not None:
        data["speed"] = speed
    if args.out:
        _write_json(args.out, data)
    emit(args, data, _describe_search)


def _speed_checked(args: argparse.Namespace, problem: Any) -> tuple[Any, dict[str, Any] | None]:
    """With ``--device``: time the reference probe here and rescale (or refuse) the table's
    predictions when this machine runs at another speed than the table's (see
    :mod:`ofabench.latency.probe`)."""
    if args.device is None or problem.latency_model is None:
        return problem, None
    from ..latency.probe import check_device_speed, rescaled_model

    where = problem.sources.get("latency_table", "")
    check = check_device_speed(
        args.device, problem.latency_model.table, args.speed_check, where=where
    )
    log.info("%s", check.message)
    problem.latency_model = rescaled_model(problem.latency_model, check)
    return problem, check.to_dict()


def _describe_search(d: dict[str, Any]) -> str:
    best, search = d["best"], d["search"]
    warning = f"warning: {d['space_mismatch']}\n" if d.get("space_mismatch") else ""
    latency = (
        f", {best['latency_ms']:.2f} ms on {d['device']}"
        if best.get("latency_ms") is not None
        else ""
    )
    return warning + (
        f"best arch: {json.dumps(best['arch'])}\n"
        f"predicted top-1 {100 * best['accuracy']:.2f}%{latency}, {best['mmacs']:.0f}M MACs, "
        f"{best['mparams']:.2f}M params ({d['method']}, {search['n_evaluations']} evaluations, "
        f"{search['wall_time_s']:.2f} s)"
    )


# -- pareto ------------------------------------------------------------------------------------
def cmd_pareto(args: argparse.Namespace) -> None:
    from ..search.budgets import sweep_spec
    from ..search.sweep import pareto_sweep

    axis, budgets, fixed = sweep_spec(args.latency, args.macs, args.params)
    if args.report and not args.name:
        raise ConfigError("--report needs --name (the report's title)")
    inputs = _problem_inputs(args) + input_paths(*args.external)
    check_distinct({"--out": args.out, "--csv": args.csv})
    check_output(args.out, inputs)
    check_output(args.csv, inputs, what="--csv")
    check_output(args.report, inputs, folder=True, what="--report")
    problem = _problem(args)
    document = pareto_sweep(
        problem,
        axis,
        budgets,
        fixed,
        args.population,
        args.generations,
        args.seed,
        _names(args.baselines),
        None if args.published == "none" else args.published,
        args.external,
        args.seeds,
    )
    _write_json(args.out, document)
    if args.csv:
        _write_points_csv(document, args.csv)
    if args.report:
        from ..report import write_report

        write_report(document, args.name, args.report, _command_line())
    emit(args, document, _describe_pareto)


def _names(text: str) -> list[str]:
    return [] if text in ("", "none") else [t.strip() for t in text.split(",") if t.strip()]


def _describe_pareto(d: dict[str, Any]) -> str:
    lines = [f"{d['axis']} budgets {', '.join(f'{b:g}' for b in d['budgets'])} {d['unit']}"]
    for method, per_budget in d["best_at_budget"].items():
        cells = " ".join("  –  " if v is None else f"{100 * v:5.1f}" for v in per_budget.values())
        lines.append(f"{method:<24} {cells}")
    hv = d["summary"][d["axis"]]["hypervolume"]
    lines.append("hypervolume: " + ", ".join(f"{m} {v:,.0f}" for m, v in hv.items()))
    return "\n".join(lines)


def _write_points_csv(document: dict[str, Any], path: str) -> None:
    from ..provenance import atomic_open
    from ..report.tables import points_frame
    from ..search.sweep import points_of

    fronts = {a: s["fronts"] for a, s in document["summary"].items()}
    with atomic_open(path) as handle:
        points_frame(points_of(document), fronts).to_csv(handle, index=False)


# -- report ------------------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> None:
    from ..report import write_report
    from ..search.sweep import load_sweep

    document = load_sweep(args.input)
    check_output(args.out, [args.input], folder=True)
    files = write_report(document, args.name, args.out, _command_line())
    data = {"out": str(args.out), "files": {k: str(v) for k, v in files.items()}}
    emit(args, data, lambda d: "wrote " + ", ".join(d["files"].values()))


# -- helpers -----------------------------------------------------------------------------------
def _write_json(path: str | Path, data: dict[str, Any]) -> None:
    from ..provenance import write_json

    write_json(path, data)
    log.info("wrote %s", path)


def _problem_inputs(args: argparse.Namespace) -> list[Path]:
    return input_paths(args.predictor, args.latency_table, args.space)


def _command_line() -> str:
    return " ".join(["ofabench", *(shlex.quote(a) for a in sys.argv[1:])])


def _add_problem(p: argparse.ArgumentParser) -> None:
    add_space(p)
    p.add_argument(
        "--predictor",
        required=True,
        help="accuracy predictor: a file from fit-predictor, or ofa:PATH for OFA's acc_predictor.pth",
    )
    p.add_argument(
        "--allow-space-mismatch",
        action="store_true",
        help="use a predictor trained on another space than --space (OFA's acc_predictor.pth: "
        "ofa_mbv3_w1.2); the output records it",
    )
    p.add_argument(
        "--device",
        help="device whose latency table to use: latency_tables/<device>/<space>.json "
        "(with --latency-table: the device's name only)",
    )
    p.add_argument(
        "--latency-table",
        help="latency table path: an ofabench table (.json), an OFA <r>_lookup_table.yaml, "
        "or a folder of them",
    )
    p.add_argument(
        "--table-root",
        default="latency_tables",
        help="where --device tables live (default latency_tables)",
    )


def _add_evolution(p: argparse.ArgumentParser) -> None:
    p.add_argument("--population", type=int, default=100, help="population size (default 100)")
    p.add_argument("--generations", type=int, default=500, help="generations (default 500)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _add_fit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit-predictor",
        help="fit an accuracy predictor on an accuracy dataset (CSV: arch JSON, accuracy)",
    )
    add_space(p)
    p.add_argument("--data", required=True, help="CSV/Parquet with columns arch (JSON), accuracy")
    p.add_argument("--out", required=True, help="predictor file to write (.pt)")
    p.add_argument("--epochs", type=int, default=200, help="training epochs (default 200)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out share (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="split and init seed (default 0)")
    p.add_argument("--hidden", type=int, default=400, help="hidden width (default 400)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    add_json(p)
    p.set_defaults(func=cmd_fit_predictor)


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="evolutionary search under latency/MACs/params budgets")
    _add_problem(p)
    p.add_argument("--latency", help="latency budget, e.g. 25ms (needs a latency table)")
    p.add_argument("--macs", help="MACs budget, e.g. 300M")
    p.add_argument("--params", help="parameter budget, e.g. 5M")
    _add_evolution(p)
    p.add_argument(
        "--method",
        choices=["evolution", "random"],
        default="evolution",
        help="evolution (default) or random search with as many evaluations",
    )
    p.add_argument(
        "--speed-check",
        choices=["auto", "rescale", "refuse", "off"],
        default="auto",
        help="with --device: time the reference probe here and rescale the table's predictions "
        "if this machine runs at another speed (auto: up to 1.5x, refusing beyond; default)",
    )
    p.add_argument("--out", help="write the result (JSON) to this file")
    add_json(p)
    p.set_defaults(func=cmd_search)


def _add_pareto(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pareto", help="sweep budgets: OFA search + baselines, fronts and hypervolume"
    )
    _add_problem(p)
    p.add_argument("--latency", help="latency budgets, e.g. 15,20,...,60ms or 15:60:5ms")
    p.add_argument("--macs", help="MACs budgets (e.g. 200M,300M,400M) or one fixed limit")
    p.add_argument("--params", help="parameter budgets or one fixed limit (e.g. 6M)")
    _add_evolution(p)
    p.add_argument(
        "--baselines",
        default="random,uniform",
        help="run baselines, comma separated: random, uniform, aging_evolution, local_search, "
        "nsga2 or any registered one (default random,uniform; none)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="run every method with this many seeds; the summary gives the hypervolume spread "
        "(default 1)",
    )
    p.add_argument(
        "--published", default="none", help="published reference points to add: imagenet or none"
    )
    p.add_argument(
        "--external", action="append", default=[], help="CSV of external points (repeatable)"
    )
    p.add_argument("--out", required=True, help="pareto document to write (JSON)")
    p.add_argument("--csv", help="also write every point as CSV here")
    p.add_argument("--report", help="also write the report into this folder (needs --name)")
    p.add_argument("--name", help="report title (with --report)")
    add_json(p)
    p.set_defaults(func=cmd_pareto)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="plots, CSV and Markdown summary of a pareto document")
    p.add_argument("--input", required=True, help="pareto document written by `ofabench pareto`")
    p.add_argument("--name", required=True, help="report title")
    p.add_argument("--out", required=True, help="output folder, e.g. reports/NAME")
    add_json(p)
    p.set_defaults(func=cmd_report)


def register(sub: argparse._SubParsersAction) -> None:
    _add_fit(sub)
    _add_search(sub)
    _add_pareto(sub)
    _add_report(sub)

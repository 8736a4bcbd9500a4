"""``ofabench replay``: the ImageNet Pareto comparison on one local device, written to
``reports/imagenet_<device>/`` (OFA's front, NAS search baselines, torchvision networks
measured on the device, MACs view, hypervolume over seeds, the command that made it)."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from ..baselines.registry import BUILTIN_BASELINES
from ._common import add_json, emit


def cmd_replay(args: argparse.Namespace) -> None:
    from ..baselines.reference_nets import NETWORKS
    from ..files import check_output
    from ..report.replay import ReplayConfig, run_replay
    from ..search.budgets import parse_budgets
    from ._common import input_paths

    out = args.out or f"reports/imagenet_{args.device}"
    check_output(out, input_paths(args.predictor, args.latency_table), folder=True)
    config = ReplayConfig(
        device=args.device,
        predictor=args.predictor,
        out=out,
        space=args.space,
        latency_table=args.latency_table,
        table_root=args.table_root,
        budgets=parse_budgets(args.latency, "latency") if args.latency else None,
        n_budgets=args.n_budgets,
        baselines=_names(args.baselines),
        seeds=args.seeds,
        seed=args.seed,
        population=args.population,
        generations=args.generations,
        networks=NETWORKS if args.networks == "all" else tuple(_names(args.networks)),
        resolution=args.resolution,
        warmup=args.warmup,
        repeats=args.repeats,
        published=None if args.published == "none" else args.published,
        note10_replay=args.note10_replay,
        allow_space_mismatch=args.allow_space_mismatch,
        name=args.name or f"imagenet_{args.device}",
    )
    emit(args, run_replay(config, _command_line(args, out)), _describe)


def _names(text: str) -> list[str]:
    return [] if text in ("", "none") else [t.strip() for t in text.split(",") if t.strip()]


def _command_line(args: argparse.Namespace, out: str) -> str:
    """The command, every option written out (defaults included), so that it reruns as is."""
    parts = ["ofabench", "replay"]
    for flag in OPTIONS:
        value = out if flag == "--out" else getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            parts += [flag, shlex.quote(str(value))]
    if args.allow_space_mismatch:
        parts.append("--allow-space-mismatch")
    return " ".join(parts)


OPTIONS = (
    "--device", "--predictor", "--space", "--latency-table", "--table-root", "--latency",
    "--n-budgets", "--baselines", "--seeds", "--seed", "--population", "--generations",
    "--networks", "--resolution", "--warmup", "--repeats", "--published", "--note10-replay",
    "--out",
)  # fmt: skip


def _describe(d: dict[str, Any]) -> str:
    hv = d["hypervolume_spread"].get("latency_ms", {})
    lines = [f"wrote {d['files']['readme']} ({d['device']}, budgets {d['budgets']} ms)"]
    lines += [f"  {m:<18} hypervolume {s['mean']:,.1f} ± {s['std']:,.1f}" for m, s in hv.items()]
    for name, value in d["networks"].items():
        lines.append(f"  {name:<18} {value if isinstance(value, str) else f'{value:.3f} ms'}")
    if d.get("space_mismatch"):
        lines.insert(0, f"warning: {d['space_mismatch']}")
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="ImageNet comparison on one device: OFA front, NAS baselines, torchvision networks",
    )
    p.add_argument("--device", required=True, help="device profile, e.g. cpu-onnxruntime")
    p.add_argument(
        "--predictor", required=True, help="ofa:PATH (OFA's acc_predictor.pth) or a file"
    )
    p.add_argument("--space", default="ofa_mbv3_w1.2", help="search space (default ofa_mbv3_w1.2)")
    p.add_argument("--latency-table", help="latency table path (default: the device's table)")
    p.add_argument("--table-root", default="latency_tables", help="where --device tables live")
    p.add_argument("--latency", help="latency budgets, e.g. 5,10,...,50ms (default: --n-budgets)")
    p.add_argument(
        "--n-budgets", type=int, default=10,
        help="budgets spread from the 5%% quantile of random subnets to the largest (default 10)",
    )  # fmt: skip
    p.add_argument(
        "--baselines", default=",".join(BUILTIN_BASELINES),
        help="run baselines, comma separated (default: all NAS baselines; none)",
    )  # fmt: skip
    p.add_argument("--seeds", type=int, default=3, help="seeds per method (default 3)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--population", type=int, default=100, help="OFA search population (100)")
    p.add_argument("--generations", type=int, default=500, help="OFA search generations (500)")
    p.add_argument(
        "--networks", default="all",
        help="torchvision networks to measure: all, none, or names (e.g. mobilenet_v3_small)",
    )  # fmt: skip
    p.add_argument("--resolution", type=int, default=224, help="network input size (224)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs per network (10)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs per round (30)")
    p.add_argument("--published", default="imagenet", help="published points: imagenet or none")
    p.add_argument(
        "--note10-replay", default="reports/note10_replay/pareto.json",
        help="Note10 replay document, for the predictor's offset against OFA's published nets",
    )  # fmt: skip
    p.add_argument(
        "--allow-space-mismatch", action="store_true",
        help="use a predictor trained on another space (the output records it)",
    )  # fmt: skip
    p.add_argument("--out", help="output folder (default reports/imagenet_<device>)")
    p.add_argument("--name", help="report title (default imagenet_<device>)")
    add_json(p)
    p.set_defaults(func=cmd_replay)

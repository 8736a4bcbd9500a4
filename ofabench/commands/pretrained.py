"""``ofabench pretrained`` (the shipped models, loadable by name) and ``ofabench ship`` (a
finished study's PS supernet, predictor and accuracy dataset made a shipped model)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import check_output
from ._common import add_json, emit


def cmd_pretrained(args: argparse.Namespace) -> None:
    from ..pretrained import pretrained_dir, shipped, verify

    models = shipped()
    record: dict[str, Any] = {"dir": str(pretrained_dir()), "models": models}
    if args.verify:
        record["problems"] = {name: verify(name) for name in models}
    emit(args, record, _describe)
    bad = {n: p for n, p in record.get("problems", {}).items() if p}
    if bad:
        raise ConfigError("shipped model(s) changed since shipping: " + "; ".join(
            f"{n}: {', '.join(p)}" for n, p in bad.items()))  # fmt: skip


def _describe(record: dict[str, Any]) -> str:
    if not record["models"]:
        return f"no shipped models in {record['dir']}"
    lines = []
    for name, m in record["models"].items():
        figures = ", ".join(f"{k} {v:.4g}" for k, v in m.get("figures", {}).items()
                            if isinstance(v, (int, float)))  # fmt: skip
        line = f"{name}: space {m['space']}, dataset {m['dataset']}; {figures}"
        if "problems" in record:
            line += "; verified" if not record["problems"][name] else "; CHANGED"
        lines.append(line)
    return "\n".join(lines)


def cmd_ship(args: argparse.Namespace) -> None:
    from ..pretrained import ship
    from ..study.config import load_study
    from ..study.runner import Study

    check_output(args.dest, [args.study], folder=True, what="--dest")
    study = Study(load_study(args.study))
    for step in ("train_ps", "accuracy", "predictor"):
        if not study.done(step):
            raise ConfigError(f"study step {step!r} has not finished; run the study first")
    checkpoint = Path(study.summary("train_ps")["checkpoint"])
    files = {
        "supernet": checkpoint,
        "config": checkpoint.parent / "config.yaml",
        "predictor": study.predictor_path,
        "accuracy": study.accuracy_csv,
    }
    figures = _figures(study)
    made_by = {
        "study": str(args.study),
        "commands": [c["command"] for c in study.state.get("commands", [])],
        "train_config": study.config.train,
    }
    claims_file = Path(study.config.report_dir) / "claims.json"
    claims = json.loads(claims_file.read_text()) if claims_file.is_file() else None
    folder = ship(args.name, files, study.space.name, study.dataset().name, figures, made_by,
                  Path(args.dest) if args.dest else None, claims=claims)  # fmt: skip
    emit(args, {"name": args.name, "dir": str(folder), "figures": figures},
         lambda d: f"shipped {d['name']} in {d['dir']}")  # fmt: skip


def _figures(study: Any) -> dict[str, float]:
    out = {}
    if study.done("compare"):
        compare = study.summary("compare")
        out["largest_test"] = compare["largest"]["ps_test"]
        out["smallest_test"] = compare["smallest"]["ps_test"]
    predictor = study.summary("predictor")
    out["predictor_kendall_tau"] = predictor["kendall_tau"]
    out["predictor_rmse_pct"] = predictor["rmse_pct"]
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrained", help="the shipped pretrained models (load them by name)")
    p.add_argument("--verify", action="store_true",
                   help="check each model's files against its manifest's sha256 and that its "
                        "supernet computes the logits it was shipped with")  # fmt: skip
    add_json(p)
    p.set_defaults(func=cmd_pretrained)

    p = sub.add_parser("ship", help="make a finished study's PS supernet a shipped model")
    p.add_argument("study", help="the study file (its work dir holds the finished steps)")
    p.add_argument("--name", required=True, help="the shipped model's name, e.g. fashion_mnist_ps")
    p.add_argument("--dest", help="folder of shipped models (default: the package's)")
    add_json(p)
    p.set_defaults(func=cmd_ship)

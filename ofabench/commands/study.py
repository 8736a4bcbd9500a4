"""``ofabench study CONFIG`` (the whole pipeline from one study file, resumable) and
``ofabench demo`` (the same in miniature on scikit-learn's digits, a few minutes)."""

from __future__ import annotations

import argparse
import shlex
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import check_output
from ._common import add_json, emit

DEMO_OUT = "ofabench-demo"


def _run(args: argparse.Namespace, config: Any) -> None:
    import torch

    from ..study.runner import Study

    torch.set_num_threads(config.threads)
    command = " ".join(["ofabench", *(shlex.quote(a) for a in sys.argv[1:])])
    study = Study(config, progress=args.progress, command=command)
    if getattr(args, "list_steps", False):
        emit(args, {"steps": [n for n, _ in study.plan()]}, lambda d: "\n".join(d["steps"]))
        return
    study.run(until=getattr(args, "until", None), redo=getattr(args, "redo", None) or ())
    steps = study.state["steps"]
    data = {
        "study": config.name,
        "work_dir": str(config.work_dir),
        "report_dir": str(config.report_dir),
        "steps": {k: {"status": v["status"], "wall_s": v["wall_s"]} for k, v in steps.items()},
        "skipped_devices": study.state.get("skipped_devices", {}),
    }
    if "report" in steps and steps["report"]["status"] == "done":
        data["report"] = str(Path(config.report_dir) / "README.md")
    emit(args, data, _describe)


def _describe(d: dict[str, Any]) -> str:
    lines = [f"study {d['study']} (work dir {d['work_dir']}):"]
    for name, step in d["steps"].items():
        lines.append(f"  {name:<28} {step['status']:<8} {step['wall_s'] / 60:7.1f} min")
    for name, reason in d["skipped_devices"].items():
        lines.append(f"  skipped device {name}: {reason}")
    if "report" in d:
        lines.append(f"report: {d['report']}")
    return "\n".join(lines)


def cmd_study(args: argparse.Namespace) -> None:
    from ..study.config import load_study

    config = load_study(args.config, args.work_dir, args.report_dir)
    _check_outputs(config, [args.config])
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {args.threads}")
        config = _with(config, threads=args.threads)
    _run(args, config)


def demo_config_text() -> str:
    return resources.files("ofabench.study").joinpath("demo.yaml").read_text()


def cmd_demo(args: argparse.Namespace) -> None:
    import yaml

    from ..study.config import study_from_dict

    out = Path(args.out)
    config = study_from_dict(
        yaml.safe_load(demo_config_text()), Path("."), "ofabench demo (ofabench/study/demo.yaml)",
        out / "work", out / "report",
    )  # fmt: skip
    check_output(out, folder=True)
    _check_outputs(config, [])
    _run(args, config)


def _check_outputs(config: Any, inputs: list[str]) -> None:
    """The study's work and report folders, checked before any step runs."""
    check_output(config.work_dir, inputs, folder=True, what="work dir")
    check_output(config.report_dir, inputs, folder=True, what="report dir")


def _with(config: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(config, **changes)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="run the whole pipeline from a study file (train, profile, validate, predictor, "
        "search, baselines, report); resumable",
    )
    p.add_argument("config", help="study YAML, e.g. studies/fashion_mnist.yaml")
    p.add_argument("--work-dir", help="where the steps' outputs go (default: the file's work_dir)")
    p.add_argument("--report-dir", help="where the report goes (default: the file's report_dir)")
    p.add_argument("--until", help="stop after this step (see --list-steps)")
    p.add_argument("--redo", action="append", help="run this finished step again (repeatable)")
    p.add_argument("--list-steps", action="store_true", help="print the steps and exit")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the file's threads)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add_json(p)
    p.set_defaults(func=cmd_study)

    d = sub.add_parser(
        "demo",
        help="the study pipeline in miniature on scikit-learn's digits (a few minutes)",
    )
    d.add_argument("--out", default=DEMO_OUT, help=f"output folder (default {DEMO_OUT})")
    d.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add_json(d)
    d.set_defaults(func=cmd_demo)

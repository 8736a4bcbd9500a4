"""``ofabench study CONFIG`` (the whole pipeline from one study file, resumable) and
``ofabench demo`` (the pipeline from the shipped Fashion-MNIST supernet in a few minutes; the toy
digits study that trains its own supernet where that supernet or Fashion-MNIST is missing)."""

from __future__ import annotations

import argparse
import shlex
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import check_output
from ._common import add_json, emit, terminate_as_interrupt

DEMO_OUT = "ofabench-demo"
DEMO_SHIPPED = "fashion_mnist_ps"


def _run(args: argparse.Namespace, config: Any, notes: list[str] | None = None) -> None:
    import torch

    from ..study.runner import Study

    torch.set_num_threads(config.threads)
    command = " ".join(["ofabench", *(shlex.quote(a) for a in sys.argv[1:])])
    study = Study(config, progress=args.progress, command=command)
    if notes:
        study.state["notes"] = notes
    if getattr(args, "list_steps", False):
        emit(args, {"steps": [n for n, _ in study.plan()]}, lambda d: "\n".join(d["steps"]))
        return
    with terminate_as_interrupt():  # its training processes then save their state and stop
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


def demo_config_text(name: str = "demo.yaml") -> str:
    return resources.files("ofabench.study").joinpath(name).read_text()


def demo_choice(toy: bool = False) -> tuple[str, str | None]:
    """The demo's study file and, for the toy digits study, why it runs instead of the one from
    the shipped Fashion-MNIST supernet."""
    from ..pretrained import shipped
    from ..training.data import DataConfig, dataset_missing

    if toy:
        return "demo.yaml", "--toy asked for the toy digits study (it trains its own supernet)"
    if DEMO_SHIPPED not in shipped():
        return "demo.yaml", (
            f"the shipped supernet {DEMO_SHIPPED!r} is not in this installation, so the demo "
            "trains a toy supernet on scikit-learn's digits instead"
        )
    missing = dataset_missing(DataConfig("fashion_mnist"))
    if missing:
        return "demo.yaml", (
            f"{missing}; the demo runs the toy digits study instead of the one from the shipped "
            "Fashion-MNIST supernet"
        )
    return "demo_pretrained.yaml", None


def cmd_demo(args: argparse.Namespace) -> None:
    import logging

    import yaml

    from ..study.config import study_from_dict

    out = Path(args.out)
    name, fallback = demo_choice(args.toy)
    config = study_from_dict(
        yaml.safe_load(demo_config_text(name)), Path("."), f"ofabench demo (ofabench/study/{name})",
        out / "work", out / "report",
    )  # fmt: skip
    check_output(out, folder=True)
    _check_outputs(config, [])
    if fallback:
        logging.getLogger("ofabench").warning("demo: %s", fallback)
    _run(args, config, [fallback] if fallback else None)


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
        help="the study pipeline from the shipped Fashion-MNIST supernet, on this machine's "
        "torch and ONNX Runtime (a few minutes)",
    )
    d.add_argument("--out", default=DEMO_OUT, help=f"output folder (default {DEMO_OUT})")
    d.add_argument(
        "--toy",
        action="store_true",
        help="run the toy digits study instead (trains its own small supernet; the fallback "
        "where the shipped supernet or Fashion-MNIST is missing)",
    )
    d.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    add_json(d)
    d.set_defaults(func=cmd_demo)

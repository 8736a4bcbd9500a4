"""``ofabench train`` (progressive shrinking, one stage or all; the no-PS and from-scratch
baselines) and ``ofabench eval`` (validation and test accuracy of a subnet, or of a from-scratch
network, after BN recalibration)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InvalidArchError
from ..files import check_output, input_file
from ._common import add_json, add_resolution, arch_arg, at_least, emit, input_paths

log = logging.getLogger("ofabench")


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)


def cmd_train(args: argparse.Namespace) -> None:
    from ..training import load_config
    from ..training.distributed import init_from_env, shutdown
    from ..training.stopping import StopSignal, TrainingStopped
    from ..training.trainer import Trainer

    _set_threads(args)
    config = load_config(args.config, **_schedule_overrides(args))
    out = Path(args.out) if args.out else _default_out(args.config, config)
    check_output(out, input_paths(args.config, args.scratch_arch, config.teacher), folder=True)
    dist = init_from_env()
    if not dist.is_main:
        logging.getLogger("ofabench").setLevel(logging.WARNING)
    stop = StopSignal()
    try:
        trainer = Trainer(
            config,
            out,
            progress=not args.no_progress,
            dist=dist,
            checkpoint_minutes=args.checkpoint_minutes,
            stop=stop,
        )
        with stop.installed():
            trainer.run(args.stage, resume=args.resume)
    except TrainingStopped as exc:
        if dist.is_main:
            log.warning("%s", exc)
        raise KeyboardInterrupt from exc
    finally:
        shutdown()
    if dist.is_main:
        log.info("checkpoints and metrics in %s", out)


def _schedule_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--schedule``, ``--budget`` / ``--match-budget`` and ``--scratch-arch`` (which implies
    ``schedule: scratch``)."""
    budget = {"budget": args.budget, "match_budget": args.match_budget}
    if args.budget is not None and args.budget < 1:
        raise ConfigError(f"--budget must be a positive number of subnet passes, got {args.budget}")
    if args.scratch_arch is None:
        return {"schedule": args.schedule, **budget}
    if args.schedule not in (None, "scratch"):
        raise ConfigError(f"--scratch-arch trains schedule 'scratch', not {args.schedule!r}")
    from ..space import ArchConfig, load_arch

    text = args.scratch_arch
    if text.lstrip().startswith("{"):
        return {"schedule": "scratch", "arch": ArchConfig.from_json(text), **budget}
    arch = load_arch(input_file(text, "--scratch-arch file", InvalidArchError))
    return {"schedule": "scratch", "arch": arch, **budget}


def _default_out(config_path: str, config: Any) -> Path:
    name = f"{Path(config_path).stem}_{config.schedule}"
    if config.arch is not None:
        from ..training.stages import arch_hash

        name += f"_{arch_hash(config.arch)}"
    return Path("runs") / name


def _beside_config(args: argparse.Namespace):
    """The training config that sets space and data: ``--config``, else the resolved
    ``config.yaml`` beside the checkpoint, else none."""
    from ..training import load_config

    if args.config:
        return load_config(args.config)
    beside = Path(args.checkpoint).parent / "config.yaml"
    return load_config(beside) if beside.is_file() else None


def resolve_space_and_data(args: argparse.Namespace, space: Any = None) -> tuple[Any, Any]:
    """The (SpaceSpec, DataConfig) of a command that reads a checkpoint: ``--space`` (or
    ``space``, from the checkpoint itself), else the config's; ``--data``/``--data-root`` over
    the config's data section (default Fashion-MNIST)."""
    import dataclasses

    from ..space import get_space
    from ..training import DataConfig

    config = _beside_config(args)
    if args.space:
        space = get_space(args.space)
    elif space is None:
        if config is None:
            raise ConfigError(
                "pass --space (or --config, or keep config.yaml beside the checkpoint)"
            )
        space = config.space_spec()
    data = config.data if config is not None else DataConfig()
    if args.data:
        data = DataConfig(name=args.data, root=args.data_root)
    elif args.data_root:
        data = dataclasses.replace(data, root=args.data_root)
    return space, data


def cmd_eval(args: argparse.Namespace) -> None:
    from ..training.scratch import is_static_checkpoint, read_checkpoint

    _set_threads(args)
    at_least("--recal-images", args.recal_images, 1)
    payload = read_checkpoint(args.checkpoint)
    static = is_static_checkpoint(payload)
    result = _eval_static(args, payload) if static else _eval_subnet(args)
    emit(
        args,
        result,
        lambda d: (
            f"val acc {d['val_acc']:.4f}, test acc {d['test_acc']:.4f} "
            f"({d['dataset']}, r={d['arch']['r']}, BN recalibrated on {d['recal_images']} images)"
        ),
    )


def _eval_subnet(args: argparse.Namespace) -> dict[str, Any]:
    from ..supernet.checkpoint import load_supernet
    from ..training import evaluate_subnet, load_dataset
    from ..training.data import check_dataset_fits

    if args.arch is None:
        raise ConfigError("--arch is required for a supernet checkpoint (a file, JSON, max, min)")
    space, data = resolve_space_and_data(args)
    arch = arch_arg(args, space)
    net = load_supernet(args.checkpoint, space)
    dataset = load_dataset(data)
    check_dataset_fits(dataset, space)
    accs = evaluate_subnet(net, arch, dataset, recal_images=args.recal_images)
    return _eval_record(args, space, dataset, arch, accs)


def _eval_static(args: argparse.Namespace, payload: Any) -> dict[str, Any]:
    """A from-scratch network: the space and arch come from its checkpoint."""
    from ..training import load_dataset
    from ..training.data import check_dataset_fits
    from ..training.evaluate import evaluate_static
    from ..training.scratch import load_static_network

    net, space, arch = load_static_network(args.checkpoint, payload)
    if args.space:
        raise ConfigError("--space does not apply: this checkpoint carries its own space")
    if args.arch is not None and arch_arg(args, space) != arch:
        raise ConfigError(
            f"{args.checkpoint} is a static network of another arch ({arch.to_json()}); "
            "leave out --arch"
        )
    _, data = resolve_space_and_data(args, space)
    dataset = load_dataset(data)
    check_dataset_fits(dataset, space)
    accs = evaluate_static(net, arch.r, dataset, recal_images=args.recal_images)
    return {**_eval_record(args, space, dataset, arch, accs), "kind": "static"}


def _eval_record(args, space, dataset, arch, accs: dict[str, float]) -> dict[str, Any]:
    return {
        "space": space.name,
        "checkpoint": str(args.checkpoint),
        "dataset": dataset.name,
        "arch": arch.to_dict(),
        "recal_images": min(args.recal_images, len(dataset.train)),
        **accs,
    }


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a supernet with progressive shrinking (or no-PS)")
    p.add_argument("--config", required=True, help="training YAML (see configs/)")
    p.add_argument(
        "--stage", action="append", help="run only this stage (repeatable; default: all)"
    )
    p.add_argument("--out", help="output folder (default runs/<config>_<schedule>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=10.0,
        metavar="M",
        help="also save the training state every M minutes within an epoch, so a hard kill loses "
        "at most M minutes (default 10; 0: after every step); SIGTERM or Ctrl-C saves after the "
        "step in progress and stops",
    )
    p.add_argument(
        "--schedule",
        choices=["ps", "no_ps", "sandwich", "scratch"],
        help="override the config's schedule (no_ps: OFA's baseline; sandwich: BigNAS's recipe)",
    )
    p.add_argument(
        "--budget",
        type=int,
        metavar="PASSES",
        help="train a one-stage schedule (no_ps, sandwich, scratch) for exactly this many subnet "
        "passes (images x subnets) instead of epochs",
    )
    p.add_argument(
        "--match-budget",
        metavar="RUN",
        help="give a one-stage schedule exactly the subnet passes the run in folder RUN plans "
        "(a compute-matched baseline)",
    )
    p.add_argument(
        "--scratch-arch",
        metavar="ARCH",
        help="train this arch (JSON file or inline JSON) alone from scratch, for the config's "
        "total epochs (the from-scratch baseline; implies --schedule scratch)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="validation and test accuracy of a subnet (BN recalibrated)")
    p.add_argument(
        "--arch",
        help="arch JSON file (ofabench or OFA dict, OFA net.config), inline JSON, max or min "
        "(not needed for a scratch_<hash>.pt)",
    )
    add_resolution(p)
    p.add_argument(
        "--checkpoint",
        required=True,
        help="supernet checkpoint (e.g. a stage's .pt) or a from-scratch scratch_<hash>.pt",
    )
    p.add_argument("--space", help="space preset or file (default: from the config)")
    p.add_argument(
        "--config",
        help="training config for space and data (default: config.yaml beside the checkpoint)",
    )
    p.add_argument("--data", help="dataset name (fashion_mnist, digits, cifar10, imagefolder)")
    p.add_argument(
        "--data-root", help="dataset folder (cifar10, imagefolder, or a Fashion-MNIST copy)"
    )
    p.add_argument("--recal-images", type=int, default=2000, help="BN recalibration images")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    add_json(p)
    p.set_defaults(func=cmd_eval)

"""``ofabench train`` (progressive shrinking, one stage or all) and ``ofabench eval`` (a subnet's
validation and test accuracy after BN recalibration)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import ConfigError
from ._common import add_json, arch_arg, emit

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
    from ..training.trainer import Trainer

    _set_threads(args)
    config = load_config(args.config, schedule=args.schedule)
    out = (
        Path(args.out) if args.out else Path("runs") / f"{Path(args.config).stem}_{config.schedule}"
    )
    dist = init_from_env()
    if not dist.is_main:
        logging.getLogger("ofabench").setLevel(logging.WARNING)
    try:
        Trainer(config, out, progress=not args.no_progress, dist=dist).run(
            args.stage, resume=args.resume
        )
    finally:
        shutdown()
    if dist.is_main:
        log.info("checkpoints and metrics in %s", out)


def _eval_config(args: argparse.Namespace):
    """The training config that sets the eval's space and data: ``--config``, else the resolved
    ``config.yaml`` beside the checkpoint, else none."""
    from ..training import load_config

    if args.config:
        return load_config(args.config)
    beside = Path(args.checkpoint).parent / "config.yaml"
    return load_config(beside) if beside.is_file() else None


def cmd_eval(args: argparse.Namespace) -> None:
    import dataclasses

    from ..space import get_space
    from ..supernet.checkpoint import load_supernet
    from ..training import DataConfig, evaluate_subnet, load_dataset

    _set_threads(args)
    config = _eval_config(args)
    if args.space is None and config is None:
        raise ConfigError("pass --space (or --config, or keep config.yaml beside the checkpoint)")
    space = get_space(args.space) if args.space else config.space_spec()
    data = config.data if config is not None else DataConfig()
    if args.data:
        data = DataConfig(name=args.data, root=args.data_root)
    elif args.data_root:
        data = dataclasses.replace(data, root=args.data_root)
    arch = arch_arg(args, space)
    net = load_supernet(args.checkpoint, space)
    dataset = load_dataset(data)
    accs = evaluate_subnet(net, arch, dataset, recal_images=args.recal_images)
    result = {
        "space": space.name,
        "checkpoint": str(args.checkpoint),
        "dataset": dataset.name,
        "arch": arch.to_dict(),
        "recal_images": min(args.recal_images, len(dataset.train)),
        **accs,
    }
    emit(
        args,
        result,
        lambda d: (
            f"val acc {d['val_acc']:.4f}, test acc {d['test_acc']:.4f} "
            f"({d['dataset']}, r={arch.r}, BN recalibrated on {d['recal_images']} images)"
        ),
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a supernet with progressive shrinking (or no-PS)")
    p.add_argument("--config", required=True, help="training YAML (see configs/)")
    p.add_argument(
        "--stage", action="append", help="run only this stage (repeatable; default: all)"
    )
    p.add_argument("--out", help="output folder (default runs/<config>_<schedule>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--schedule", choices=["ps", "no_ps"], help="override the config's schedule")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="validation and test accuracy of a subnet (BN recalibrated)")
    p.add_argument("--arch", required=True, help="arch JSON file, inline JSON, max or min")
    p.add_argument("--checkpoint", required=True, help="supernet checkpoint (e.g. a stage's .pt)")
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

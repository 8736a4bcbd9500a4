"""``ofabench sample-accuracy``: an accuracy dataset (random subnets of a trained supernet and
their validation accuracy) for ``ofabench fit-predictor``; resumable, shardable under torchrun."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..files import check_output
from ._common import add_json, emit, input_paths
from .train import _set_threads, resolve_space_and_data

log = logging.getLogger("ofabench")
BARRIER_TIMEOUT_S = 7 * 24 * 3600.0  # ranks may finish days apart after an uneven resume


class _ProgressBar:
    """A tqdm bar driven by ``progress(done, total)`` calls (created on the first one)."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.desc = "subnets" if world_size == 1 else f"subnets (rank {rank}/{world_size})"
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=done, desc=self.desc, unit="subnet", dynamic_ncols=True
            )
            return
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_sample_accuracy(args: argparse.Namespace) -> None:
    from ..predictor.dataset import Settings, merge_shards, sample_accuracy_dataset
    from ..supernet.checkpoint import load_supernet
    from ..training import load_dataset
    from ..training.data import check_dataset_fits
    from ..training.distributed import barrier, init_from_env, shutdown

    _set_threads(args)
    settings = Settings(args.seed, args.recal_images, args.val_images, args.batch_size)
    check_output(args.out, input_paths(args.checkpoint, args.config, args.space))
    space, data = resolve_space_and_data(args)
    dist = init_from_env(timeout_s=BARRIER_TIMEOUT_S)
    if not dist.is_main:
        logging.getLogger("ofabench").setLevel(logging.WARNING)
    net = load_supernet(args.checkpoint, space)
    dataset = load_dataset(data)
    check_dataset_fits(dataset, space)
    bar = _ProgressBar(dist.rank, dist.world_size) if dist.is_main and args.progress else None
    try:
        report = sample_accuracy_dataset(
            net, dataset, args.n, args.out, settings, args.checkpoint,
            dist.rank, dist.world_size, progress=bar,
        )  # fmt: skip
        barrier(dist)
        rows = merge_shards(args.out, space, args.seed) if dist.enabled and dist.is_main else None
    finally:
        if bar is not None:
            bar.close()
        shutdown()
    if dist.is_main:
        result = {**report.to_dict(), "rows": rows if rows is not None else report.rows}
        emit(args, result, _describe)


def _describe(d: dict[str, Any]) -> str:
    return (
        f"{d['out']}: {d['rows']} rows ({d['evaluated']} evaluated now, {d['skipped']} already "
        f"there, {d['seconds']:.1f} s)"
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample-accuracy",
        help="validation accuracy of random subnets of a supernet, appended to a CSV (resumable)",
    )
    p.add_argument("--checkpoint", required=True, help="trained supernet (e.g. expand_2.pt)")
    p.add_argument(
        "--config",
        help="training config for space and data (default: config.yaml beside the checkpoint)",
    )
    p.add_argument("--space", help="space preset or file (default: from the config)")
    p.add_argument("--data", help="dataset name (fashion_mnist, digits, cifar10, imagefolder)")
    p.add_argument("--data-root", help="dataset folder")
    p.add_argument(
        "--n",
        "--num-subnets",
        dest="n",
        type=int,
        required=True,
        help="subnets (indices 0..N-1); under torchrun spell it --num-subnets (torchrun's own "
        "parser takes --n for one of its options)",
    )
    p.add_argument("--out", required=True, help="CSV to append to (e.g. acc.csv)")
    p.add_argument("--seed", type=int, default=0, help="the i-th subnet depends on (seed, i)")
    p.add_argument("--recal-images", type=int, default=2000, help="BN recalibration images")
    p.add_argument(
        "--val-images", type=int, help="evaluate on the first K validation images (default: all)"
    )
    p.add_argument("--batch-size", type=int, default=500, help="recalibration/eval batch")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_json(p)
    p.set_defaults(func=cmd_sample_accuracy)

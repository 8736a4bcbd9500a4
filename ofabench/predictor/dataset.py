"""Accuracy datasets: random subnets of a trained supernet and their validation accuracy.

:func:`sample_accuracy_dataset` samples subnets uniformly over the space (resolution included),
recalibrates each one's BN statistics on a fixed subset of training images, evaluates it on the
held-out validation split and appends one CSV row per subnet as it goes::

    index,arch,r,accuracy,macs,params
    0,"{""ks"": [3, 7, ...], ""e"": [...], ""d"": [...], ""r"": 28}",28,0.8731,1234567,456789

The ``index``-th arch depends only on ``(seed, index)`` (:func:`sample_arch`), so a killed run
resumes where it stopped (rows present are skipped, a torn last line is dropped) and shards are
deterministic: with ``world_size`` W, rank r evaluates the indices ``i % W == r`` into its own
part file ``<out>.rank<r>.csv``, and :func:`merge_shards` joins them into ``<out>`` sorted by
index. ``<out>.meta.json`` records what made the rows (checkpoint hash, space fingerprint,
dataset, seed, settings, versions); a run whose settings differ refuses to append.
``ofabench fit-predictor --data <out>`` reads the file (columns ``arch`` and ``accuracy``).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DatasetError
from ..latency.counting import count_macs, count_params
from ..provenance import atomic_open, provenance, write_json
from ..space import ArchConfig, SpaceSpec
from ..supernet import OFAMobileNetV3
from ..training.data import Dataset
from ..training.evaluate import DEFAULT_RECAL_IMAGES, SubnetEvaluator

log = logging.getLogger("ofabench")
COLUMNS = ("index", "arch", "r", "accuracy", "macs", "params")
META_FORMAT = "ofabench.accuracy_dataset"
SCHEMA_VERSION = 1
Progress = Callable[[int, int], None]


# -- what defines a dataset ---------------------------------------------------------------------
def sample_arch(space: SpaceSpec, seed: int, index: int) -> ArchConfig:
    """The ``index``-th subnet of the dataset seeded ``seed``: uniform over every choice and
    resolution, independent of every other index."""
    return space.sample(np.random.default_rng([seed, index]))


def file_identity(path: str | Path) -> dict[str, Any]:
    """Path, size and SHA-256 of a file (what a checkpoint is identified by)."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def weights_identity(net: torch.nn.Module) -> dict[str, Any]:
    """SHA-256 over a network's state dict (for a network that came from no file)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return {"path": None, "sha256": digest.hexdigest()}


def split_fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    digest = hashlib.sha256(images.contiguous().numpy().tobytes())
    digest.update(labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Settings:
    """How the rows of one accuracy dataset are made; two runs may share a file only if these
    agree (``n`` is not part of it: a larger ``n`` extends a dataset)."""

    seed: int = 0
    recal_images: int = DEFAULT_RECAL_IMAGES
    val_images: int | None = None
    batch_size: int = 500

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"--seed must be a non-negative integer, got {self.seed}")
        if self.recal_images < 1 or self.batch_size < 1:
            raise ConfigError("--recal-images and --batch-size must be positive")
        if self.val_images is not None and self.val_images < 1:
            raise ConfigError(f"--val-images must be positive, got {self.val_images}")


def dataset_identity(
    space: SpaceSpec, dataset: Dataset, settings: Settings, checkpoint: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything that decides which arch a row holds and how its accuracy was measured."""
    val = (
        dataset.val
        if settings.val_images is None
        else dataset.val.take(slice(0, settings.val_images))
    )
    return {
        "space": space.name,
        "space_fingerprint": space.fingerprint(),
        "choices": {
            "kernel": list(space.kernel_choices),
            "expand": list(space.expand_choices),
            "depth": list(space.depth_choices),
            "resolutions": list(space.resolutions),
        },
        "checkpoint_sha256": checkpoint.get("sha256"),
        "dataset": dataset.name,
        "val_images": len(val),
        "val_fingerprint": split_fingerprint(val.images, val.labels),
        "recal_images": min(settings.recal_images, len(dataset.train)),
        "batch_size": settings.batch_size,  # BN statistics average per-batch variances
        "seed": settings.seed,
    }


# -- files --------------------------------------------------------------------------------------
def meta_path(out: str | Path) -> Path:
    return Path(f"{out}.meta.json")


def shard_path(out: str | Path, rank: int) -> Path:
    return Path(f"{out}.rank{rank}.csv")


def shard_paths(out: str | Path) -> list[Path]:
    """The part files of ``out`` present on disk (any rank count), in rank order."""
    out = Path(out)
    found = out.parent.glob(f"{out.name}.rank*.csv")
    ranks = sorted((p for p in found if p.name[len(out.name) + 5 : -4].isdigit()), key=_rank_of)
    return ranks


def _rank_of(path: Path) -> int:
    return int(path.name.rsplit(".rank", 1)[1][:-4])


def ensure_meta(out: Path, identity: Mapping[str, Any], checkpoint: Mapping[str, Any]) -> None:
    """Write ``<out>.meta.json`` for a new dataset, or check that the existing one describes
    the same identity (DatasetError listing what differs)."""
    path = meta_path(out)
    # rows first, then the meta: a rank writes the meta before its rows, so rows seen here
    # without a meta seen after them really have none (ranks may start at the same time)
    has_rows = out.exists() or bool(shard_paths(out))
    if path.exists():
        _check_identity(out, _read_meta(path), identity)
        return
    if has_rows:
        raise DatasetError(
            f"{out} exists but has no {path.name}, so the checkpoint, space and seed that made "
            "it are unknown; move it away or choose another --out"
        )
    meta = {
        "format": META_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "columns": list(COLUMNS),
        "identity": dict(identity),
        "checkpoint": dict(checkpoint),
        "provenance": provenance(),
    }
    write_json(path, meta)


def _read_meta(path: Path) -> dict[str, Any]:
    import json

    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(
            f"cannot read {path}: {exc}; move it away or choose another --out"
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise DatasetError(f"{path} is not an ofabench accuracy-dataset description")
    return meta


def made_dataset_text(path: str | Path, space: SpaceSpec) -> str | None:
    """The text of an accuracy CSV made by sample-accuracy, checked for fitting a predictor of
    ``space``: its ``.meta.json`` must record ``space`` (DatasetError naming both), and a torn
    last line (a killed write) is dropped as sample-accuracy drops it. ``None`` for a file
    without a ``.meta.json`` (made elsewhere: read as it is)."""
    path = Path(path)
    meta = meta_path(path)
    if not meta.is_file():
        return None
    stored = _read_meta(meta).get("identity", {})
    if stored.get("space_fingerprint") != space.fingerprint():
        raise DatasetError(
            f"{path} holds subnets of space {stored.get('space')!r} (its {meta.name} says so), "
            f"not {space.name!r}; pass --space {stored.get('space')}"
        )
    data = path.read_bytes()
    complete = _complete_lines(data)
    if len(complete) < len(data):
        log.warning("%s: ignoring a half-written last line (%d bytes)", path, len(data) - len(complete))
    return complete.decode()


def _check_identity(out: Path, meta: Mapping[str, Any], identity: Mapping[str, Any]) -> None:
    stored = meta.get("identity", {})
    differs = [k for k in identity if stored.get(k) != identity[k]]
    if differs:
        details = "; ".join(f"{k}: file {stored.get(k)!r}, now {identity[k]!r}" for k in differs)
        raise DatasetError(
            f"{out} was made with other settings ({details}); resume with the same checkpoint, "
            "space, dataset and --seed/--recal-images/--val-images, or choose another --out"
        )


@dataclass(frozen=True)
class AccuracyRow:
    """One evaluated subnet."""

    index: int
    arch: ArchConfig
    accuracy: float
    macs: int
    params: int

    def to_line(self) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(
            [
                self.index,
                self.arch.to_json(),
                self.arch.r,
                repr(self.accuracy),
                self.macs,
                self.params,
            ]
        )
        return buffer.getvalue()


def read_rows(path: Path, space: SpaceSpec, seed: int) -> dict[int, AccuracyRow]:
    """The complete rows of an accuracy CSV by index; a torn last line (a killed write) is
    ignored. Every row's arch must be the one ``(seed, index)`` samples."""
    if not path.exists():
        return {}
    text = _complete_lines(path.read_bytes()).decode()
    if not text:
        return {}
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    if tuple(header) != COLUMNS:
        raise DatasetError(f"{path} has columns {header}; an accuracy dataset has {list(COLUMNS)}")
    rows = {}
    for line, fields in enumerate(reader, start=2):
        row = _parse_row(path, line, fields, space, seed)
        rows[row.index] = row
    return rows


def _complete_lines(data: bytes) -> bytes:
    """``data`` up to and including its last newline."""
    return data[: data.rfind(b"\n") + 1]


def _parse_row(
    path: Path, line: int, fields: list[str], space: SpaceSpec, seed: int
) -> AccuracyRow:
    where = f"{path}, line {line}"
    if len(fields) != len(COLUMNS):
        raise DatasetError(f"{where}: {len(fields)} fields, expected {len(COLUMNS)}")
    try:
        index, arch = int(fields[0]), ArchConfig.from_json(fields[1])
        row = AccuracyRow(index, arch, float(fields[3]), int(fields[4]), int(fields[5]))
    except ValueError as exc:
        raise DatasetError(f"{where}: {exc}") from exc
    if arch != sample_arch(space, seed, index):
        raise DatasetError(
            f"{where}: the arch of index {index} is not the one seed {seed} samples in space "
            f"{space.name!r}; the file was made with another seed or space"
        )
    return row


def repair_tail(path: Path) -> None:
    """Drop a torn last line (no newline: a write cut by a kill) so appends start cleanly."""
    if not path.exists():
        return
    data = path.read_bytes()
    keep = len(_complete_lines(data))
    if keep < len(data):
        log.warning("%s: dropping a half-written last line (%d bytes)", path, len(data) - keep)
        os.truncate(path, keep)


def _write_header_if_empty(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        with open(path, "w") as handle:
            handle.write(",".join(COLUMNS) + "\n")


def _append(path: Path, row: AccuracyRow) -> None:
    with open(path, "a") as handle:
        handle.write(row.to_line())
        handle.flush()
        os.fsync(handle.fileno())


# -- sampling -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleReport:
    """What one call did: rows evaluated now, rows already present, rows in the output."""

    out: str
    evaluated: int
    skipped: int
    rows: int
    seconds: float
    rank: int = 0
    world_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def sample_accuracy_dataset(
    net: OFAMobileNetV3,
    dataset: Dataset,
    n: int,
    out: str | Path,
    settings: Settings | None = None,
    checkpoint: str | Path | None = None,
    rank: int = 0,
    world_size: int = 1,
    merge: bool | None = None,
    progress: Progress | None = None,
) -> SampleReport:
    """Evaluate subnets ``0..n-1`` (this rank's share) of ``net`` into ``out`` (CSV), skipping
    rows already there. ``checkpoint`` (the file ``net`` came from) is hashed into the
    provenance; without it the weights are. ``merge`` (default: when ``world_size`` is 1) joins
    any part files into ``out`` at the end. ``progress(done, total)`` is called for this rank's
    share before the first and after every evaluation."""
    settings = settings or Settings()
    out = _check_request(out, n, rank, world_size)
    space = net.space
    origin = file_identity(checkpoint) if checkpoint is not None else weights_identity(net)
    ensure_meta(out, dataset_identity(space, dataset, settings, origin), origin)
    target = out if world_size == 1 else shard_path(out, rank)
    repair_tail(target)
    done = _present_indices(out, space, settings.seed)
    mine = range(rank, n, world_size)
    pending = [i for i in mine if i not in done]
    start = time.perf_counter()
    if pending:
        _evaluate_into(net, dataset, settings, target, pending, len(mine), progress)
    if merge if merge is not None else world_size == 1:
        merge_shards(out, space, settings.seed)
    rows = len(read_rows(target, space, settings.seed)) if target.exists() else 0
    return SampleReport(
        str(out), len(pending), len(mine) - len(pending), rows,
        round(time.perf_counter() - start, 3), rank, world_size,
    )  # fmt: skip


def _check_request(out: str | Path, n: int, rank: int, world_size: int) -> Path:
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise ConfigError(
            f"--out {out} must be a .csv file (rows are appended as they are evaluated)"
        )
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not in 0..{world_size - 1}")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _present_indices(out: Path, space: SpaceSpec, seed: int) -> set[int]:
    """Indices already evaluated in ``out`` or in any part file (of any earlier rank count)."""
    done: set[int] = set()
    for path in [out, *shard_paths(out)]:
        done.update(read_rows(path, space, seed))
    return done


def _evaluate_into(
    net: OFAMobileNetV3,
    dataset: Dataset,
    settings: Settings,
    target: Path,
    pending: list[int],
    total: int,
    progress: Progress | None,
) -> None:
    space = net.space
    evaluator = SubnetEvaluator(
        net, dataset, ("val",), settings.recal_images, settings.val_images, settings.batch_size
    )
    _write_header_if_empty(target)
    done = total - len(pending)
    if progress is not None:
        progress(done, total)
    for index in pending:
        arch = sample_arch(space, settings.seed, index)
        acc = evaluator(arch)["val_acc"]
        _append(
            target,
            AccuracyRow(index, arch, acc, count_macs(space, arch), count_params(space, arch)),
        )
        done += 1
        log.debug("subnet %d: val acc %.4f (r=%d)", index, acc, arch.r)
        if progress is not None:
            progress(done, total)


def merge_shards(out: str | Path, space: SpaceSpec, seed: int) -> int:
    """Join ``out`` and its part files into ``out`` (sorted by index, one row per index),
    atomically, then delete the part files. Returns the number of rows."""
    out = Path(out)
    shards = shard_paths(out)
    rows = _merged_rows([out, *shards], space, seed)
    if shards:
        with atomic_open(out) as handle:
            handle.write(",".join(COLUMNS) + "\n")
            handle.writelines(rows[i].to_line() for i in sorted(rows))
    for path in shards:
        path.unlink()
    if shards:
        log.info("merged %d part file(s) into %s (%d rows)", len(shards), out, len(rows))
    return len(rows)


def _merged_rows(paths: Iterable[Path], space: SpaceSpec, seed: int) -> dict[int, AccuracyRow]:
    rows: dict[int, AccuracyRow] = {}
    for path in paths:
        for index, row in read_rows(path, space, seed).items():
            rows.setdefault(index, row)
    return rows

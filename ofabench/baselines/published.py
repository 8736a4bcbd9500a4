"""Published reference points shipped with ofabench, one cited row each.

``published_imagenet.csv`` holds ImageNet top-1 (percent, as papers print it), MACs and
parameters (millions) and, where the source gives one, a device latency with its device. Rows
come from the OFA paper's Table 1, the OFA repository's list of specialized networks, and the
TensorFlow MobileNet checkpoint tables; the ``citation`` column names the source of every row.
A latency is left empty where no source gives one for that device: such a point then appears
on MACs plots only.
"""

from __future__ import annotations

import csv
import io
from importlib import resources

from ..errors import ConfigError
from ..search.points import ParetoPoint

DATASETS = {"imagenet": "published_imagenet.csv"}
COLUMNS = (
    "method",
    "model",
    "top1_pct",
    "mmacs",
    "mparams",
    "latency_ms",
    "latency_device",
    "citation",
    "notes",
)


def list_published() -> list[str]:
    return sorted(DATASETS)


def published_text(name: str = "imagenet") -> str:
    """The raw CSV of a shipped dataset."""
    if name not in DATASETS:
        raise ConfigError(f"unknown published dataset {name!r}; available: {list_published()}")
    return resources.files(__package__).joinpath(DATASETS[name]).read_text(encoding="utf-8")


def load_published(name: str = "imagenet") -> list[ParetoPoint]:
    """The points of a shipped dataset; every row must carry a citation."""
    reader = csv.DictReader(io.StringIO(published_text(name)))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ConfigError(
            f"published dataset {name!r} has columns {reader.fieldnames}; expected {list(COLUMNS)}"
        )
    return [_point(name, line, row) for line, row in enumerate(reader, start=2)]


def _point(name: str, line: int, row: dict[str, str]) -> ParetoPoint:
    where = f"published dataset {name!r}, line {line}"
    if not row["citation"].strip():
        raise ConfigError(f"{where}: row {row['model']!r} has no citation")
    latency = _number(where, row["latency_ms"])
    device = row["latency_device"].strip() or None
    if (latency is None) != (device is None):
        raise ConfigError(f"{where}: latency_ms and latency_device must be given together")
    top1 = _number(where, row["top1_pct"])
    if top1 is None:
        raise ConfigError(f"{where}: top1_pct is empty")
    return ParetoPoint(
        method=row["method"],
        accuracy=top1 / 100.0,
        latency_ms=latency,
        mmacs=_number(where, row["mmacs"]),
        mparams=_number(where, row["mparams"]),
        device=device,
        kind="published",
        accuracy_kind="measured",
        source=row["citation"].strip(),
        model=row["model"],
        notes=row["notes"],
    )


def _number(where: str, text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {text!r} is not a number") from exc

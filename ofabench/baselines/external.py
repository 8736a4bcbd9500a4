"""Points supplied from outside as CSV: the "no PS" supernet, subnets trained from scratch,
or anything else measured elsewhere.

Columns (header required, order free):

============  ========  ====================================================================
column        required  meaning
============  ========  ====================================================================
method        yes       series name, e.g. ``no-PS supernet`` or ``from scratch``
accuracy      yes       top-1 as a fraction (0.712, not 71.2)
source        yes       where the number comes from (a run directory, a paper and table...)
latency_ms    one of    latency in ms on ``device``
mmacs         these     MACs in millions
mparams       no        parameters in millions
device        no        the device of ``latency_ms`` (required when latency_ms is given)
accuracy_kind no        ``measured`` (default) or ``predicted``
model         no        a name for the point
arch          no        the arch as JSON (``{"ks": [...], ...}``)
notes         no        free text
============  ========  ====================================================================

Every problem is reported with the file and line number, as a :class:`ConfigError`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..search.points import ParetoPoint

REQUIRED = ("method", "accuracy", "source")
COSTS = ("latency_ms", "mmacs")
OPTIONAL = ("mparams", "device", "accuracy_kind", "model", "arch", "notes")


def load_external_points(path: str | Path, kind: str = "external") -> list[ParetoPoint]:
    """Read an external-points CSV (format in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"external points file {path} does not exist")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        _check_header(path, reader.fieldnames)
        points = [_row_point(path, n, row, kind) for n, row in enumerate(reader, start=2)]
    if not points:
        raise ConfigError(f"external points file {path} has a header but no rows")
    return points


def _check_header(path: Path, header: list[str] | None) -> None:
    if not header:
        raise ConfigError(f"external points file {path} is empty; it needs a header row")
    names = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise ConfigError(
            f"external points file {path} lacks column(s) {missing}; required: "
            f"{list(REQUIRED)} and one of {list(COSTS)}"
        )
    if not any(c in names for c in COSTS):
        raise ConfigError(f"external points file {path} needs a column latency_ms or mmacs")
    unknown = sorted(set(names) - set(REQUIRED) - set(COSTS) - set(OPTIONAL))
    if unknown:
        raise ConfigError(f"external points file {path} has unknown column(s) {unknown}")


def _row_point(path: Path, line: int, row: Mapping[str, Any], kind: str) -> ParetoPoint:
    where = f"{path}:{line}"
    row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
    for name in REQUIRED:
        if not row.get(name):
            raise ConfigError(f"{where}: column {name!r} is empty")
    accuracy = _number(where, "accuracy", row["accuracy"])
    if accuracy is None or not 0.0 <= accuracy <= 1.0:
        raise ConfigError(
            f"{where}: accuracy {row['accuracy']!r} must be a fraction in [0, 1] (0.712, not 71.2)"
        )
    costs = {c: _number(where, c, row.get(c, "")) for c in (*COSTS, "mparams")}
    if costs["latency_ms"] is None and costs["mmacs"] is None:
        raise ConfigError(f"{where}: give latency_ms or mmacs (both are empty)")
    if costs["latency_ms"] is not None and not row.get("device"):
        raise ConfigError(
            f"{where}: latency_ms needs the device it was measured on (column device)"
        )
    return ParetoPoint(
        method=row["method"],
        accuracy=accuracy,
        device=row.get("device") or None,
        kind=kind,
        accuracy_kind=_accuracy_kind(where, row.get("accuracy_kind", "")),
        source=row["source"],
        model=row.get("model", ""),
        arch=_arch(where, row.get("arch", "")),
        notes=row.get("notes", ""),
        **costs,
    )


def _number(where: str, name: str, text: str) -> float | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: column {name!r} holds {text!r}, not a number") from exc
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: column {name!r} must be a finite number >= 0, got {text!r}")
    return value


def _accuracy_kind(where: str, text: str) -> str:
    kind = text or "measured"
    if kind not in ("measured", "predicted"):
        raise ConfigError(f"{where}: accuracy_kind must be measured or predicted, got {text!r}")
    return kind


def _arch(where: str, text: str) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: column 'arch' is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: column 'arch' must be a JSON object")
    return data

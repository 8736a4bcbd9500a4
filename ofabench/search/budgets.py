"""Budgets as users write them: ``25ms``, ``300M`` MACs, ``5M`` params, and lists of them.

A budget needs a unit (``25`` alone is refused: milliseconds or seconds?) and must be positive.
Lists are comma separated with the unit on any item (unit-less items take the list's one
unit); ``a,b,...,c`` is the arithmetic progression from ``a`` in steps of ``b - a`` up to
``c``, and ``a:c:step`` is the same written as a range::

    parse_budgets("15,20,...,60ms", "latency")  # [15, 20, 25, ..., 60]
    parse_budgets("15:60:5ms", "latency")       # the same
    parse_budgets("200M,300M,0.4G", "macs")     # [200, 300, 400] (millions)
"""

from __future__ import annotations

import re

from ..errors import ConfigError
from .axes import AXES_INFO, AXIS_OF_KIND, axis_of_kind

# kind -> unit -> factor to the kind's canonical unit (ms, millions, millions): from the axis table
UNITS: dict[str, dict[str, float]] = {a.kind: dict(a.units) for a in AXES_INFO.values()}
_ITEM = re.compile(r"^\s*(-?[0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def _units(kind: str) -> dict[str, float]:
    return dict(axis_of_kind(kind).units)


def _split(text: str, kind: str) -> tuple[float, str | None]:
    match = _ITEM.match(text)
    if not match:
        raise ConfigError(f"budget {text!r} is not a number with a unit, e.g. {_example(kind)}")
    unit = match.group(2).lower() or None
    if unit is not None and unit not in _units(kind):
        raise ConfigError(
            f"budget {text!r} has unknown unit {match.group(2)!r}; {kind} units: "
            f"{_unit_names(kind)}"
        )
    return float(match.group(1)), unit


def _unit_names(kind: str) -> str:
    return ", ".join(axis_of_kind(kind).unit_names)


def _example(kind: str) -> str:
    return axis_of_kind(kind).example if kind in AXIS_OF_KIND else "25ms"


def parse_budget(text: str, kind: str) -> float:
    """One budget in the canonical unit of ``kind`` (ms, millions of MACs or parameters)."""
    values = parse_budgets(text, kind)
    if len(values) != 1:
        raise ConfigError(f"expected one {kind} budget, got {len(values)} in {text!r}")
    return values[0]


def parse_budgets(text: str, kind: str) -> list[float]:
    """A list of budgets (see the module docstring), sorted, in the canonical unit."""
    text = str(text).strip()
    if not text:
        raise ConfigError(f"empty {kind} budget; write e.g. {_example(kind)}")
    if ":" in text:
        return _range(text, kind)
    items = text.split(",")
    if "..." in [t.strip() for t in items]:
        return _progression(items, kind)
    return _finish([_split(t, kind) for t in items], kind, text)


def _finish(pairs: list[tuple[float, str | None]], kind: str, text: str) -> list[float]:
    if not any(u is not None for _, u in pairs):
        raise ConfigError(
            f"{kind} budget {text!r} has no unit; write e.g. {_example(kind)} "
            f"(units: {_unit_names(kind)})"
        )
    return _positive(_canonical(pairs, kind, text), kind, text)


def _range(text: str, kind: str) -> list[float]:
    parts = text.split(":")
    if len(parts) != 3:
        raise ConfigError(f"write a budget range as start:stop:step (e.g. 15:60:5ms), got {text!r}")
    start, stop, step = (_split(p, kind) for p in parts)
    a, c, d = _canonical([start, stop, step], kind, text)
    return _arange(a, a + d, c, kind, text)


def _progression(items: list[str], kind: str) -> list[float]:
    stripped = [t.strip() for t in items]
    if len(stripped) != 4 or stripped[2] != "...":
        raise ConfigError(
            f"write a progression as first,second,...,last (e.g. 15,20,...,60ms), got "
            f"{','.join(items)!r}"
        )
    pairs = [_split(stripped[i], kind) for i in (0, 1, 3)]
    a, b, c = _canonical(pairs, kind, ",".join(items))
    return _arange(a, b, c, kind, ",".join(items))


def _canonical(pairs: list[tuple[float, str | None]], kind: str, text: str) -> list[float]:
    """Values in the canonical unit; unit-less items take the unit given elsewhere, which must
    then be the only one used."""
    units = [u for _, u in pairs if u is not None]
    if not units:
        raise ConfigError(f"{kind} budget {text!r} has no unit; write e.g. {_example(kind)}")
    if len(set(units)) > 1 and len(units) < len(pairs):
        raise ConfigError(
            f"{kind} budgets {text!r} mix units and leave some items without one; give every "
            "item its unit, or one unit for all"
        )
    return [v * _units(kind)[u or units[-1]] for v, u in pairs]


def _arange(a: float, b: float, c: float, kind: str, text: str) -> list[float]:
    step = b - a
    if step <= 0 or c < a:
        raise ConfigError(f"budget progression {text!r} must increase")
    n = int(round((c - a) / step))
    if n > 1000:
        raise ConfigError(f"budget progression {text!r} has more than 1000 values")
    values = [a + i * step for i in range(n + 1) if a + i * step <= c + 1e-9 * abs(c)]
    return _positive(values, kind, text)


def _positive(values: list[float], kind: str, text: str) -> list[float]:
    bad = [v for v in values if v <= 0]
    if bad:
        raise ConfigError(f"{kind} budgets must be positive, got {bad[0]:g} in {text!r}")
    return sorted({round(v, 9) for v in values})


def sweep_spec(
    latency: str | None = None, macs: str | None = None, params: str | None = None
) -> tuple[str, list[float], dict[str, float]]:
    """``(axis, budgets, fixed)`` from the budget options of a sweep: the option with several
    values is swept, single values are fixed limits on their axes; when every option has one
    value the first given of latency, MACs, params is swept."""
    given = {
        kind: parse_budgets(text, kind)
        for kind, text in (("latency", latency), ("macs", macs), ("params", params))
        if text is not None
    }
    if not given:
        raise ConfigError(
            "give budgets to sweep: --latency, --macs or --params (e.g. 15,20,...,60ms)"
        )
    lists = [k for k, v in given.items() if len(v) > 1]
    if len(lists) > 1:
        raise ConfigError(
            f"only one budget list can be swept at a time; got lists for {lists}: give the "
            "others a single value"
        )
    swept = lists[0] if lists else next(iter(given))
    fixed = {AXIS_OF_KIND[k]: v[0] for k, v in given.items() if k != swept}
    return AXIS_OF_KIND[swept], given[swept], fixed


def single_budgets(
    latency: str | None = None, macs: str | None = None, params: str | None = None
) -> dict[str, float | None]:
    """Single budgets by axis (None where not given)."""
    return {
        "latency_ms": parse_budget(latency, "latency") if latency is not None else None,
        "mmacs": parse_budget(macs, "macs") if macs is not None else None,
        "mparams": parse_budget(params, "params") if params is not None else None,
    }

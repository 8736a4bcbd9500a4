"""``ofabench devices``: the device profiles (or, with ``--backends``, the backends) and whether
each can run here, with the reason when it cannot; ``ofabench noise``: whether a device is quiet
enough to measure now."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_json, emit


def device_rows() -> list[dict[str, Any]]:
    """One row per device profile; a profile that cannot be read shows its error as the reason."""
    from ..devices.profiles import list_profiles, load_profile
    from ..errors import OfabenchError

    rows = []
    for name in list_profiles():
        try:
            profile = load_profile(name)
        except OfabenchError as exc:
            rows.append({"name": name, "backend": None, "available": False, "reason": str(exc)})
            continue
        status = profile.availability()
        rows.append({**profile.to_dict(), "available": status.ok, "reason": status.reason})
    return rows


def backend_rows() -> list[dict[str, Any]]:
    """One row per registered backend name, with the library-level availability."""
    from ..devices.registry import get_backend_class, list_backends

    rows = []
    for name in list_backends():
        try:
            cls = get_backend_class(name)
        except Exception as exc:  # a module not written or a library missing: unavailable
            rows.append(
                {"name": name, "available": False, "reason": _import_reason(exc), "extra": None}
            )
            continue
        status = cls.is_available()
        reason = status.reason
        if not status and cls.extra:
            reason += f" (install: pip install 'ofabench[{cls.extra}]')"
        rows.append({"name": name, "available": status.ok, "reason": reason, "extra": cls.extra})
    return rows


def _import_reason(exc: Exception) -> str:
    if isinstance(exc, ImportError):
        return f"cannot be imported: {exc}"
    return str(exc)


def _format_rows(rows: list[dict[str, Any]], detail: str) -> str:
    if not rows:
        return "no device profiles found (add devices/<name>.yaml or set OFABENCH_DEVICES_DIR)"
    width = max(len(r["name"]) for r in rows)
    backend_width = max(len(str(r.get("backend"))) for r in rows)
    lines = []
    for row in rows:
        mark = "yes" if row["available"] else "no "
        backend = f"{row.get('backend') or '?':<{backend_width}}  " if detail == "devices" else ""
        note = row["reason"] if not row["available"] else row.get("description", "")
        lines.append(f"{row['name']:<{width}}  {backend}{mark}  {note}".rstrip())
    return "\n".join(lines)


def cmd_devices(args: argparse.Namespace) -> None:
    if args.backends:
        emit(args, {"backends": backend_rows()}, lambda d: _format_rows(d["backends"], "backends"))
    else:
        emit(args, {"devices": device_rows()}, lambda d: _format_rows(d["devices"], "devices"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "devices", help="list device profiles (or backends) and whether each runs here"
    )
    p.add_argument("--backends", action="store_true", help="list the registered backends instead")
    add_json(p)
    p.set_defaults(func=cmd_devices)
    register_noise(sub)


def cmd_noise(args: argparse.Namespace) -> None:
    from ..devices.base import MeasureSettings
    from ..latency.noise import measure_noise

    settings = MeasureSettings(warmup=args.warmup, repeats=args.repeats, max_rounds=1)
    report = measure_noise(args.device, args.space, args.resolution, args.seed, args.sessions,
                           args.rounds, settings, paired=not args.no_paired)  # fmt: skip
    emit(args, report.to_dict(), lambda d: report.summary())


def register_noise(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "noise",
        help="is the device quiet enough to measure now? one subnet in several sessions, "
        "interleaved: how a measurement repeats (a few seconds)",
    )
    p.add_argument("--device", required=True, help="device profile name or .yaml path")
    p.add_argument(
        "--space", default="ofa_mbv3_w1.0", help="space of the subnet (default ofa_mbv3_w1.0)"
    )
    p.add_argument("--resolution", type=int, help="input size (default: the space's middle one)")
    p.add_argument("--seed", type=int, default=3, help="which random subnet (default 3)")
    p.add_argument("--sessions", type=int, default=4, help="sessions of the subnet (default 4)")
    p.add_argument("--rounds", type=int, default=6, help="rounds over the sessions (default 6)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs per measurement (10)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs per measurement (30)")
    p.add_argument(
        "--no-paired",
        action="store_true",
        help="skip the second matrix timed alternately with the drift probe",
    )
    add_json(p)
    p.set_defaults(func=cmd_noise)

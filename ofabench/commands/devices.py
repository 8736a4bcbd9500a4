"""``ofabench devices``: the device profiles (or, with ``--backends``, the backends) and whether
each can run here, with the reason when it cannot."""

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

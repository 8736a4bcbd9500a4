"""``ofabench profile``: measure a device into a latency table; ``ofabench validate``: compare a
table's predictions with end-to-end measurements of random subnets."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from ..devices.base import MeasureSettings
from ..errors import ConfigError
from ..files import check_output
from ._common import add_json, add_space, emit, input_paths, terminate_as_interrupt


def _settings(args: argparse.Namespace) -> MeasureSettings:
    defaults = MeasureSettings()
    return MeasureSettings(
        warmup=defaults.warmup if args.warmup is None else args.warmup,
        repeats=defaults.repeats if args.repeats is None else args.repeats,
        max_rounds=defaults.max_rounds if args.max_rounds is None else args.max_rounds,
    )


@contextlib.contextmanager
def _progress_bar(unit: str) -> Iterator[Any]:
    """A tqdm bar on stderr (with ETA) fed by the library's ``progress(done, total, key)``; made
    at the first call, so a run that fails before measuring prints only its error."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bars: list[Any] = []

    def progress(done: int, total: int, key: str) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit=unit, dynamic_ncols=True, disable=None))
        bar = bars[0]
        bar.total = total
        bar.n = done
        if key:
            bar.set_postfix_str(key[-60:], refresh=False)
        bar.refresh()

    try:
        with logging_redirect_tqdm(), terminate_as_interrupt():
            yield progress
    finally:
        for bar in bars:
            bar.close()


def _profile_text(d: dict[str, Any]) -> str:
    lines = [
        f"wrote {d['path']}: {d['n_entries']} entries ({d['n_measured']} measured now, "
        f"{d['n_fitted']} fitted, {d['n_skipped']} measured before) in {d['wall_s']:.1f} s",
        f"resolutions measured {d['measured_resolutions']}"
        + (f", fitted {d['fitted_resolutions']}" if d["fitted_resolutions"] else ""),
    ]
    if d["calibration"]:
        c = d["calibration"]
        lines.append(
            f"calibration ({c['method']}) on {c['n']} subnets: measured = {c['scale']:.4f} * sum "
            f"{c['overhead_ms']:+.4f} ms"
        )
    return "\n".join(lines)


def _probe(args: argparse.Namespace) -> Any:
    from ..latency.probe import ProbeSettings

    return ProbeSettings(enabled=not args.no_probe, mode=args.probe_mode)


def _profile_transfer(args: argparse.Namespace) -> None:
    from ..latency.transfer import profile_transfer, resolve_sources
    from ..space import get_space

    if args.budget is None:
        raise ConfigError("--transfer-from needs --budget K (ops to measure on the new device)")
    sources = resolve_sources(args.transfer_from, get_space(args.space))
    with _progress_bar("op") as progress:
        result = profile_transfer(
            args.device, args.space, sources, args.budget, args.subnets, args.out,
            _settings(args), args.seed, progress, _probe(args),
        )  # fmt: skip
    emit(args, result.to_dict(), lambda d: (
        f"wrote {d['path']}: {d['n_measured']} ops measured, {d['n_transferred']} transferred "
        f"from {', '.join(d['sources'])}, {d['n_subnets']} subnets measured for the calibration"
    ))  # fmt: skip


def _recalibrate(args: argparse.Namespace) -> None:
    from ..latency.probe import recalibrate_device

    record = recalibrate_device(
        args.device, args.space, args.out, args.recalibrate, _settings(args)
    )
    emit(args, record, lambda d: (
        f"recalibrated {d['path']}: its predictions hold when the probe runs "
        f"{d['reference_ms']:.4f} ms (measured/predicted {d['measured_over_predicted']:.3f} on "
        f"{d['subnets']} subnets)"
    ))  # fmt: skip


def cmd_profile(args: argparse.Namespace) -> None:
    from ..latency.profiler import profile_device

    if args.transfer_from is not None:
        return _profile_transfer(args)
    if args.budget is not None:
        raise ConfigError("--budget is for a transfer: pass --transfer-from A,B,...")
    if args.recalibrate:
        return _recalibrate(args)
    check_output(args.out, input_paths(args.device, args.space))
    with _progress_bar("op") as progress:
        result = profile_device(
            args.device,
            args.space,
            resolutions=args.resolutions,
            out_path=args.out,
            settings=_settings(args),
            fit_resolutions=args.fit_resolutions,
            progress=progress,
            calibrate=args.calibrate,
            seed=args.seed,
            calibration_method=args.calibration_method,
            max_fit_rms=args.max_fit_rms,
            probe=_probe(args),
            passes=args.passes,
        )
    emit(args, result.to_dict(), _profile_text)
    return None


def _validate_text(d: dict[str, Any]) -> str:
    lines = [f"{d['device']} / {d['space']}: {d['n']} subnets, table {d['table']}"]
    for name, m in d["metrics"].items():
        lines.append(
            f"  {name:<17} n={m['n']:<4} MAPE {m['mape']:5.2f}%  within 5% {100 * m['within_5']:5.1f}%"
            f"  within 10% {100 * m['within_10']:5.1f}%  Kendall tau {m['kendall_tau']:.3f}"
        )
    if d.get("speed"):
        lines.append(d["speed"]["message"])
    lines.append("wrote " + ", ".join(d["files"].values()))
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> None:
    from ..latency.validate import validate_device

    check_output(args.out, input_paths(args.device, args.space, args.table), folder=True)
    with _progress_bar("subnet") as progress:
        result = validate_device(
            args.device,
            args.space,
            table=args.table,
            n=args.n,
            seed=args.seed,
            out_dir=args.out,
            settings=_settings(args),
            calibrate_split=args.calibrate_split,
            passes=args.passes,
            progress=progress,
            calibration_method=args.calibration_method,
            probe=_probe(args),
            speed_check=args.speed_check,
            anchor=args.anchor,
        )
    emit(args, result.to_dict(), _validate_text)


def _add_measure_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", required=True, help="device profile name or .yaml path")
    add_space(p)
    p.add_argument("--warmup", type=int, help="untimed runs per model (default 10)")
    p.add_argument("--repeats", type=int, help="timed runs per round (default 30)")
    p.add_argument("--max-rounds", type=int, help="rounds until two agree within 3%% (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed of sampled subnets")
    p.add_argument(
        "--no-probe",
        action="store_true",
        help="do not time the reference probe (no drift normalisation)",
    )
    p.add_argument(
        "--probe-mode",
        choices=["paired", "rounds"],
        default=None,
        help="paired: time the probe alternately with every op or subnet, block by block, and "
        "keep their ratio (holds on a machine that changes speed every few tens of "
        "milliseconds); rounds: read the probe between rounds of items and interpolate "
        "(default: the device profile's probe_mode, paired unless it says otherwise)",
    )
    p.add_argument(
        "--calibration-method",
        choices=["auto", "affine", "ratio"],
        default="auto",
        help="affine: least-squares scale and overhead; ratio: median measured/sum, no overhead "
        "(robust with few or noisy subnets); auto (default): whichever of the plain sum, ratio "
        "and affine predicts the measured subnets best, left out one at a time",
    )
    add_json(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="measure every op of a space on a device into a latency table (resumable)",
        description="Measure every distinct op of the space at every resolution on the device "
        "and write latency_tables/<device>/<space>.json atomically as it goes; rerun the same "
        "command to resume an interrupted run.",
    )
    _add_measure_args(p)
    p.add_argument("--resolutions", default="all", help="comma list (160,176,...) or all")
    p.add_argument(
        "--fit-resolutions",
        default=None,
        help="cost saving: every:N measures every Nth resolution plus both ends and fits the "
        "others' ops linearly in H*W; measure:R1,R2,... names the resolutions to measure "
        "(default: measure all)",
    )
    p.add_argument(
        "--max-fit-rms",
        type=float,
        default=0.05,
        help="measure instead of fitting the ops of a group whose line misses its measured "
        "points by more than this RMS share of their mean (default 0.05)",
    )
    p.add_argument(
        "--passes",
        type=int,
        default=1,
        help="sweeps over the ops, each keeping its fastest: on a machine that slows down for "
        "seconds at a time, 2-3 sweeps keep the spells out of the table (default 1)",
    )
    p.add_argument("--out", help="table path (default latency_tables/<device>/<space>.json)")
    p.add_argument(
        "--transfer-from",
        metavar="A,B,...",
        help="few-shot: measure --budget ops and --subnets subnets, transfer the rest from these "
        "devices' tables (names under latency_tables/ or table paths)",
    )
    p.add_argument("--budget", type=int, metavar="K", help="ops to measure with --transfer-from")
    p.add_argument(
        "--subnets", type=int, default=10, help="whole subnets measured with --transfer-from"
    )
    p.add_argument(
        "--recalibrate",
        type=int,
        default=0,
        metavar="N",
        help="give the existing table this machine's probe speed from N subnets measured end "
        "to end (for a table made elsewhere or before probes existed); measures no op",
    )
    p.add_argument(
        "--calibrate",
        type=int,
        default=0,
        metavar="K",
        help="also measure K random subnets end to end and store a calibrated scale/overhead",
    )
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser(
        "validate",
        help="measure random subnets end to end and compare with the latency table",
        description="Measure N random subnets end to end on the device and report how well "
        "the latency table predicts them (MAPE, within 5%%/10%%, Kendall tau) as JSON, CSV and a "
        "scatter plot; rerun the same command to resume an interrupted run.",
    )
    _add_measure_args(p)
    p.add_argument("--n", type=int, default=100, help="number of random subnets (default 100)")
    p.add_argument("--table", help="latency table (default latency_tables/<device>/<space>.json)")
    p.add_argument("--out", help="report folder (default reports/validation/<device>/)")
    p.add_argument(
        "--calibrate-split",
        type=float,
        metavar="F",
        help="fit scale/overhead on a share F of the subnets, report metrics on the rest",
    )
    p.add_argument(
        "--speed-check",
        choices=["auto", "rescale", "refuse", "off"],
        default="auto",
        help="this machine's probe vs the table's: auto rescales up to 1.5x and refuses beyond, "
        "rescale always, refuse beyond 5%%, off skips the probe (default auto)",
    )
    p.add_argument(
        "--passes",
        type=int,
        default=1,
        help="sweeps over all subnets, keeping each one's fastest median (default 1)",
    )
    p.add_argument(
        "--anchor",
        type=int,
        default=0,
        metavar="K",
        help="first measure K of the table's calibration subnets here and also report the "
        "table scaled by their median measured-now / measured-at-profiling (table_anchored): "
        "takes out a level the machine or the process moved by since profiling (default 0)",
    )
    p.set_defaults(func=cmd_validate)

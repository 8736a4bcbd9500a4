"""The study's report folder: ``README.md`` (claims, LUT validation, predictor, cross-device view,
wall times), one Pareto report per device (plots, CSV, summary), the validation scatter plots,
and ``study.json`` (every step's summary and provenance). Everything in it is computed from the
study's work directory; nothing is typed in by hand."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..provenance import atomic_open, cpu_model, write_json
from ..report.tables import markdown_table
from ..space import ArchBatch, ArchConfig
from .config import DeviceStep

if TYPE_CHECKING:
    from .runner import Study

CROSS_DEVICE_SAMPLES = 2000


def write_study_report(study: Study, devices: Sequence[DeviceStep]) -> dict[str, Any]:
    from ..baselines import load_external_points
    from ..report import write_report
    from ..search.sweep import load_sweep, with_points
    from .steps import study_externals

    out = Path(study.config.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_device = {}
    for d in devices:
        # the search step's saved sweep, plus the measured points of the later steps
        measured = [p for f in study_externals(study, d.name) for p in load_external_points(f)]
        document = with_points(load_sweep(str(study.search_path(d.name))), measured)
        files = write_report(document, f"{study.config.name} on {d.name}", out / d.name,
                             study.command)  # fmt: skip
        per_device[d.name] = {"document": document, "files": {k: str(v) for k, v in files.items()}}
    validation = _copy_validation_plots(study, devices, out)
    cross = cross_device(study, devices)
    figures = pretrained_claims(study) if study.config.pretrained else claims(study, devices)
    text = readme(study, devices, per_device, validation, cross, figures)
    with atomic_open(out / "README.md") as handle:
        handle.write(text)
    write_json(out / "cross_device.json", cross)
    write_json(out / "claims.json", figures)
    _copy(study.work / "compare" / "random_subnets.csv", out / "compare_subnets.csv")
    return {
        "dir": str(out),
        "devices": {k: v["files"] for k, v in per_device.items()},
        "cross_device": cross,
    }


# -- pieces ----------------------------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> None:
    if src.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def _copy_validation_plots(
    study: Study, devices: Sequence[DeviceStep], out: Path
) -> dict[str, str]:
    copied = {}
    for d in devices:
        files = study.summary(f"validate_{d.name}")["files"]
        src = Path(files["png"])
        if src.exists():
            dst = out / "validation" / f"{d.name}.png"
            _copy(src, dst)
            copied[d.name] = str(dst.relative_to(out))
    return copied


def cross_device(study: Study, devices: Sequence[DeviceStep]) -> dict[str, Any]:
    """Kendall tau between devices of (a) the table-predicted latency of the same random
    subnets and (b) the measured end-to-end latency of the validation subnets they share; and
    the architecture each device's search picked at each relative budget."""
    from ..latency.validate import fastest_by_index, kendall_tau, read_rows
    from .steps import VALIDATION_SEED, problem_for

    space = study.space
    rng = np.random.default_rng(12345)
    archs = ArchBatch.from_archs([space.sample(rng) for _ in range(CROSS_DEVICE_SAMPLES)])
    predicted, measured = {}, {}
    for d in devices:
        predicted[d.name] = problem_for(study, d.name).latency_model.predict_batch(archs)
        summary = study.summary(f"validate_{d.name}")
        identity = {"device": d.name, "space": space.fingerprint(), "seed": VALIDATION_SEED}
        rows = read_rows(Path(summary["files"]["csv"]), identity)
        measured[d.name] = fastest_by_index(rows, summary["n"])
    names = [d.name for d in devices]
    tau_pred, tau_meas = {}, {}
    for a, b in itertools.combinations(names, 2):
        tau_pred[f"{a}|{b}"] = kendall_tau(predicted[a], predicted[b])
        n = min(len(measured[a]), len(measured[b]))
        x, y = measured[a][:n], measured[b][:n]
        ok = np.isfinite(x) & np.isfinite(y)
        tau_meas[f"{a}|{b}"] = {"tau": kendall_tau(x[ok], y[ok]), "n": int(ok.sum())}
    chosen = {}
    for d in devices:
        rows = []
        for x in study.summary(f"search_{d.name}")["chosen"]:
            arch = ArchConfig.from_dict(x["arch"])
            blocks = space.active_blocks(arch)
            rows.append({
                "budget_ms": x["budget"], "latency_ms": x["latency_ms"], "predicted": x["predicted"],
                "mean_kernel": float(np.mean([b[2] for b in blocks])),
                "mean_expand": float(np.mean([b[3] for b in blocks])),
                "depth": int(sum(arch.d)), "r": arch.r, "mmacs": x["mmacs"],
            })  # fmt: skip
        chosen[d.name] = rows
    return {
        "n_predicted": CROSS_DEVICE_SAMPLES,
        "kendall_tau_predicted": tau_pred,
        "kendall_tau_measured": tau_meas,
        "chosen": chosen,
    }


# -- README --------------------------------------------------------------------------------------
def _pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100.0 * value:.{digits}f}"


def _minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60.0:.1f}"


def readme(
    study: Study,
    devices: Sequence[DeviceStep],
    per_device: Mapping[str, Any],
    validation: Mapping[str, str],
    cross: Mapping[str, Any],
    figures: Mapping[str, Any],
) -> str:
    state = study.state
    prov = state.get("provenance", {})
    if study.config.pretrained:
        middle = [_shipped_section(figures), _short_training_section(figures)]
    else:
        middle = [_claims_section(study, devices, figures)]
    parts = [
        f"# Study `{study.config.name}`\n",
        "Written by `ofabench study` from the study's work directory; nothing here is edited by "
        "hand. Accuracy is top-1 on the dataset's official test split"
        + ("" if study.config.compare.test_images is None
           else f" (the supernets' subnets on its first {study.config.compare.test_images} "
                "test images only)")
        + " unless marked *predicted* (the accuracy predictor, trained on validation accuracy).\n",
        _setup_section(study, prov),
        *middle,
        _validation_section(study, devices, validation),
        _shipped_predictor_section(figures) if study.config.pretrained else _predictor_section(study),
        _fronts_section(study, devices, per_device),
        _cross_section(devices, cross),
        _steps_section(study),
    ]
    skipped = state.get("skipped_devices") or {}
    if skipped:
        rows = [[name, reason] for name, reason in skipped.items()]
        parts.append(
            "## Devices not run here\n\n" + markdown_table(["device", "reason"], rows) + "\n"
        )
    return "\n".join(parts)


def _setup_section(study: Study, prov: Mapping[str, Any]) -> str:
    train = study.config.train
    commands = [c["command"] for c in study.state.get("commands", []) if c.get("command")]
    lines = [
        "## Setup\n",
        f"- Study file: `{study.config.source}`; space `{study.space.name}`; dataset "
        f"`{train.get('data', {}).get('name', '?')}`.",
        "- Commands that ran it (in order; later ones resumed): "
        + ", ".join(f"`{c}`" for c in dict.fromkeys(commands)),
        f"- Machine: {cpu_model()}, {prov.get('host', {}).get('cores', '?')} cores; python "
        f"{prov.get('python', '?')}; ofabench {prov.get('ofabench', '?')}; "
        + ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items())
        + ".",
        f"- Total wall time of the steps as this study ran them: {_minutes(total_wall(study))} "
        "min (per step below)." + _before_study(study),
    ]
    lines += [f"- Note: {note}" for note in study.state.get("notes", [])]
    return "\n".join(lines) + "\n"


def _before_study(study: Study) -> str:
    """What ran before the study resumed it and so is missing from the steps' wall times."""
    extra = []
    trained = {}
    for name in (f"train_{s}" for s in study.schedules):
        e = study.state["steps"].get(name, {})
        seconds = (e.get("summary") or {}).get("train_seconds")
        if seconds is not None and seconds > e.get("wall_s", 0.0) + 60.0:
            trained[name] = seconds
    if trained:
        parts = ", ".join(f"{k} {v / 60:.1f} min" for k, v in trained.items())
        how = "side by side, so the longer counts" if study.config.parallel_training else "in turn"
        longest = max(trained.values()) if study.config.parallel_training else sum(trained.values())
        extra.append(
            f"training ran before the study resumed it ({parts} of epochs, {how}: "
            f"{longest / 60:.1f} min)"
        )
        with_training = total_wall(study) + longest
    else:
        with_training = None
    skipped = (study.state["steps"].get("accuracy", {}).get("summary") or {}).get("skipped", 0)
    if skipped and not study.state.get("accuracy_alongside"):
        extra.append(
            f"{skipped} rows of the accuracy dataset were made before it and are not timed here"
        )
    if not extra:
        return ""
    text = " Not included: " + "; ".join(extra) + "."
    if with_training is not None:
        text += f" With the training: {_minutes(with_training)} min."
    return text


def total_wall(study: Study) -> float:
    return sum(e.get("wall_s", 0.0) for e in study.state["steps"].values())


# targets of the reference study (issue 11): measured and reported, not asserted
TARGETS = {"largest": 0.92, "smallest": 0.89, "scratch_gap_points": 1.0, "predictor_tau": 0.8}


def claims(study: Study, devices: Sequence[DeviceStep]) -> dict[str, Any]:
    """Every figure of the claims table as numbers (written as ``claims.json``): per supernet
    its budget and accuracy, PS minus each baseline with its confidence interval, OFA subnets
    against the same archs from scratch, the predictor's quality and the costs."""
    from .steps import NET_LABELS

    compare = study.summary("compare")
    runs = {}
    for net in study.schedules:
        train = study.summary(f"train_{net}")
        runs[net] = {
            "label": NET_LABELS.get(net, net),
            "checkpoint": train["checkpoint"],
            "subnet_passes": train.get("subnet_passes"),
            "teacher_passes": train.get("teacher_passes"),
            "train_seconds": train["train_seconds"],
            "largest_test": compare["largest"][f"{net}_test"],
            "smallest_test": compare["smallest"][f"{net}_test"],
            "random_mean_test": compare["test_mean"][net],
        }
    scratch = study.summary("scratch")["archs"] if study.done("scratch") else []
    gaps = [x["ofa_test"] - x["scratch_test"] for x in scratch if x.get("ofa_test") is not None]
    predictor = study.summary("predictor")
    searches = [sum(study.summary(f"search_{d.name}")["timing_s"].values()) for d in devices]
    return {
        "study": study.config.name,
        "n_random_subnets": compare["n"],
        "runs": runs,
        "ps_minus_baseline": compare["paired"],
        "scratch": [
            {k: x.get(k) for k in ("arch", "device", "budget", "ofa_test", "scratch_test",
                                   "train_seconds", "subnet_passes")}
            for x in scratch
        ],  # fmt: skip
        "ofa_minus_scratch_mean": float(np.mean(gaps)) if gaps else None,
        "predictor": {k: predictor.get(k) for k in ("rmse_pct", "kendall_tau", "spearman_rho",
                                                     "n_train", "n_val", "cv")},  # fmt: skip
        "cost_seconds": {
            "train_ps": runs["ps"]["train_seconds"],
            "accuracy": _wall(study, "accuracy"),
            "predictor": _wall(study, "predictor"),
            "search_per_device": float(np.mean(searches)) if searches else None,
            "scratch_per_arch": float(np.mean([x["train_seconds"] for x in scratch]))
            if scratch else None,
        },  # fmt: skip
        "targets": TARGETS,
    }


def pretrained_claims(study: Study) -> dict[str, Any]:
    """A pretrained study's figures (written as ``claims.json``): the shipped model's, as its
    own study measured them, apart from this run's short trainings."""
    shipped = study.summary("pretrained")
    runs = {}
    for net in study.schedules:
        train = study.summary(f"train_{net}")
        runs[net] = {k: train.get(k) for k in ("subnet_passes", "teacher_passes", "train_seconds",
                                                "epochs", "val_acc_max", "val_acc_min")}  # fmt: skip
    return {
        "study": study.config.name,
        "pretrained": {k: shipped.get(k) for k in ("name", "space", "dataset", "figures",
                                                   "claims", "made_by")},  # fmt: skip
        "short_training": runs,
        "short_training_data": study.config.train.get("data"),
    }


def _shipped_section(figures: Mapping[str, Any]) -> str:
    shipped = figures["pretrained"]
    made = shipped.get("made_by") or {}
    lines = [
        "## The shipped supernet (figures from its own study, not measured by this run)\n",
        f"This run starts from the shipped model `{shipped['name']}` (space `{shipped['space']}`, "
        f"dataset `{shipped['dataset']}`), made by `{made.get('study', '?')}` at commit "
        f"`{str(made.get('git_commit') or '?')[:10]}`. Its search, the measured test accuracy of "
        "the searched subnets and the latency tables below are this run's; the figures in this "
        "section are copied from the shipped model's manifest, which its study wrote.\n",
    ]
    claims_ = shipped.get("claims") or {}
    rows = []
    for net, run in (claims_.get("runs") or {}).items():
        rows.append([run.get("label", net), _passes(run.get("subnet_passes")),
                     _pct(run.get("largest_test")), _pct(run.get("smallest_test")),
                     _pct(run.get("random_mean_test"))])  # fmt: skip
    if rows:
        lines.append(markdown_table(
            ["supernet", "subnet passes", "largest top-1 %", "smallest top-1 %",
             f"mean of {claims_.get('n_random_subnets', '?')} random subnets %"], rows,
        ) + "\n")  # fmt: skip
    for net, d in (claims_.get("ps_minus_baseline") or {}).items():
        label = (claims_.get("runs") or {}).get(net, {}).get("label", net)
        lines.append(
            f"- PS − {label} (same subnet passes, same subnets): {_signed(d['mean'])} points, "
            f"{100 * d['level']:g}% CI [{_signed(d['ci_low'])}, {_signed(d['ci_high'])}]: "
            f"{_ci_verdict(d['ci_low'], d['ci_high'])}."
        )
    gap = claims_.get("ofa_minus_scratch_mean")
    if gap is not None:
        lines.append(f"- OFA subnets − the same archs trained from scratch: {_signed(gap)} points.")
    if not claims_:
        figs = shipped.get("figures") or {}
        lines.append("Shipped figures: " + ", ".join(f"{k} {v:.4g}" for k, v in figs.items()) + ".")
    return "\n".join(lines) + "\n"


def _short_training_section(figures: Mapping[str, Any]) -> str:
    runs = figures["short_training"]
    data = figures.get("short_training_data") or {}
    rows = [[NET_NAMES.get(net, net), _passes(r["subnet_passes"]), _passes(r["teacher_passes"]),
             _minutes(r["train_seconds"]), _pct(r["val_acc_max"]), _pct(r["val_acc_min"])]
            for net, r in runs.items()]  # fmt: skip
    return (
        "## This run's short trainings (the trainer at work, not a comparison)\n\n"
        f"Each strategy trained for a few steps on {data.get('max_train_images', 'all')} images "
        f"of `{data.get('name', '?')}`, to show the trainer working on this machine; far too "
        "short to compare strategies (the shipped model's study above does that at full "
        "budget).\n\n"
        + markdown_table(["strategy", "subnet passes", "teacher passes", "minutes",
                          "val largest %", "val smallest %"], rows)  # fmt: skip
        + "\n"
    )


def _shipped_predictor_section(figures: Mapping[str, Any]) -> str:
    shipped = figures["pretrained"]
    p = (shipped.get("claims") or {}).get("predictor") or {}
    figs = shipped.get("figures") or {}
    tau = p.get("kendall_tau", figs.get("predictor_kendall_tau"))
    rmse = p.get("rmse_pct", figs.get("predictor_rmse_pct"))
    cv = p.get("cv") or {}
    text = (
        "## Accuracy predictor (shipped)\n\n"
        f"The shipped model's predictor (fitted by its study on its accuracy dataset): held-out "
        f"RMSE {'–' if rmse is None else f'{rmse:.3f}'} points, Kendall tau "
        f"{'–' if tau is None else f'{tau:.3f}'}"
    )
    if cv.get("kendall_tau_mean") is not None:
        text += (
            f"; over {cv.get('splits')} random splits tau {cv['kendall_tau_mean']:.3f} (range "
            f"{cv['kendall_tau_min']:.3f}–{cv['kendall_tau_max']:.3f})"
        )
    return text + ".\n"


NET_NAMES = {"ps": "progressive shrinking", "no_ps": "no PS (all subnets at once)",
             "sandwich": "sandwich + in-place KD"}  # fmt: skip


def _ci_verdict(ci_low: float, ci_high: float) -> str:
    if ci_low > 0:
        return "held"
    if ci_high < 0:
        return "did not hold"
    return "inconclusive (the interval spans 0)"


def _passes(value: int | None) -> str:
    return "–" if value is None else f"{value / 1e6:.3f}M"


def _claims_section(study: Study, devices: Sequence[DeviceStep], data: Mapping[str, Any]) -> str:
    runs, paired = data["runs"], data["ps_minus_baseline"]
    ps = runs["ps"]
    rows = []
    for net, d in paired.items():
        level = f"{100 * d['level']:g}%"
        rows.append([
            f"Progressive shrinking beats {runs[net]['label']} at the same compute, on the same "
            "subnets (seed: +4% top-1 over no PS on ImageNet)",
            f"PS − {runs[net]['label']} on {d['n_subnets']} random subnets: mean "
            f"{_signed(d['mean'])} points, {level} CI [{_signed(d['ci_low'])}, "
            f"{_signed(d['ci_high'])}] (bootstrap over subnets and {d['n_images']} test images); "
            f"PS better on {d['wins']}/{d['n_subnets']}; budgets: PS {_passes(ps['subnet_passes'])} "
            f"subnet passes (+{_passes(ps['teacher_passes'])} teacher passes), "
            f"{runs[net]['label']} {_passes(runs[net]['subnet_passes'])}",
            _ci_verdict(d["ci_low"], d["ci_high"]),
        ])  # fmt: skip
    rows.append([
        f"Largest / smallest subnet of the PS supernet (targets ≥ {100 * TARGETS['largest']:g}% / "
        f"≥ {100 * TARGETS['smallest']:g}%)",
        f"largest {_pct(ps['largest_test'])}%, smallest {_pct(ps['smallest_test'])}% ("
        + "; ".join(f"{r['label']}: {_pct(r['largest_test'])}% / {_pct(r['smallest_test'])}%"
                    for n, r in runs.items() if n != "ps") + ")",
        _verdict(ps["largest_test"] >= TARGETS["largest"] and ps["smallest_test"] >= TARGETS["smallest"]),
    ])  # fmt: skip
    scratch = data["scratch"]
    if scratch:
        gap = data["ofa_minus_scratch_mean"]
        rows.append([
            "OFA subnets without retraining match the same architectures trained from scratch "
            f"(target: within {TARGETS['scratch_gap_points']:g} point)",
            "; ".join(
                f"{_pct(x['ofa_test'])}% vs {_pct(x['scratch_test'])}% (≤ {x['budget']:g} ms on "
                f"{x['device']}" + (f"; scratch {_passes(x['subnet_passes'])} passes"
                                     if x.get("subnet_passes") else "") + ")"
                for x in scratch
            ) + f"; mean OFA − scratch {_signed(gap)} points; each from-scratch arch trained "
            "with the full network's schedule (the PS schedule's first stage)",
            _verdict(gap is not None and 100 * gap >= -TARGETS["scratch_gap_points"]),
        ])  # fmt: skip
    cost = data["cost_seconds"]
    rows.append([
        "Search is cheap next to training (paper: 40 GPU-hours of accuracy sampling + "
        "1200 GPU-hours of training, once; minutes per device after)",
        f"PS training {_minutes(cost['train_ps'])} CPU-min (once); accuracy dataset "
        f"{_minutes(cost['accuracy'])} min (once{_outside(study)}); predictor "
        f"{_minutes(cost['predictor'])} min (once); one device's sweep of "
        f"{study.config.search.budgets} budgets (OFA + baselines) "
        f"{cost['search_per_device'] or 0:.1f} s; training one architecture from scratch "
        f"{_minutes(cost['scratch_per_arch'])} min",
        "measured",
    ])  # fmt: skip
    p = data["predictor"]
    cv = p.get("cv") or {}
    tau = cv.get("kendall_tau_mean", p["kendall_tau"])
    rows.append([
        f"The accuracy predictor is accurate (paper: 0.21% RMSE on ImageNet, 16K samples; target "
        f"Kendall tau ≥ {TARGETS['predictor_tau']:g})",
        f"RMSE {p['rmse_pct']:.3f} points, Kendall tau {p['kendall_tau']:.3f} on "
        f"{p['n_val']} held-out subnets ({p['n_train']} trained on)"
        + (f"; over {cv['splits']} random splits tau {cv['kendall_tau_mean']:.3f} "
           f"({cv['kendall_tau_min']:.3f}–{cv['kendall_tau_max']:.3f})" if cv else ""),
        _verdict(tau >= TARGETS["predictor_tau"], f"tau ≥ {TARGETS['predictor_tau']:g}"),
    ])  # fmt: skip
    text = "## The seed's claims, as measured here\n\n"
    text += markdown_table(["claim", "measured here", "verdict"], rows) + "\n\n"
    text += "### Each supernet's budget beside its accuracy\n\n"
    text += markdown_table(
        ["supernet", "subnet passes", "teacher passes", "training min", "largest %",
         "smallest %", f"mean of {data['n_random_subnets']} random %"],
        [[r["label"], _passes(r["subnet_passes"]), _passes(r["teacher_passes"]),
          _minutes(r["train_seconds"]), _pct(r["largest_test"]), _pct(r["smallest_test"]),
          _pct(r["random_mean_test"])] for r in runs.values()],
    )  # fmt: skip
    text += (
        "\n\nA subnet pass is one image through one subnet, forward and backward; teacher passes "
        "are forward only. The subnets compared are in `compare_subnets.csv`; every figure of "
        "this table is in `claims.json`.\n"
    )
    return text


def _outside(study: Study) -> str:
    skipped = study.summary("accuracy").get("skipped", 0)
    if skipped and study.state.get("accuracy_alongside"):
        return f"; {skipped} rows sampled alongside the baselines' training (in its wall time)"
    return f"; {skipped} rows made before the study, not timed here" if skipped else ""


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{100.0 * value:+.2f}"


def _verdict(held: bool, what: str = "") -> str:
    word = "held" if held else "did not hold"
    return f"{word} ({what})" if what else word


def _wall(study: Study, step: str) -> float | None:
    return study.state["steps"].get(step, {}).get("wall_s")


def _validation_section(
    study: Study, devices: Sequence[DeviceStep], plots: Mapping[str, str]
) -> str:
    rows = []
    for d in devices:
        prof = study.summary(f"profile_{d.name}")
        val = study.summary(f"validate_{d.name}")
        for kind, m in val["metrics"].items():
            rows.append([
                d.name, kind, val["n"], f"{m['mape']:.1f}", _pct(m["within_5"], 0),
                _pct(m["within_10"], 0), f"{m['kendall_tau']:.3f}",
                _minutes(_wall(study, f"profile_{d.name}")), prof["n_entries"],
                f"{_noise_cv(prof)} / {_noise_cv(val)}",
            ])  # fmt: skip
    text = "## Latency tables and their validation\n\n"
    text += (
        "Each device's table holds every block of the space at every resolution; the validation "
        "measures random subnets end to end (other subnets than the calibration's) and compares "
        "them with the table's sum (`plain`) and with the table's calibrated model. *Noise*: how "
        "one measurement of a subnet repeated on the device just before profiling / just after "
        "validating (`ofabench noise`, within-session CV): no table can predict more closely "
        "than that.\n\n"
    )
    text += markdown_table(
        ["device", "prediction", "n", "MAPE %", "within ±5% (%)", "within ±10% (%)",
         "Kendall tau", "profile min", "table entries", "noise CV % (profile / validate)"],
        rows,
    )  # fmt: skip
    text += "\n\n" + "\n".join(f"![{k}]({v})" for k, v in plots.items()) + "\n"
    return text


def _noise_cv(summary: Mapping[str, Any]) -> str:
    noise = summary.get("noise")
    return "–" if not noise else f"{100 * noise['within_session_cv']:.1f}"


def _accuracy_origin(study: Study, a: Mapping[str, Any]) -> str:
    """Who evaluated the accuracy dataset's rows."""
    if a["skipped"] and study.state.get("accuracy_alongside"):
        return (
            f"{a['evaluated']} evaluated by the step, {a['skipped']} by `ofabench sample-accuracy` "
            "with the same checkpoint and settings, run beside the baselines' training once PS "
            "had finished (its time is in the training step's)"
        )
    return (
        f"{a['evaluated']} evaluated by this study, {a['skipped']} found already in the file, "
        "made by an earlier `ofabench sample-accuracy` of the same checkpoint and settings"
    )


def _predictor_section(study: Study) -> str:
    p = study.summary("predictor")
    a = study.summary("accuracy")
    return (
        "## Accuracy predictor\n\n"
        f"{a['rows']} random subnets of the PS supernet, each BN-recalibrated and evaluated on "
        f"the validation split (`accuracy` step, {_minutes(_wall(study, 'accuracy'))} min; "
        + _accuracy_origin(study, a) + "); MLP "
        f"fitted on {p['n_train']}, held out {p['n_val']}: RMSE **{p['rmse_pct']:.3f}** points, "
        f"Kendall tau **{p['kendall_tau']:.3f}**, Spearman rho {p['spearman_rho']:.3f}.\n"
    )


def _fronts_section(
    study: Study, devices: Sequence[DeviceStep], per_device: Mapping[str, Any]
) -> str:
    text = "## Accuracy–latency fronts per device\n\n"
    text += (
        "Budgets are spread evenly between the "
        f"{100 * study.config.search.low_quantile:g}% quantile of random subnets' latency and the largest subnet's latency in each "
        "device's table. *Predicted* series: OFA's evolutionary search, random search with as "
        "many evaluations, uniform scaling. *Measured* series: the subnets OFA's search chose, "
        + ("evaluated on the shipped PS supernet (no retraining, BN recalibrated).\n\n"
           if study.config.pretrained else
           "evaluated on the PS supernet and on each baseline supernet (no retraining), and the "
           "archs trained from scratch.\n\n")
    )  # fmt: skip
    for d in devices:
        doc = per_device[d.name]["document"]
        text += f"### {d.name}\n\n"
        text += f"![{d.name}]({d.name}/accuracy_latency.png)\n\n"
        header = ["method"] + [f"≤ {b:g} ms" for b in doc["budgets"]]
        rows = [
            [m] + [_pct(v, 2) for v in per.values()] for m, per in doc["best_at_budget"].items()
        ]
        text += markdown_table(header, rows) + "\n\n"
        hv = doc["summary"]["latency_ms"]["hypervolume"]
        text += "Hypervolume: " + ", ".join(f"{m} {v:,.2f}" for m, v in hv.items())
        text += f" (details: [{d.name}/summary.md]({d.name}/summary.md))\n\n"
    return text


def _cross_section(devices: Sequence[DeviceStep], cross: Mapping[str, Any]) -> str:
    names = [d.name for d in devices]
    text = "## Cross-device view\n\n"
    if len(names) > 1:
        text += (
            f"Kendall tau of latency rankings between devices: above the diagonal the tables' "
            f"predictions for {cross['n_predicted']} random subnets, below it the measured "
            "end-to-end latency of the validation subnets both devices measured.\n\n"
        )
        rows = []
        for i, a in enumerate(names):
            row = [a]
            for j, b in enumerate(names):
                if i == j:
                    row.append("1")
                elif i < j:
                    row.append(f"{cross['kendall_tau_predicted'][f'{a}|{b}']:.3f}")
                else:
                    m = cross["kendall_tau_measured"][f"{b}|{a}"]
                    row.append(f"{m['tau']:.3f} (n={m['n']})")
            rows.append(row)
        text += markdown_table(["", *names], rows) + "\n\n"
    text += (
        "What each device's search chose at the same relative budgets (1 = smallest budget):\n\n"
    )
    rows = []
    for name in names:
        for i, x in enumerate(cross["chosen"][name]):
            rows.append([
                name, i + 1, f"{x['budget_ms']:g}", f"{x['mean_kernel']:.2f}", f"{x['mean_expand']:.2f}",
                x["depth"], x["r"], f"{x['mmacs']:.1f}", _pct(x["predicted"]),
            ])  # fmt: skip
    text += markdown_table(
        ["device", "budget #", "budget ms", "mean kernel", "mean expand", "blocks", "resolution",
         "MMACs", "predicted %"],
        rows,
    )  # fmt: skip
    return text + "\n"


def _steps_section(study: Study) -> str:
    rows = []
    for name, e in study.state["steps"].items():
        note = ""
        trained = (e.get("summary") or {}).get("train_seconds")
        if trained is not None and trained > e.get("wall_s", 0.0):
            note = (
                f"training epochs took {trained / 60:.1f} min, partly before this study resumed it"
            )
        skipped = (e.get("summary") or {}).get("skipped", 0) if name == "accuracy" else 0
        if skipped and study.state.get("accuracy_alongside"):
            note = f"{skipped} rows sampled beside the baselines' training (timed there)"
        elif skipped:
            note = f"{skipped} rows made before this study resumed it (not timed here)"
        if name == "report" and e.get("status") == "running":
            note = "this report, being written"
        rows.append([name, e.get("status"), _minutes(e.get("wall_s")), e.get("attempts", 1),
                     e.get("finished", ""), note])  # fmt: skip
    return (
        "## Wall time per step\n\n"
        "Wall time of each step as `ofabench study` ran it (summed over resumed attempts; a "
        "training step counts its processes' whole run).\n\n"
        + markdown_table(["step", "status", "minutes", "attempts", "finished", "note"], rows)
        + "\n"
    )

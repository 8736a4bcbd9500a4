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
    from ..report import write_report
    from ..search.sweep import pareto_sweep
    from .steps import problem_for, study_externals

    out = Path(study.config.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = study.config.search
    per_device = {}
    for d in devices:
        search = study.summary(f"search_{d.name}")
        problem = problem_for(study, d.name)
        document = pareto_sweep(
            problem, "latency_ms", search["budgets"], None, s.population, s.generations, s.seed,
            list(s.baselines), None, study_externals(study, d.name),
        )  # fmt: skip
        files = write_report(document, f"{study.config.name} on {d.name}", out / d.name,
                             study.command)  # fmt: skip
        per_device[d.name] = {"document": document, "files": {k: str(v) for k, v in files.items()}}
    validation = _copy_validation_plots(study, devices, out)
    cross = cross_device(study, devices)
    text = readme(study, devices, per_device, validation, cross)
    with atomic_open(out / "README.md") as handle:
        handle.write(text)
    write_json(out / "cross_device.json", cross)
    _copy(study.work / "compare" / "random_subnets.csv", out / "ps_vs_no_ps_subnets.csv")
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
) -> str:
    state = study.state
    prov = state.get("provenance", {})
    parts = [
        f"# Study `{study.config.name}`\n",
        "Written by `ofabench study` from the study's work directory; nothing here is edited by "
        "hand. Accuracy is top-1 on the dataset's official test split unless marked *predicted* "
        "(the accuracy predictor, trained on validation accuracy).\n",
        _setup_section(study, prov),
        _claims_section(study, devices),
        _validation_section(study, devices, validation),
        _predictor_section(study),
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
    return "\n".join(lines) + "\n"


def _before_study(study: Study) -> str:
    """What ran before the study resumed it and so is missing from the steps' wall times."""
    extra = []
    trained = {}
    for name in ("train_ps", "train_no_ps"):
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
    if skipped:
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


def _claims_section(study: Study, devices: Sequence[DeviceStep]) -> str:
    compare = study.summary("compare")
    scratch = study.summary("scratch")["archs"]
    predictor = study.summary("predictor")
    ps_train = study.summary("train_ps")
    no_ps_train = study.summary("train_no_ps")
    search_s = sum(
        sum(study.summary(f"search_{d.name}")["timing_s"].values()) for d in devices
    ) / max(1, len(devices))
    largest, smallest = compare["largest"], compare["smallest"]
    rows = [
        [
            "Progressive shrinking beats training every elastic dimension at once (no PS) on "
            "the same subnets (seed: +4% top-1 on ImageNet)",
            f"PS − no-PS on {compare['n']} random subnets: mean {_signed(compare['diff_test_mean'])} "
            f"points (min {_signed(compare['diff_test_min'])}, max {_signed(compare['diff_test_max'])}); "
            f"PS better on {compare['ps_wins']}/{compare['n']}",
            _verdict(compare["diff_test_mean"] > 0),
        ],
        [
            "Largest / smallest subnet accuracy (PS supernet)",
            f"largest {_pct(largest['ps_test'])}%, smallest {_pct(smallest['ps_test'])}% "
            f"(no PS: {_pct(largest['no_ps_test'])}% / {_pct(smallest['no_ps_test'])}%)",
            "measured",
        ],
    ]
    if scratch:
        gaps = [x["ofa_test"] - x["scratch_test"] for x in scratch if x["ofa_test"] is not None]
        rows.append([
            "OFA subnets without retraining match the same architectures trained from scratch",
            "; ".join(
                f"{_pct(x['ofa_test'])}% vs {_pct(x['scratch_test'])}% (≤ {x['budget']:g} ms on "
                f"{x['device']})" for x in scratch
            ) + f"; mean OFA − scratch {_signed(float(np.mean(gaps)) if gaps else None)} points",
            _verdict(bool(gaps) and float(np.mean(gaps)) >= 0),
        ])  # fmt: skip
        scratch_min = sum(x["train_seconds"] for x in scratch) / len(scratch) / 60.0
    else:
        scratch_min = None
    train_min = (ps_train["train_seconds"]) / 60.0
    rows.append([
        "Search is cheap next to training (paper: 40 GPU-hours of accuracy sampling + "
        "1200 GPU-hours of training, once; minutes per device after)",
        f"PS training {train_min:.1f} CPU-min (once); accuracy dataset "
        f"{_minutes(_wall(study, 'accuracy'))} min (once{_outside(study)}); predictor {_minutes(_wall(study, 'predictor'))} "
        f"min (once); one device's sweep of {study.config.search.budgets} budgets (OFA + baselines) "
        f"{search_s:.1f} s; training one architecture from scratch "
        f"{'–' if scratch_min is None else f'{scratch_min:.1f}'} min",
        "measured",
    ])  # fmt: skip
    rows.append([
        "The accuracy predictor is accurate (paper: 0.21% RMSE on ImageNet, 16K samples)",
        f"RMSE {predictor['rmse_pct']:.3f} points, Kendall tau {predictor['kendall_tau']:.3f}, "
        f"Spearman {predictor['spearman_rho']:.3f} on {predictor['n_val']} held-out subnets "
        f"({predictor['n_train']} trained on)",
        _verdict(predictor["kendall_tau"] >= 0.8, "tau ≥ 0.8"),
    ])  # fmt: skip
    text = "## The seed's claims, as measured here\n\n"
    text += markdown_table(["claim", "measured here", "verdict"], rows) + "\n\n"
    text += (
        f"Training: PS {ps_train['train_seconds'] / 60:.1f} min, no-PS "
        f"{no_ps_train['train_seconds'] / 60:.1f} min of training steps (epoch time from the "
        "trainers' metrics). The subnets compared are in `ps_vs_no_ps_subnets.csv`.\n"
    )
    return text


def _outside(study: Study) -> str:
    skipped = study.summary("accuracy").get("skipped", 0)
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
            ])  # fmt: skip
    text = "## Latency tables and their validation\n\n"
    text += (
        "Each device's table holds every block of the space at every resolution; the validation "
        "measures random subnets end to end (other subnets than the calibration's) and compares "
        "them with the table's sum (`plain`) and with the table's calibrated model.\n\n"
    )
    text += markdown_table(
        ["device", "prediction", "n", "MAPE %", "within ±5% (%)", "within ±10% (%)",
         "Kendall tau", "profile min", "table entries"],
        rows,
    )  # fmt: skip
    text += "\n\n" + "\n".join(f"![{k}]({v})" for k, v in plots.items()) + "\n"
    return text


def _predictor_section(study: Study) -> str:
    p = study.summary("predictor")
    a = study.summary("accuracy")
    return (
        "## Accuracy predictor\n\n"
        f"{a['rows']} random subnets of the PS supernet, each BN-recalibrated and evaluated on "
        f"the validation split (`accuracy` step, {_minutes(_wall(study, 'accuracy'))} min; "
        f"{a['evaluated']} evaluated by this study, {a['skipped']} found already in the file, "
        "made by an earlier `ofabench sample-accuracy` of the same checkpoint and settings); MLP "
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
        "evaluated on the PS supernet and on the no-PS supernet (no retraining), and the archs "
        "trained from scratch.\n\n"
    )
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
        if skipped:
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

"""The steps of a study (see :mod:`ofabench.study.runner`). Each takes the :class:`Study`, does
its work into the study's ``work_dir`` (resuming what an interrupted attempt left) and returns a
JSON-ready summary that the runner stores in ``study.json``."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import StudyError
from ..provenance import atomic_open
from ..space import ArchBatch, ArchConfig
from .config import DeviceStep

if TYPE_CHECKING:
    from .runner import Study

SEARCH_METHOD_MEASURED = "OFA subnet (measured)"
NO_PS_MEASURED = "no-PS supernet (measured)"
SCRATCH_METHOD = "from scratch (measured)"
EXTERNAL_FIELDS = (
    "method", "accuracy", "source", "latency_ms", "mmacs", "mparams", "device", "accuracy_kind",
    "model", "arch", "notes",
)  # fmt: skip
VALIDATION_SEED = 1000  # validation subnets differ from the calibration ones (seed 0)


# -- training ----------------------------------------------------------------------------------
def final_checkpoint(study: Study, schedule: str, arch: dict[str, Any] | None = None,
                     out: Path | None = None) -> Path:  # fmt: skip
    from ..training.trainer import Trainer

    config = study.train_config(schedule, arch)
    trainer = Trainer(config, out or study.train_dir(schedule))
    return trainer.stage_path(config.stage_names()[-1])


def train(study: Study, schedule: str) -> dict[str, Any]:
    """Train the PS supernet or the no-PS baseline (both at once with ``parallel_training``)."""
    schedules = [schedule]
    if study.config.parallel_training and schedule == "ps" and not study.done("train_no_ps"):
        schedules.append("no_ps")
    pending = [s for s in schedules if not final_checkpoint(study, s).exists()]
    if pending and study.config.parallel_training:
        config_file = study.train_config_file()
        jobs = [
            (f"train_{s}", ["train", "--config", str(config_file), "--schedule", s, "--out",
                            str(study.train_dir(s)), "--resume", "--threads",
                            str(study.config.train_threads), "--no-progress"])
            for s in pending
        ]  # fmt: skip
        study.run_processes(jobs)
    elif pending:
        from ..training.trainer import Trainer

        Trainer(
            study.train_config(schedule), study.train_dir(schedule), progress=study.progress
        ).run(resume=True)
    return training_summary(study.train_dir(schedule), final_checkpoint(study, schedule))


def training_summary(out: Path, checkpoint: Path) -> dict[str, Any]:
    """The checkpoint, the training time and the last validation figures of a run's metrics."""
    if not checkpoint.exists():
        raise StudyError(f"training finished without its final checkpoint {checkpoint}")
    rows = _read_csv(out / "metrics.csv")
    seconds = sum(float(r["seconds"]) for r in rows if r.get("seconds"))
    last = rows[-1] if rows else {}
    return {
        "checkpoint": str(checkpoint),
        "train_seconds": seconds,
        "epochs": len(rows),
        "val_acc_max": _float(last.get("val_acc_max")),
        "val_acc_min": _float(last.get("val_acc_min")),
    }


# -- latency -----------------------------------------------------------------------------------
def _settings(device: DeviceStep) -> Any:
    from ..devices.base import MeasureSettings

    return MeasureSettings(
        warmup=device.warmup, repeats=device.repeats, max_rounds=device.max_rounds
    )


def profile(study: Study, device: DeviceStep) -> dict[str, Any]:
    from ..latency.profiler import profile_device

    result = profile_device(
        device.name,
        study.space,
        None,
        study.table_path(device.name),
        _settings(device),
        device.fit_resolutions,
        progress=study.progress_bar(f"profile {device.name}", "op"),
        calibrate=device.calibrate,
    )
    return result.to_dict()


def validate(study: Study, device: DeviceStep) -> dict[str, Any]:
    from ..latency.validate import validate_device

    result = validate_device(
        device.name,
        study.space,
        study.table_path(device.name),
        n=device.validate_n,
        seed=VALIDATION_SEED,
        out_dir=study.validate_dir(device.name),
        settings=_settings(device),
        passes=device.validate_passes,
        progress=study.progress_bar(f"validate {device.name}", "subnet"),
    )
    return result.to_dict()


# -- accuracy dataset and predictor ------------------------------------------------------------
def _supernet(study: Study, schedule: str) -> Any:
    from ..supernet.checkpoint import load_supernet

    return load_supernet(study.summary(f"train_{schedule}")["checkpoint"], study.space)


def accuracy(study: Study) -> dict[str, Any]:
    from ..predictor.dataset import Settings, sample_accuracy_dataset

    a = study.config.accuracy
    report = sample_accuracy_dataset(
        _supernet(study, "ps"),
        study.dataset(),
        a.n,
        study.accuracy_csv,
        Settings(a.seed, a.recal_images, a.val_images, a.batch_size),
        checkpoint=study.summary("train_ps")["checkpoint"],
        progress=study.progress_bar("accuracy dataset", "subnet"),
    )
    return report.to_dict()


def predictor(study: Study) -> dict[str, Any]:
    from ..predictor.mlp import fit_from_file

    p = study.config.predictor
    report = fit_from_file(
        study.accuracy_csv, study.space, study.predictor_path, epochs=p.epochs,
        val_fraction=p.val_fraction, seed=p.seed, hidden_size=p.hidden,
    )  # fmt: skip
    return {"path": str(study.predictor_path), **report.to_dict()}


# -- search ------------------------------------------------------------------------------------
def problem_for(study: Study, device: str) -> Any:
    from ..search.problem import load_problem

    return load_problem(
        study.space, study.predictor_path, device=device, latency_table=study.table_path(device)
    )


def latency_budgets(study: Study, problem: Any) -> list[float]:
    """``search.budgets`` budgets spread between the ``low_quantile`` of the predicted latency
    of 2000 random subnets and the largest predicted latency (max and uniform subnets too)."""
    from ..baselines.uniform import uniform_archs

    s = study.config.search
    space = problem.space
    rng = np.random.default_rng(s.seed)
    randoms = problem.latency_model.predict_batch(
        ArchBatch.from_archs([space.sample(rng) for _ in range(2000)])
    )
    others = problem.latency_model.predict_batch(
        ArchBatch.from_archs([space.max_arch(), *uniform_archs(space)])
    )
    lo = float(np.quantile(randoms, s.low_quantile))
    hi = float(max(np.max(randoms), np.max(others)))
    if s.budgets == 1:
        return [_round(hi)]
    return [_round(v) for v in np.linspace(lo, hi, s.budgets)]


def _round(value: float) -> float:
    digits = 3 - int(math.floor(math.log10(abs(value)))) if value else 3
    return round(value, max(digits, 0))


def search(study: Study, device: DeviceStep) -> dict[str, Any]:
    from ..provenance import write_json
    from ..search.sweep import pareto_sweep

    s = study.config.search
    problem = problem_for(study, device.name)
    budgets = latency_budgets(study, problem)
    document = pareto_sweep(
        problem, "latency_ms", budgets, None, s.population, s.generations, s.seed,
        list(s.baselines),
    )  # fmt: skip
    path = study.search_path(device.name)
    write_json(path, document)
    chosen = [
        {"budget": p["budget"], "predicted": p["accuracy"], "latency_ms": p["latency_ms"],
         "mmacs": p["mmacs"], "arch": p["arch"]}
        for p in document["points"]
        if p["kind"] == "search" and p["method"] == searched_method(document)
    ]  # fmt: skip
    return {
        "path": str(path),
        "budgets": budgets,
        "chosen": chosen,
        "best_at_budget": document["best_at_budget"],
        "timing_s": document["timing_s"],
    }


def searched_method(document: dict[str, Any]) -> str:
    from ..search.sweep import SEARCH_METHOD

    return SEARCH_METHOD


# -- measured comparisons ------------------------------------------------------------------------
class _Evaluations:
    """Accuracy of subnets of the PS and no-PS supernets after BN recalibration, cached in
    ``work_dir/compare/evaluations.jsonl`` (one line per evaluation, so a kill loses at most
    one)."""

    def __init__(self, study: Study) -> None:
        from ..training.evaluate import SubnetEvaluator

        c = study.config.compare
        self.path = study.work / "compare" / "evaluations.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.cache: dict[tuple[str, str], dict[str, float]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                self.cache[(row["net"], row["arch"])] = row["acc"]
        dataset = study.dataset()
        self.evaluators = {
            net: SubnetEvaluator(_supernet(study, net), dataset, ("test",),
                                 c.recal_images, None, c.batch_size)
            for net in ("ps", "no_ps")
        }  # fmt: skip

    def __call__(self, net: str, arch: ArchConfig) -> dict[str, float]:
        key = (net, arch.to_json())
        if key not in self.cache:
            acc = self.evaluators[net](arch)
            with self.path.open("a") as handle:
                handle.write(json.dumps({"net": net, "arch": key[1], "acc": acc}) + "\n")
            self.cache[key] = acc
        return self.cache[key]


def _evaluate_all(study: Study, archs: Sequence[ArchConfig], what: str) -> _Evaluations:
    evaluate = _Evaluations(study)
    bar = study.progress_bar(what, "subnet")
    for i, arch in enumerate(archs):
        for net in ("ps", "no_ps"):
            evaluate(net, arch)
        if bar is not None:
            bar(i + 1, len(archs))
    return evaluate


def compare(study: Study) -> dict[str, Any]:
    """PS vs no-PS on the same random subnets and on the largest and smallest subnets."""
    space = study.space
    c = study.config.compare
    rng = np.random.default_rng(c.seed)
    randoms = [space.sample(rng) for _ in range(c.n)]
    extremes = [space.max_arch(), space.min_arch()]
    evaluate = _evaluate_all(study, randoms + extremes, "PS / no-PS subnets")
    rows = [{"index": i, "arch": a.to_json(), **_pair(evaluate, a)} for i, a in enumerate(randoms)]
    _write_csv(study.work / "compare" / "random_subnets.csv", rows)
    diff = np.array([r["ps_test"] - r["no_ps_test"] for r in rows])
    return {
        "random_subnets": str(study.work / "compare" / "random_subnets.csv"),
        "n": len(rows),
        "ps_test_mean": float(np.mean([r["ps_test"] for r in rows])),
        "no_ps_test_mean": float(np.mean([r["no_ps_test"] for r in rows])),
        "diff_test_mean": float(diff.mean()),
        "diff_test_min": float(diff.min()),
        "diff_test_max": float(diff.max()),
        "ps_wins": int((diff > 0).sum()),
        "largest": {"arch": extremes[0].to_dict(), **_pair(evaluate, extremes[0])},
        "smallest": {"arch": extremes[1].to_dict(), **_pair(evaluate, extremes[1])},
    }


def measure_searched(study: Study, devices: Sequence[DeviceStep]) -> dict[str, Any]:
    """Every architecture the searches chose, measured on the PS supernet (OFA's subnet, no
    retraining) and on the no-PS supernet: the report's measured points."""
    searched = {d.name: study.summary(f"search_{d.name}")["chosen"] for d in devices}
    archs = [ArchConfig.from_dict(x["arch"]) for rows in searched.values() for x in rows]
    evaluate = _evaluate_all(study, archs, "searched subnets")
    for device, chosen in searched.items():
        _write_external(study, device, chosen, evaluate)
    return {
        device: [{**x, **_pair(evaluate, ArchConfig.from_dict(x["arch"]))} for x in chosen]
        for device, chosen in searched.items()
    }


def _pair(evaluate: _Evaluations, arch: ArchConfig) -> dict[str, float]:
    ps, no_ps = evaluate("ps", arch), evaluate("no_ps", arch)
    return {"ps_test": ps["test_acc"], "no_ps_test": no_ps["test_acc"]}


def _write_external(
    study: Study, device: str, chosen: Sequence[dict[str, Any]], evaluate: _Evaluations
) -> None:
    rows = []
    for x in chosen:
        arch = ArchConfig.from_dict(x["arch"])
        pair = _pair(evaluate, arch)
        common = {
            "latency_ms": x["latency_ms"], "mmacs": x["mmacs"], "device": device,
            "accuracy_kind": "measured", "arch": arch.to_json(),
        }  # fmt: skip
        rows.append({
            **common, "method": SEARCH_METHOD_MEASURED, "accuracy": pair["ps_test"],
            "source": "PS supernet, BN recalibrated, test split",
            "model": f"search <= {x['budget']:g} ms",
        })  # fmt: skip
        rows.append({
            **common, "method": NO_PS_MEASURED, "accuracy": pair["no_ps_test"],
            "source": "no-PS supernet, same subnet, BN recalibrated, test split",
            "model": f"search <= {x['budget']:g} ms",
        })  # fmt: skip
    _write_csv(study.work / "compare" / f"external_{device}.csv", rows, EXTERNAL_FIELDS)


# -- from scratch --------------------------------------------------------------------------------
def scratch_choices(study: Study, devices: Sequence[DeviceStep]) -> list[dict[str, Any]]:
    """``scratch.n`` searched archs of the scratch device, spread over its budgets."""
    device = study.config.scratch.device or devices[0].name
    chosen = study.summary(f"search_{device}")["chosen"]
    n = min(study.config.scratch.n, len(chosen))
    if n == 0:
        return []
    picks = sorted({int(round(i)) for i in np.linspace(0, len(chosen) - 1, n)})
    return [{**chosen[i], "device": device} for i in picks]


def scratch(study: Study, devices: Sequence[DeviceStep]) -> dict[str, Any]:
    """Train the chosen searched archs alone from scratch (same data, same total epochs)."""
    picks = scratch_choices(study, devices)
    out_of = {i: study.work / "scratch" / _arch_dir(x["arch"]) for i, x in enumerate(picks)}
    pending = [
        i for i, x in enumerate(picks)
        if not final_checkpoint(study, "scratch", x["arch"], out_of[i]).exists()
    ]  # fmt: skip
    if pending:
        config_file = study.train_config_file()
        study.run_processes([
            (f"scratch_{out_of[i].name}", ["train", "--config", str(config_file), "--scratch-arch",
                                  json.dumps(picks[i]["arch"]), "--out", str(out_of[i]), "--resume",
                                  "--threads", str(study.config.train_threads), "--no-progress"])
            for i in pending
        ])  # fmt: skip
    evaluations = _cached_evaluations(study)
    results = []
    for i, x in enumerate(picks):
        checkpoint = final_checkpoint(study, "scratch", x["arch"], out_of[i])
        record = json.loads(checkpoint.with_suffix(".json").read_text())
        train = training_summary(out_of[i], checkpoint)
        ofa = evaluations.get(("ps", ArchConfig.from_dict(x["arch"]).to_json()), {})
        results.append({
            **x, "dir": str(out_of[i]), "scratch_val": record["val_acc"],
            "scratch_test": record["test_acc"], "ofa_test": ofa.get("test_acc"), "train_seconds": train["train_seconds"],
        })  # fmt: skip
    for d in devices:
        _write_scratch_external(study, d.name, results)
    return {"archs": results}


def _arch_dir(arch: dict[str, Any]) -> str:
    """A folder name that identifies the architecture (so a changed search result never
    resumes another arch's run)."""
    import hashlib

    return "arch_" + hashlib.sha1(ArchConfig.from_dict(arch).to_json().encode()).hexdigest()[:10]


def _cached_evaluations(study: Study) -> dict[tuple[str, str], dict[str, float]]:
    path = study.work / "compare" / "evaluations.jsonl"
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[(row["net"], row["arch"])] = row["acc"]
    return out


def _write_scratch_external(study: Study, device: str, results: Sequence[dict[str, Any]]) -> None:
    problem = problem_for(study, device)
    archs = [ArchConfig.from_dict(x["arch"]) for x in results]
    values = problem.measure(archs) if archs else {}
    rows = [
        {
            "method": SCRATCH_METHOD,
            "accuracy": x["scratch_test"],
            "source": f"{x['dir']} (trained alone, same data and epochs), test split",
            "latency_ms": float(values["latency_ms"][i]),
            "mmacs": float(values["mmacs"][i]),
            "mparams": float(values["mparams"][i]),
            "device": device,
            "accuracy_kind": "measured",
            "model": f"searched on {x['device']} <= {x['budget']:g} ms",
            "arch": archs[i].to_json(),
        }  # fmt: skip
        for i, x in enumerate(results)
    ]
    _write_csv(study.work / "scratch" / f"external_{device}.csv", rows, EXTERNAL_FIELDS)


def study_externals(study: Study, device: str) -> list[str]:
    """The external-point CSVs (measured OFA/no-PS subnets, from-scratch archs) of ``device``
    that hold at least one point."""
    paths = [study.work / "compare" / f"external_{device}.csv",
             study.work / "scratch" / f"external_{device}.csv"]  # fmt: skip
    return [str(p) for p in paths if len(_read_csv(p)) > 0]


# -- report --------------------------------------------------------------------------------------
def report(study: Study, devices: Sequence[DeviceStep]) -> dict[str, Any]:
    from .report import write_study_report

    return write_study_report(study, devices)


# -- small helpers -------------------------------------------------------------------------------
def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _write_csv(
    path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str] | None = None
) -> None:
    fields = list(fields or (rows[0].keys() if rows else []))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None

"""The steps of a study (see :mod:`ofabench.study.runner`). Each takes the :class:`Study`, does
its work into the study's ``work_dir`` (resuming what an interrupted attempt left) and returns a
JSON-ready summary that the runner stores in ``study.json``."""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
import logging
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

log = logging.getLogger("ofabench")
SEARCH_METHOD_MEASURED = "OFA subnet (measured)"
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
    """Train one supernet of the study; with ``parallel_training`` the first call starts every
    unfinished one (PS and its baselines), two processes at a time. Baselines matched to PS's
    budget read it from PS's ``config.yaml``, written here first."""
    _write_run_config(study, "ps")
    schedules = [schedule]
    if study.config.parallel_training:
        schedules = [s for s in study.schedules if s == schedule or not study.done(f"train_{s}")]
    pending = [s for s in schedules if not final_checkpoint(study, s).exists()]
    if pending and study.config.parallel_training:
        config_file = study.train_config_file()
        jobs = [(f"train_{s}", _train_args(study, config_file, s)) for s in pending]
        after = {}
        if _accuracy_alongside(study, pending):
            # a core the baselines leave idle samples the accuracy dataset once PS has finished
            # (at once when PS finished in an earlier run); the accuracy step then finds its
            # rows in the CSV
            jobs.append(("accuracy_alongside", _accuracy_args(study)))
            after["accuracy_alongside"] = ["train_ps"]
            study.state["accuracy_alongside"] = True
            study.save()
        study.run_processes(jobs, after)
    elif pending:
        from ..training.trainer import Trainer

        Trainer(
            study.train_config(schedule), study.train_dir(schedule), progress=study.progress
        ).run(resume=True)
    return training_summary(study.train_dir(schedule), final_checkpoint(study, schedule))


def _train_args(study: Study, config_file: Path, schedule: str) -> list[str]:
    args = ["train", "--config", str(config_file), "--schedule", schedule, "--out",
            str(study.train_dir(schedule)), "--resume", "--threads",
            str(study.config.train_threads), "--no-progress"]  # fmt: skip
    if schedule in study.config.baselines and study.config.match_budget:
        args += ["--match-budget", str(study.train_dir("ps"))]
    return args


def _accuracy_alongside(study: Study, pending: Sequence[str]) -> bool:
    """Whether the accuracy dataset is sampled beside the baselines' training: a baseline still
    to train (PS trained before it or beside it), PS trained here, the accuracy step not yet
    done. A study resumed after PS finished samples it too (it once did not, and left a core
    idle for hours)."""
    return (
        not study.config.pretrained
        and any(s != "ps" for s in pending)
        and not study.done("accuracy")
    )


def _accuracy_args(study: Study) -> list[str]:
    """``ofabench sample-accuracy`` with the accuracy step's own settings and paths."""
    a = study.config.accuracy
    checkpoint = final_checkpoint(study, "ps")
    args = ["sample-accuracy", "--checkpoint", str(checkpoint), "--config",
            str(checkpoint.parent / "config.yaml"), "--n", str(a.n), "--out",
            str(study.accuracy_csv), "--seed", str(a.seed), "--recal-images",
            str(a.recal_images), "--batch-size", str(a.batch_size), "--threads",
            str(study.config.train_threads), "--no-progress"]  # fmt: skip
    if a.val_images is not None:
        args += ["--val-images", str(a.val_images)]
    return args


def _write_run_config(study: Study, schedule: str) -> None:
    """A run's ``config.yaml`` before it starts (what ``ofabench train`` writes first)."""
    import yaml

    path = study.train_dir(schedule) / "config.yaml"
    if not path.exists():
        with atomic_open(path) as handle:
            yaml.safe_dump(study.train_config(schedule).to_dict(), handle, sort_keys=False)


def training_summary(out: Path, checkpoint: Path) -> dict[str, Any]:
    """The checkpoint, the training time, the compute spent (subnet passes, teacher forward
    passes) and the last validation figures of a run's metrics."""
    if not checkpoint.exists():
        raise StudyError(f"training finished without its final checkpoint {checkpoint}")
    rows = _read_csv(out / "metrics.csv")
    last = rows[-1] if rows else {}
    return {
        "checkpoint": str(checkpoint),
        "train_seconds": _column_sum(rows, "seconds"),
        "subnet_passes": int(_column_sum(rows, "subnet_passes")),
        "teacher_passes": int(_column_sum(rows, "teacher_passes")),
        "epochs": len(rows),
        "val_acc_max": _float(last.get("val_acc_max")),
        "val_acc_min": _float(last.get("val_acc_min")),
    }


def _column_sum(rows: Sequence[dict[str, str]], key: str) -> float:
    return sum(float(r[key]) for r in rows if r.get(key))


# -- latency -----------------------------------------------------------------------------------
def _settings(device: DeviceStep) -> Any:
    from ..devices.base import MeasureSettings

    return MeasureSettings(
        warmup=device.warmup, repeats=device.repeats, max_rounds=device.max_rounds
    )


def device_profile(device: DeviceStep) -> Any:
    """The device's profile, with the study's ``probe_resolution`` where it sets one."""
    from ..devices.profiles import load_profile

    profile = load_profile(device.name)
    if device.probe_resolution is not None:
        profile = dataclasses.replace(profile, probe_resolution=device.probe_resolution)
    return profile


def noise(study: Study, device: DeviceStep) -> dict[str, Any] | None:
    """The device's noise floor now (``ofabench noise`` on a subnet of the study's space), or
    None with ``noise_check: false``."""
    if not device.noise_check:
        return None
    from ..latency.noise import measure_noise

    settings = dataclasses.replace(_settings(device), max_rounds=1)
    report = measure_noise(device_profile(device), study.space, settings=settings)
    log.info("%s", report.summary())
    return report.to_dict()


def profile(study: Study, device: DeviceStep) -> dict[str, Any]:
    from ..latency.profiler import profile_device

    before = noise(study, device)
    result = profile_device(
        device_profile(device),
        study.space,
        None,
        study.table_path(device.name),
        _settings(device),
        device.fit_resolutions,
        progress=study.progress_bar(f"profile {device.name}", "op"),
        calibrate=device.calibrate,
        passes=device.profile_passes,
    )
    return {**result.to_dict(), "noise": before}


def validate(study: Study, device: DeviceStep) -> dict[str, Any]:
    from ..latency.validate import validate_device

    result = validate_device(
        device_profile(device),
        study.space,
        study.table_path(device.name),
        n=device.validate_n,
        seed=VALIDATION_SEED,
        out_dir=study.validate_dir(device.name),
        settings=_settings(device),
        passes=device.validate_passes,
        progress=study.progress_bar(f"validate {device.name}", "subnet"),
        speed_check=device.speed_check,
    )
    return {**result.to_dict(), "noise": noise(study, device)}


# -- accuracy dataset and predictor ------------------------------------------------------------
def _supernet(study: Study, schedule: str) -> Any:
    from ..supernet.checkpoint import load_supernet

    return load_supernet(study.supernet_checkpoint(schedule), study.space)


def pretrained(study: Study) -> dict[str, Any]:
    """The shipped model a pretrained study starts from: what it is and where it came from (its
    figures are the shipped study's, reported as such)."""
    manifest = study.shipped
    assert manifest is not None
    data = study.dataset()  # the shipped model's dataset must load here
    return {
        "name": study.config.pretrained,
        "space": manifest["space"],
        "dataset": data.name,
        "supernet": str(study.supernet_checkpoint("ps")),
        "predictor": str(study.predictor_path),
        "figures": manifest.get("figures", {}),
        "claims": manifest.get("claims"),
        "made_by": manifest.get("made_by", {}),
    }


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
    return {"path": str(study.predictor_path), **report.to_dict(), "cv": predictor_cv(study)}


def predictor_cv(study: Study) -> dict[str, Any]:
    """Held-out quality over ``cv_splits`` random splits (a fresh MLP per split)."""
    from ..predictor.mlp import AccuracyPredictor, read_accuracy_table

    p = study.config.predictor
    archs, accs = read_accuracy_table(study.accuracy_csv, study.space)
    reports = [
        AccuracyPredictor(study.space, hidden_size=p.hidden, seed=p.seed + k).fit(
            archs, accs, epochs=p.epochs, seed=p.seed + k, val_fraction=p.val_fraction
        )
        for k in range(p.cv_splits)
    ]
    taus = np.array([r.kendall_tau for r in reports])
    rmses = np.array([r.rmse_pct for r in reports])
    return {
        "splits": p.cv_splits,
        "val_fraction": p.val_fraction,
        "n_val": reports[0].n_val,
        "kendall_tau_mean": float(taus.mean()),
        "kendall_tau_min": float(taus.min()),
        "kendall_tau_max": float(taus.max()),
        "rmse_pct_mean": float(rmses.mean()),
    }


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
    from ..latency.probe import check_device_speed, rescaled_model
    from ..provenance import write_json
    from ..search.sweep import pareto_sweep

    s = study.config.search
    problem = problem_for(study, device.name)
    # the table describes this machine only if the probe still runs at the table's speed
    speed = check_device_speed(
        device_profile(device), problem.latency_model.table, device.speed_check,
        where=str(study.table_path(device.name)),
    )  # fmt: skip
    problem.latency_model = rescaled_model(problem.latency_model, speed)
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
        "speed_check": speed.to_dict(),
    }


def searched_method(document: dict[str, Any]) -> str:
    from ..search.sweep import SEARCH_METHOD

    return SEARCH_METHOD


# -- measured comparisons ------------------------------------------------------------------------
NET_LABELS = {"ps": "PS", "no_ps": "no-PS", "sandwich": "sandwich"}


def test_split_label(study: Study) -> str:
    """What the supernets' subnets are scored on: the test split or its first images."""
    limit = study.config.compare.test_images
    return "test split" if limit is None else f"first {limit} test images"


class _Evaluations:
    """Test-split results of subnets of every supernet of the study after BN recalibration:
    accuracy and which test images each got right (packed bits), cached in
    ``work_dir/compare/evaluations.jsonl`` (one line per evaluation, so a kill loses at most
    one)."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self.path = study.work / "compare" / "evaluations.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.cache: dict[tuple[str, str], dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                self.cache[(row["net"], row["arch"])] = row
        self._evaluators: dict[str, Any] = {}

    def _evaluator(self, net: str) -> Any:
        from ..training.evaluate import SubnetEvaluator

        if net not in self._evaluators:
            c = self.study.config.compare
            self._evaluators[net] = SubnetEvaluator(
                _supernet(self.study, net), self.study.dataset(), ("test",), c.recal_images,
                c.test_images, c.batch_size,
            )  # fmt: skip
        return self._evaluators[net]

    def _current(self, net: str, arch: ArchConfig) -> dict[str, Any] | None:
        """The cached row of ``arch`` on ``net`` if it was scored on this study's test images."""
        cached = self.cache.get((net, arch.to_json()))
        if cached is None or "test_correct" not in cached:
            return None
        return cached if cached.get("test_images") == self.study.config.compare.test_images else None

    def cached(self, net: str, arch: ArchConfig) -> dict[str, float] | None:
        """The accuracy of ``arch`` on ``net`` if it is cached for this study's test images
        (nothing is evaluated)."""
        row = self._current(net, arch)
        return None if row is None else row["acc"]

    def _row(self, net: str, arch: ArchConfig) -> dict[str, Any]:
        key = (net, arch.to_json())
        limit = self.study.config.compare.test_images
        if self._current(net, arch) is None:
            hits = self._evaluator(net).correct(arch)["test"].numpy()
            row = {"net": net, "arch": key[1], "acc": {"test_acc": float(hits.mean())},
                   "test_correct": base64.b64encode(np.packbits(hits)).decode("ascii"),
                   "n_test": int(len(hits)), "test_images": limit}  # fmt: skip
            with self.path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            self.cache[key] = row
        return self.cache[key]

    def __call__(self, net: str, arch: ArchConfig) -> dict[str, float]:
        return self._row(net, arch)["acc"]

    def correct(self, net: str, arch: ArchConfig) -> np.ndarray:
        """Which test images subnet ``arch`` of ``net`` classifies right (bool array)."""
        row = self._row(net, arch)
        bits = np.frombuffer(base64.b64decode(row["test_correct"]), dtype=np.uint8)
        return np.unpackbits(bits)[: row["n_test"]].astype(bool)


def _evaluate_all(study: Study, archs: Sequence[ArchConfig], what: str) -> _Evaluations:
    evaluate = _Evaluations(study)
    bar = study.progress_bar(what, "subnet")
    for i, arch in enumerate(archs):
        for net in study.evaluated:
            evaluate(net, arch)
        if bar is not None:
            bar(i + 1, len(archs))
    return evaluate


def compare(study: Study) -> dict[str, Any]:
    """Every supernet on the same random subnets and on the largest and smallest subnets, test
    split; PS minus each baseline as a paired difference with a bootstrap confidence interval
    over subnets and test images."""
    from .stats import paired_bootstrap

    space = study.space
    c = study.config.compare
    rng = np.random.default_rng(c.seed)
    randoms = [space.sample(rng) for _ in range(c.n)]
    extremes = [space.max_arch(), space.min_arch()]
    evaluate = _evaluate_all(study, randoms + extremes, "subnets on every supernet")
    rows = [{"index": i, "arch": a.to_json(), **_accuracies(study, evaluate, a)}
            for i, a in enumerate(randoms)]  # fmt: skip
    _write_csv(study.work / "compare" / "random_subnets.csv", rows)
    correct = {net: np.stack([evaluate.correct(net, a) for a in randoms]) for net in study.schedules}
    paired = {
        b: paired_bootstrap(correct["ps"], correct[b], c.n_boot, c.ci_level, c.seed).to_dict()
        for b in study.config.baselines
    }
    return {
        "random_subnets": str(study.work / "compare" / "random_subnets.csv"),
        "n": len(rows),
        "nets": list(study.schedules),
        "test_mean": {net: float(np.mean([r[f"{net}_test"] for r in rows])) for net in study.schedules},
        "paired": paired,
        "largest": {"arch": extremes[0].to_dict(), **_accuracies(study, evaluate, extremes[0])},
        "smallest": {"arch": extremes[1].to_dict(), **_accuracies(study, evaluate, extremes[1])},
    }


def measure_searched(study: Study, devices: Sequence[DeviceStep]) -> dict[str, Any]:
    """Every architecture the searches chose, measured on the PS supernet (OFA's subnet, no
    retraining) and on each baseline supernet: the report's measured points."""
    searched = {d.name: study.summary(f"search_{d.name}")["chosen"] for d in devices}
    archs = [ArchConfig.from_dict(x["arch"]) for rows in searched.values() for x in rows]
    evaluate = _evaluate_all(study, archs, "searched subnets")
    for device, chosen in searched.items():
        _write_external(study, device, chosen, evaluate)
    return {
        device: [{**x, **_accuracies(study, evaluate, ArchConfig.from_dict(x["arch"]))}
                 for x in chosen]
        for device, chosen in searched.items()
    }  # fmt: skip


def _accuracies(study: Study, evaluate: _Evaluations, arch: ArchConfig) -> dict[str, float]:
    return {f"{net}_test": evaluate(net, arch)["test_acc"] for net in study.evaluated}


def _write_external(
    study: Study, device: str, chosen: Sequence[dict[str, Any]], evaluate: _Evaluations
) -> None:
    rows = []
    for x in chosen:
        arch = ArchConfig.from_dict(x["arch"])
        accs = _accuracies(study, evaluate, arch)
        common = {
            "latency_ms": x["latency_ms"], "mmacs": x["mmacs"], "device": device,
            "accuracy_kind": "measured", "arch": arch.to_json(),
            "model": f"search <= {x['budget']:g} ms",
        }  # fmt: skip
        rows.append({
            **common, "method": SEARCH_METHOD_MEASURED, "accuracy": accs["ps_test"],
            "source": ("shipped " if study.config.pretrained else "")
            + f"PS supernet, BN recalibrated, {test_split_label(study)}",
        })  # fmt: skip
        for net in study.evaluated[1:]:
            rows.append({
                **common, "method": f"{NET_LABELS[net]} supernet (measured)",
                "accuracy": accs[f"{net}_test"],
                "source": f"{NET_LABELS[net]} supernet, same subnet, BN recalibrated, "
                          f"{test_split_label(study)}",
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
    evaluations = _Evaluations(study)
    results = []
    for i, x in enumerate(picks):
        checkpoint = final_checkpoint(study, "scratch", x["arch"], out_of[i])
        record = json.loads(checkpoint.with_suffix(".json").read_text())
        train = training_summary(out_of[i], checkpoint)
        ofa = evaluations.cached("ps", ArchConfig.from_dict(x["arch"])) or {}
        results.append({
            **x, "dir": str(out_of[i]), "scratch_val": record["val_acc"],
            "scratch_test": record["test_acc"], "ofa_test": ofa.get("test_acc"),
            "train_seconds": train["train_seconds"], "subnet_passes": train["subnet_passes"],
        })  # fmt: skip
    for d in devices:
        _write_scratch_external(study, d.name, results)
    return {"archs": results}


def _arch_dir(arch: dict[str, Any]) -> str:
    """A folder name that identifies the architecture (so a changed search result never
    resumes another arch's run)."""
    import hashlib

    return "arch_" + hashlib.sha1(ArchConfig.from_dict(arch).to_json().encode()).hexdigest()[:10]


def _write_scratch_external(study: Study, device: str, results: Sequence[dict[str, Any]]) -> None:
    problem = problem_for(study, device)
    archs = [ArchConfig.from_dict(x["arch"]) for x in results]
    values = problem.measure(archs) if archs else {}
    rows = [
        {
            "method": SCRATCH_METHOD,
            "accuracy": x["scratch_test"],
            "source": f"{x['dir']} (trained alone with the full network's training), test split",
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

"""``ofabench study``: the whole pipeline from one study file, step by step, resumable.

Every step writes its output under the study's ``work_dir`` and its summary into
``work_dir/study.json`` (with its wall time, accumulated over interrupted attempts). A finished
step is not run again; an interrupted one continues through its own resume mechanism (training
checkpoints, the latency table, the validation and accuracy CSVs are all appended as they go).

Steps, in order (``<dev>`` for each device that runs here):

``train_ps``, ``train_<baseline>``
    the progressive-shrinking supernet and its baselines (``no_ps``, ``sandwich``), each
    baseline with exactly PS's subnet passes (two processes at a time with
    ``parallel_training``, each with ``train_threads`` threads).
``compare``
    the same random subnets (and the largest and smallest) evaluated on every supernet, on the
    test split, image by image: paired differences with bootstrap confidence intervals.
``accuracy``, ``predictor``
    the accuracy dataset of random subnets of the PS supernet, and the MLP predictor on it.
``profile_<dev>``, ``validate_<dev>``
    the device's latency table of the space and its validation against end-to-end runs.
``search_<dev>``
    OFA's evolutionary search, random search and uniform scaling at relative latency budgets.
``measure_searched``
    every searched architecture measured on both supernets (no retraining).
``scratch``
    a few searched architectures trained alone from scratch, same data and epochs.
``report``
    the report folder: fronts per device, LUT validation, predictor quality, the seed's claims,
    the cross-device view, the wall time of every step.

A study with ``pretrained: NAME`` (``ofabench demo``) starts from a shipped model instead: its
``train_*`` steps are short runs that show the trainer working, ``compare``, ``accuracy``,
``predictor`` and ``scratch`` are not run, and the searches and measured accuracies use the
shipped PS supernet and predictor.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, OfabenchError, StudyError
from ..provenance import atomic_open, provenance, read_yaml_file, write_json
from .config import DeviceStep, StudyConfig

log = logging.getLogger("ofabench")
STATE_VERSION = 1
Progress = Callable[[str], Any]  # makes a progress callback (done, total, key) for a step name


class Study:
    """Runs a :class:`StudyConfig` into its ``work_dir`` (see the module docstring)."""

    def __init__(self, config: StudyConfig, progress: bool = False, command: str = "") -> None:
        self.config = config
        self.work = Path(config.work_dir)
        self.progress = progress
        self.command = command
        self.state_path = self.work / "study.json"
        self.state = self._load_state()
        self._datasets: dict[str, Any] = {}
        self._shipped: dict[str, Any] | None = None

    # -- state -----------------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {
                "version": STATE_VERSION,
                "study": self.config.name,
                "train": self.config.train,
                "steps": {},
                "skipped_devices": {},
                "commands": [],
            }
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.state_path} is unreadable ({exc}); move it away") from exc
        if state.get("version") != STATE_VERSION or state.get("study") != self.config.name:
            raise ConfigError(
                f"{self.work} holds study {state.get('study')!r} (state version "
                f"{state.get('version')}); use another --work-dir"
            )
        if state.get("train") != self.config.train:
            raise ConfigError(
                f"{self.work} was trained with another training config than {self.config.source}'s; "
                "use another --work-dir or restore the config"
            )
        return state

    def save(self) -> None:
        self.state["config"] = self.config.to_dict()
        write_json(self.state_path, self.state)

    def done(self, step: str) -> bool:
        return self.state["steps"].get(step, {}).get("status") == "done"

    def summary(self, step: str) -> dict[str, Any]:
        entry = self.state["steps"].get(step)
        if not entry or entry.get("status") != "done":
            raise StudyError(f"step {step!r} has not finished; run the study up to it first")
        return entry["summary"]

    # -- layout ----------------------------------------------------------------------------------
    @property
    def space(self) -> Any:
        return self.train_config("ps").space_spec()

    @property
    def schedules(self) -> tuple[str, ...]:
        """The supernets the study trains: PS, then its baselines."""
        return ("ps", *self.config.baselines)

    @property
    def evaluated(self) -> tuple[str, ...]:
        """The supernets whose subnets are evaluated: every trained one, or only the shipped PS
        supernet of a ``pretrained`` study (its own runs are too short to compare)."""
        return ("ps",) if self.config.pretrained else self.schedules

    @property
    def shipped(self) -> dict[str, Any] | None:
        """The manifest of the study's ``pretrained`` model (None without one)."""
        name = self.config.pretrained
        if name is None:
            return None
        if self._shipped is None:
            from ..pretrained import shipped

            models = shipped()
            if name not in models:
                raise ConfigError(
                    f"{self.config.source}: pretrained model {name!r} is not shipped; shipped "
                    f"models: {', '.join(models) or 'none'}"
                )
            manifest = models[name]
            if manifest.get("space") != self.space.name:
                raise ConfigError(
                    f"{self.config.source}: pretrained model {name!r} is of space "
                    f"{manifest.get('space')!r}, the study's training config of {self.space.name!r}"
                )
            self._shipped = manifest
        return self._shipped

    def shipped_file(self, kind: str) -> Path:
        from ..pretrained import resolve

        assert self.shipped is not None
        return resolve(self.config.pretrained, kind)

    def supernet_checkpoint(self, schedule: str) -> Path:
        """The checkpoint of supernet ``schedule`` (the shipped one for PS in a pretrained
        study)."""
        if self.config.pretrained and schedule == "ps":
            return self.shipped_file("supernet")
        return Path(self.summary(f"train_{schedule}")["checkpoint"])

    def train_dir(self, schedule: str) -> Path:
        return self.work / f"train_{schedule}"

    def table_path(self, device: str) -> Path:
        return self.work / "latency" / device / f"{self.space.name}.json"

    def validate_dir(self, device: str) -> Path:
        return self.work / "validate" / device

    @property
    def accuracy_csv(self) -> Path:
        if self.config.pretrained:
            return self.shipped_file("accuracy")
        return self.work / "accuracy.csv"

    @property
    def predictor_path(self) -> Path:
        if self.config.pretrained:
            return self.shipped_file("predictor")
        return self.work / "predictor.pt"

    def search_path(self, device: str) -> Path:
        return self.work / "search" / f"{device}.json"

    # -- devices ---------------------------------------------------------------------------------
    def devices(self) -> list[DeviceStep]:
        """The configured devices that run here; with ``optional_devices`` the others are
        recorded as skipped with their reason, otherwise the first one is an error."""
        from ..devices.profiles import load_profile

        out = []
        for device in self.config.devices:
            status = load_profile(device.name).availability()
            if status.ok:
                out.append(device)
                self.state["skipped_devices"].pop(device.name, None)
            elif self.config.optional_devices:
                self.state["skipped_devices"][device.name] = status.reason
            else:
                raise ConfigError(
                    f"device {device.name!r} cannot run here: {status.reason} (remove it from "
                    f"{self.config.source} or set optional_devices: true)"
                )
        if not out:
            raise ConfigError(
                f"none of the study's devices runs here: {self.state['skipped_devices']}"
            )
        return out

    # -- running ---------------------------------------------------------------------------------
    def plan(self) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
        from . import steps

        devices = self.devices()
        plan: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            (f"train_{s}", lambda s=s: steps.train(self, s)) for s in self.schedules
        ]
        pretrained = self.shipped is not None
        if pretrained:
            plan.append(("pretrained", lambda: steps.pretrained(self)))
        else:
            plan.append(("compare", lambda: steps.compare(self)))
            plan += [
                ("accuracy", lambda: steps.accuracy(self)),
                ("predictor", lambda: steps.predictor(self)),
            ]
        for d in devices:
            plan.append((f"profile_{d.name}", lambda d=d: steps.profile(self, d)))
            plan.append((f"validate_{d.name}", lambda d=d: steps.validate(self, d)))
        for d in devices:
            plan.append((f"search_{d.name}", lambda d=d: steps.search(self, d)))
        plan.append(("measure_searched", lambda: steps.measure_searched(self, devices)))
        if not pretrained:
            plan.append(("scratch", lambda: steps.scratch(self, devices)))
        plan.append(("report", lambda: steps.report(self, devices)))
        return plan

    def run(self, until: str | None = None, redo: Sequence[str] = ()) -> dict[str, Any]:
        """Run every unfinished step in order (up to and including ``until``); ``redo`` names
        finished steps to run again (their outputs are resumed or rewritten, never half-written)."""
        self.work.mkdir(parents=True, exist_ok=True)
        plan = self.plan()
        names = [name for name, _ in plan]
        for name in [until, *redo]:
            if name is not None and name not in names:
                raise ConfigError(f"unknown study step {name!r}; the steps are {names}")
        self.state["commands"].append({"command": self.command, "started": _now()})
        if "provenance" not in self.state:
            self.state["provenance"] = provenance()
        self.save()
        for name, fn in plan:
            if self.done(name) and name not in redo:
                log.info("study %s: step %s already done", self.config.name, name)
            else:
                self._run_step(name, fn)
            if name == until:
                break
        return self.state

    def _run_step(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        entry = self.state["steps"].setdefault(name, {"wall_s": 0.0, "attempts": 0})
        entry.update(status="running", started=_now())
        entry["attempts"] += 1
        self.save()
        log.info("study %s: step %s", self.config.name, name)
        start = time.perf_counter()
        try:
            summary = fn()
        except BaseException as exc:
            entry["wall_s"] += time.perf_counter() - start
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            self.save()
            if isinstance(exc, OfabenchError):
                raise StudyError(
                    f"study step {name!r} failed: {exc}; fix the cause and rerun the same command "
                    "to resume"
                ) from exc
            raise
        entry["wall_s"] += time.perf_counter() - start
        entry.update(status="done", finished=_now(), summary=summary)
        entry.pop("error", None)
        self.save()

    # -- shared helpers --------------------------------------------------------------------------
    def train_config(self, schedule: str, arch: dict[str, Any] | None = None) -> Any:
        from ..training.config import config_from_dict

        data = dict(self.config.train)
        data["schedule"] = schedule
        if arch is not None:
            data["arch"] = arch
        if schedule in self.config.baselines and self.config.match_budget:
            data["match_budget"] = str(self.train_dir("ps"))
        return config_from_dict(data)

    def train_config_file(self) -> Path:
        """The training config written into the work dir (for the training subprocesses)."""
        path = self.work / "train_config.yaml"
        text = yaml.safe_dump(self.config.train, sort_keys=False)
        if not path.exists() or path.read_text() != text:
            with atomic_open(path) as handle:
                handle.write(text)
        return path

    def dataset(self) -> Any:
        from ..training import load_dataset

        key = "ps"
        if key not in self._datasets:
            self._datasets[key] = load_dataset(self.eval_data())
        return self._datasets[key]

    def eval_data(self) -> Any:
        """The data the supernets' subnets are evaluated on: the PS training config's, or the
        shipped model's own for a pretrained study."""
        if not self.config.pretrained:
            return self.train_config("ps").data
        from ..training.config import config_from_dict

        return config_from_dict(read_yaml_file(self.shipped_file("config"), "shipped config")).data

    def progress_bar(self, desc: str, unit: str) -> Any:
        """A ``progress(done, total, *rest)`` callback drawing a tqdm bar (None without
        progress)."""
        if not self.progress:
            return None
        return _Bar(desc, unit)

    def run_processes(
        self,
        jobs: Sequence[tuple[str, list[str]]],
        after: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Run ``ofabench`` subprocesses (name, arguments), at most two at a time with
        ``parallel_training``, else one; each logs to ``work_dir/logs/<name>.log``. ``after``
        names, per job, the jobs of this call it waits for (a job whose prerequisite failed is not
        started)."""
        width = 2 if self.config.parallel_training else 1
        after = dict(after or {})
        pending = list(jobs)
        running: list[tuple[str, subprocess.Popen[bytes], Any]] = []
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        call = {name for name, _ in jobs}
        finished: set[str] = set()
        failed: list[str] = []
        failed_names: set[str] = set()
        try:
            while pending or running:
                for job in ready_jobs(pending, after, finished, call, width - len(running)):
                    name, args = job
                    pending.remove(job)
                    log_file = (self.work / "logs" / f"{name}.log").open("ab")
                    cmd = [sys.executable, "-m", "ofabench", *args]
                    log.info("starting %s: %s (log %s)", name, " ".join(cmd), log_file.name)
                    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
                    running.append((name, proc, log_file))
                for job in [j for j in pending if set(after.get(j[0], ())) & failed_names]:
                    pending.remove(job)
                    failed_names.add(job[0])
                    failed.append(f"{job[0]} (not started: {sorted(after[job[0]])} failed)")
                if not running and pending:  # nothing runs and nothing can start: a cycle
                    raise StudyError(f"jobs wait for each other: {[j[0] for j in pending]}")
                time.sleep(0.5)
                for item in list(running):
                    name, proc, log_file = item
                    if proc.poll() is None:
                        continue
                    log_file.close()
                    running.remove(item)
                    if proc.returncode != 0:
                        failed.append(f"{name} (exit {proc.returncode}, log {log_file.name})")
                        failed_names.add(name)
                    else:
                        finished.add(name)
        finally:
            for _name, proc, log_file in running:
                proc.terminate()
                proc.wait()
                log_file.close()
        if failed:
            raise StudyError("training process(es) failed: " + "; ".join(failed))


def ready_jobs(
    pending: Sequence[tuple[str, list[str]]],
    after: Mapping[str, Sequence[str]],
    finished: set[str],
    call: set[str],
    slots: int,
) -> list[tuple[str, list[str]]]:
    """The pending jobs to start now, in order: up to ``slots`` whose prerequisites among the
    call's jobs (``call``, their names) have all finished; a prerequisite that is not one of the
    call's jobs counts as met."""
    out = []
    for job in pending:
        if len(out) >= slots:
            break
        if all(n in finished for n in after.get(job[0], ()) if n in call):
            out.append(job)
    return out


class _Bar:
    def __init__(self, desc: str, unit: str) -> None:
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, done: int, total: int, *_: Any) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, initial=done, desc=self.desc, unit=self.unit,
                            dynamic_ncols=True, leave=False)  # fmt: skip
        if total != self.bar.total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.close()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")

"""The study file: one YAML that names the training run, the devices and the settings of every
step of ``ofabench study`` (see ``studies/fashion_mnist.yaml`` for a commented example).

Paths in the file are relative to the file itself, except ``work_dir`` and ``report_dir``, which
are relative to the directory the command runs in (so a study in the repository writes into the
repository's ``runs/`` and ``reports/``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..provenance import read_yaml_file
from ..typed_config import bounds, check, from_mapping, one_of


@dataclass(frozen=True)
class DeviceStep:
    """One device of the study and how to profile and validate it there."""

    name: str
    fit_resolutions: str | None = None
    calibrate: int = field(default=10, metadata=bounds(ge=0))
    validate_n: int = field(default=100, metadata=bounds(ge=2))
    validate_passes: int = field(default=1, metadata=bounds(ge=1))
    warmup: int = field(default=10, metadata=bounds(ge=0))
    repeats: int = field(default=30, metadata=bounds(ge=1))
    max_rounds: int = field(default=4, metadata=bounds(ge=1))
    # how validate and search treat a probe that runs at another speed than when the table was
    # made (see ofabench.latency.probe.SPEED_POLICIES)
    speed_check: str = field(default="auto", metadata=one_of("auto", "rescale", "refuse", "off"))
    # sweeps over the ops when profiling, each op keeping its fastest (slow spells stay out)
    profile_passes: int = field(default=1, metadata=bounds(ge=1))
    # measure the device's noise floor (ofabench noise) before profiling and validating, and
    # report it beside the validation
    noise_check: bool = True
    # the drift probe's input size here (default: the device profile's): a space of tiny ops
    # (small32 at 24-32 px) is timed 4x faster against a 64 px probe than the default 128 px one
    probe_resolution: int | None = field(default=None, metadata=bounds(ge=32, le=512))


@dataclass(frozen=True)
class AccuracyStep:
    n: int = field(default=1000, metadata=bounds(ge=2))
    seed: int = field(default=0, metadata=bounds(ge=0))
    recal_images: int = field(default=2000, metadata=bounds(ge=1))
    val_images: int | None = field(default=None, metadata=bounds(ge=1))
    batch_size: int = field(default=500, metadata=bounds(ge=1))


@dataclass(frozen=True)
class PredictorStep:
    """The MLP predictor fitted on a ``val_fraction`` split (the saved one), and its quality
    cross-validated over ``cv_splits`` random splits of the same fraction (seeds seed..)."""

    epochs: int = field(default=200, metadata=bounds(ge=1))
    val_fraction: float = field(default=0.2, metadata=bounds(gt=0, lt=1))
    seed: int = field(default=0, metadata=bounds(ge=0))
    hidden: int = field(default=400, metadata=bounds(ge=1))
    cv_splits: int = field(default=5, metadata=bounds(ge=1))


@dataclass(frozen=True)
class SearchStep:
    """``budgets`` latency budgets per device, spread evenly between the ``low_quantile`` of the
    latency of random subnets and the latency of the largest subnet, so that devices of very
    different speeds are compared at the same relative budgets (a budget near the smallest
    subnet's latency leaves random search almost nothing to sample)."""

    budgets: int = field(default=6, metadata=bounds(ge=1))
    low_quantile: float = field(default=0.02, metadata=bounds(ge=0, lt=1))
    population: int = field(default=100, metadata=bounds(ge=1))
    generations: int = field(default=500, metadata=bounds(ge=0))
    seed: int = field(default=0, metadata=bounds(ge=0))
    baselines: tuple[str, ...] = ("random", "uniform")


@dataclass(frozen=True)
class CompareStep:
    """PS against its baselines on ``n`` random subnets (the same subnets on every supernet),
    each BN-recalibrated on ``recal_images`` training images and evaluated on the test split;
    paired differences with a ``ci_level`` bootstrap interval over subnets and test images
    (``n_boot`` replicates)."""

    n: int = field(default=50, metadata=bounds(ge=1))
    seed: int = field(default=7, metadata=bounds(ge=0))
    recal_images: int = field(default=2000, metadata=bounds(ge=1))
    batch_size: int = field(default=500, metadata=bounds(ge=1))
    n_boot: int = field(default=2000, metadata=bounds(ge=100))
    ci_level: float = field(default=0.95, metadata=bounds(gt=0, lt=1))
    # score subnets on the first test images only (default: the whole test split): the compared
    # and the searched subnets; a study with scratch runs must use the whole split
    test_images: int | None = field(default=None, metadata=bounds(ge=1))


@dataclass(frozen=True)
class ScratchStep:
    """Train ``n`` of the searched architectures (of ``device``, spread over its budgets) alone
    from scratch, with the full network's training (the PS schedule's first stage)."""

    n: int = field(default=3, metadata=bounds(ge=0))
    device: str | None = None


BASELINE_SCHEDULES = ("no_ps", "sandwich")


@dataclass(frozen=True)
class StudyConfig:
    """A study. ``baselines`` are the supernet training schedules compared with PS, each trained
    with exactly the PS run's subnet passes when ``match_budget`` is on (else its own epochs).

    With ``pretrained`` (a shipped model's name, see :mod:`ofabench.pretrained`) the study starts
    from that model's PS supernet, accuracy dataset and predictor instead of its own: the
    ``train`` runs are then short runs that show the trainer working (reported as such, never
    compared), and the compare, accuracy, predictor and scratch steps are not run; the searches
    and the measured accuracies use the shipped supernet, on the shipped model's dataset."""

    name: str
    train: dict[str, Any]
    devices: tuple[DeviceStep, ...]
    work_dir: Path
    report_dir: Path
    source: str = "<inline>"
    threads: int = field(default=1, metadata=bounds(ge=1))
    train_threads: int = field(default=1, metadata=bounds(ge=1))
    parallel_training: bool = False
    baselines: tuple[str, ...] = ("no_ps",)
    match_budget: bool = True
    optional_devices: bool = False
    accuracy: AccuracyStep = field(default_factory=AccuracyStep)
    predictor: PredictorStep = field(default_factory=PredictorStep)
    search: SearchStep = field(default_factory=SearchStep)
    compare: CompareStep = field(default_factory=CompareStep)
    scratch: ScratchStep = field(default_factory=ScratchStep)
    pretrained: str | None = None

    def __post_init__(self) -> None:
        check(self, self.source)
        unknown = [b for b in self.baselines if b not in BASELINE_SCHEDULES]
        if unknown or len(set(self.baselines)) != len(self.baselines):
            raise ConfigError(
                f"{self.source}: baselines {list(self.baselines)} must name distinct schedules "
                f"from {list(BASELINE_SCHEDULES)}"
            )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["work_dir"] = str(self.work_dir)
        data["report_dir"] = str(self.report_dir)
        return data


TOP_KEYS = (
    "name", "train", "devices", "work_dir", "report_dir", "threads", "train_threads",
    "parallel_training", "baselines", "match_budget",
    "optional_devices", "accuracy", "predictor", "search", "compare", "scratch", "pretrained",
)  # fmt: skip


def load_study(
    path: str | Path, work_dir: str | Path | None = None, report_dir: str | Path | None = None
) -> StudyConfig:
    """Read and check a study file; ``work_dir``/``report_dir`` override the file's."""
    path = Path(path)
    data = read_yaml_file(path, "study file", mapping=False)
    return study_from_dict(data, path.parent, str(path), work_dir, report_dir)


def study_from_dict(
    data: Any,
    base: Path,
    source: str = "<inline>",
    work_dir: str | Path | None = None,
    report_dir: str | Path | None = None,
) -> StudyConfig:
    """A :class:`StudyConfig` from a parsed YAML mapping; relative ``train`` paths are resolved
    against ``base``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a study file is a mapping with keys {list(TOP_KEYS)}")
    _check_keys(source, data, TOP_KEYS)
    for key in ("name", "train", "devices"):
        if key not in data:
            raise ConfigError(f"{source}: missing key {key!r}")
    name = data["name"]
    config = StudyConfig(
        name=name,
        train=_train(source, data["train"], base),
        devices=_devices(source, data["devices"]),
        work_dir=work_dir or data.get("work_dir") or f"runs/{name}",
        report_dir=report_dir or data.get("report_dir") or f"reports/{name}",
        source=source,
        threads=data.get("threads", 1),
        train_threads=data.get("train_threads", 1),
        parallel_training=data.get("parallel_training", False),
        baselines=_string_tuple(data.get("baselines", ["no_ps"])),
        match_budget=data.get("match_budget", True),
        optional_devices=data.get("optional_devices", False),
        accuracy=_section(source, AccuracyStep, "accuracy", data.get("accuracy")),
        predictor=_section(source, PredictorStep, "predictor", data.get("predictor")),
        search=_section(source, SearchStep, "search", data.get("search")),
        compare=_section(source, CompareStep, "compare", data.get("compare")),
        scratch=_section(source, ScratchStep, "scratch", data.get("scratch")),
        pretrained=data.get("pretrained"),
    )
    if not config.name or "/" in config.name:
        raise ConfigError(f"{source}: name must be a non-empty word without '/', got {name!r}")
    devices = config.devices
    known = [d.name for d in devices]
    if config.scratch.device is not None and config.scratch.device not in known:
        raise ConfigError(
            f"{source}: scratch.device {config.scratch.device!r} is not one of the devices {known}"
        )
    if config.compare.test_images is not None and config.scratch.n and not config.pretrained:
        raise ConfigError(
            f"{source}: compare.test_images limits the supernets' subnets to the first test "
            "images, but the scratch runs are scored on the whole test split; leave out "
            "test_images or set scratch: {n: 0}"
        )
    return config


def _string_tuple(value: Any) -> Any:
    """A YAML list as a tuple (the typed check then says what a wrong value should be)."""
    return tuple(value) if isinstance(value, list) else value


def _train(source: str, value: Any, base: Path) -> dict[str, Any]:
    """The training config as a mapping (a path to a training YAML, or the mapping itself)."""
    if isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() else base / value
        return dict(read_yaml_file(path, f"{source}: train config"))
    if isinstance(value, Mapping):
        return dict(value)
    raise ConfigError(f"{source}: train must be a training YAML path or a mapping")


def _devices(source: str, value: Any) -> tuple[DeviceStep, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: devices must be a non-empty list of device names or mappings")
    out = []
    for item in value:
        entry = {"name": item} if isinstance(item, str) else item
        out.append(_section(source, DeviceStep, "devices[]", entry))
    names = [d.name for d in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: a device is listed twice in {names}")
    return tuple(out)


def _section(source: str, cls: type, where: str, value: Any) -> Any:
    return from_mapping(cls, value, f"{source}: {where}")


def _check_keys(where: str, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {list(allowed)}")

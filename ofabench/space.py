"""A search space of elastic MBConv stages (:class:`SpaceSpec`) and one point in it (:class:`ArchConfig`).

An architecture is OFA's ``{"ks", "e", "d", "r"}``: a kernel size and an expand ratio for every
block slot (``n_stages * max_depth`` of them, skipped slots included, as OFA keeps them), a depth
per stage and an input resolution. A stage may have its own depth choices (ProxylessNAS's last
stage is one block): its slots beyond them are never run. What the layers of a subnet are (stem,
head, activations) is the space's *family* (:mod:`ofabench.families`); the MobileNetV3 family's
geometry lives here. Everything here is pure Python + numpy; no torch.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, InvalidArchError

SCHEMA_VERSION = 1
ACTIVATIONS = ("relu", "h_swish", "relu6")
DEFAULT_FAMILY = "mbv3"


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor`` without going more than 10% below it (OFA/TF rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A numpy Generator from a seed, an existing Generator, or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


@dataclass(frozen=True)
class StageSpec:
    """One elastic stage: base width (before the width multiplier), first stride, activation, SE,
    and its own depth choices (``()``: the space's)."""

    width: int
    stride: int
    act: str
    se: bool
    depths: tuple[int, ...] = ()


OFA_MBV3_STAGES = (
    StageSpec(24, 2, "relu", False),
    StageSpec(40, 2, "relu", True),
    StageSpec(80, 2, "h_swish", False),
    StageSpec(112, 1, "h_swish", True),
    StageSpec(160, 2, "h_swish", True),
)


@dataclass(frozen=True)
class ArchConfig:
    """One subnet: per-slot kernel sizes ``ks`` and expand ratios ``e``, per-stage depths ``d``,
    input resolution ``r``. Frozen and hashable; validate it against a space with
    :meth:`SpaceSpec.validate`.

    ``extra`` holds the genes a family has beyond ``ks/e/d/r`` (empty for MobileNetV3 and
    ProxylessNAS, and then absent from the dict form, so their files and hashes are unchanged;
    OFA-ResNet50: the input stem's depth and the width-multiplier indices, see
    :mod:`ofabench.families.resnet`)."""

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    r: int
    extra: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("ks", "e", "d", "extra"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise InvalidArchError(
                    f"arch field {name!r} must be a list of integers, got {value!r}"
                )
            object.__setattr__(self, name, tuple(_as_int(name, v) for v in value))
        r = self.r
        if isinstance(r, (list, tuple)):  # OFA writes "r": [224]
            if len(r) != 1:
                raise InvalidArchError(f"arch field 'r' must be one resolution, got {r!r}")
            r = r[0]
        object.__setattr__(self, "r", _as_int("r", r))

    # -- conversions -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ks": list(self.ks), "e": list(self.e), "d": list(self.d)}
        data["r"] = self.r
        if self.extra:
            data["extra"] = list(self.extra)
        return data

    def to_ofa_dict(self) -> dict[str, Any]:
        """OFA's dict form, as its ``ArchManager``/``EvolutionFinder`` use it (``r`` a 1-list)."""
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d), "r": [self.r]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], default_r: int | None = None) -> ArchConfig:
        """Read ofabench's or OFA's dict form (``r`` an int or a 1-list; OFA's ``wid: None`` ignored).

        OFA ``net.config`` files carry no resolution: pass ``default_r`` for them.
        """
        if not isinstance(data, Mapping):
            raise InvalidArchError(
                f"an arch must be a mapping with keys ks, e, d, r; got {type(data).__name__}"
            )
        known = {"ks", "e", "d", "r", "wid", "image_size", "extra"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArchError(f"unknown arch field(s) {unknown}; allowed: ks, e, d, r")
        if data.get("wid") is not None:
            raise InvalidArchError(
                "arch field 'wid' (elastic width multiplier) is not supported; use null"
            )
        missing = [k for k in ("ks", "e", "d") if k not in data]
        r = data.get("r", data.get("image_size", default_r))
        if r is None:
            missing.append("r")
        if missing:
            raise InvalidArchError(f"arch is missing field(s) {missing}; required: ks, e, d, r")
        return cls(ks=data["ks"], e=data["e"], d=data["d"], r=r, extra=data.get("extra", ()))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArchError(f"arch is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArchError(f"arch field {name!r} must hold integers, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class LayerGeom:
    """The geometry of one layer of a subnet, enough to count it and to key a latency table.

    ``kind`` is one of ``stem``, ``mbconv``, ``final_expand``, ``pool``, ``feature_mix``,
    ``classifier`` (and OFA-ResNet's ``maxpool``, ``bottleneck``). ``hw`` is the input's height (= width).
    """

    kind: str
    hw: int
    in_c: int
    out_c: int
    mid: int = 0
    kernel: int = 1
    stride: int = 1
    se: bool = False
    act: str = "relu"
    residual: bool = False
    has_expand: bool = True

    @property
    def out_hw(self) -> int:
        return (self.hw - 1) // self.stride + 1

    @property
    def se_mid(self) -> int:
        return make_divisible(self.mid // 4, 8) if self.se else 0


@dataclass(frozen=True)
class SpaceSpec:
    """An OFA-MobileNetV3-style search space; the defaults are OFA's w1.0 ImageNet space."""

    name: str = "ofa_mbv3_w1.0"
    width_mult: float = 1.0
    in_channels: int = 3
    n_classes: int = 1000
    stem_width: int = 16
    stem_stride: int = 2
    first_block_width: int = 16
    stages: tuple[StageSpec, ...] = OFA_MBV3_STAGES
    final_expand_width: int = 960
    feature_mix_width: int = 1280
    kernel_choices: tuple[int, ...] = (3, 5, 7)
    expand_choices: tuple[int, ...] = (3, 4, 6)
    depth_choices: tuple[int, ...] = (2, 3, 4)
    resolutions: tuple[int, ...] = tuple(range(128, 225, 4))
    dropout: float = 0.1
    max_depth: int = field(default=0)  # 0: max(depth_choices); set explicitly by restrict()
    family: str = DEFAULT_FAMILY
    extra_resolutions: tuple[int, ...] = ()  # accepted for evaluation, never sampled
    width_choices: tuple[float, ...] = ()  # elastic width multipliers (OFA-ResNet50's)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(_stage(s) for s in self.stages))
        for name in ("kernel_choices", "expand_choices", "depth_choices", "resolutions"):
            object.__setattr__(self, name, _choices(name, getattr(self, name)))
        extra = self.extra_resolutions
        extra = _choices("extra_resolutions", extra) if extra != () and extra != [] else ()
        object.__setattr__(self, "extra_resolutions", extra)
        object.__setattr__(self, "width_choices", _width_choices(self.width_choices))
        if any(k % 2 == 0 or k < 1 for k in self.kernel_choices):
            raise ConfigError(
                f"kernel choices must be odd positive sizes, got {self.kernel_choices}"
            )
        if self.max_depth == 0:
            object.__setattr__(self, "max_depth", max(self.depth_choices))
        if max(self.depth_choices) > self.max_depth or min(self.depth_choices) < 1:
            raise ConfigError(f"depth choices {self.depth_choices} must lie in 1..{self.max_depth}")
        for s, stage in enumerate(self.stages):
            if stage.depths and max(stage.depths) > self.max_depth:
                raise ConfigError(
                    f"stage {s} depth choices {list(stage.depths)} must lie in 1..{self.max_depth}"
                )
        from .families import get_family

        get_family(self.family)  # ConfigError naming the known families
        if self.width_mult <= 0 or self.in_channels < 1 or self.n_classes < 1:
            raise ConfigError("width_mult, in_channels and n_classes must be positive")
        if self.stem_stride not in (1, 2):
            raise ConfigError(f"stem_stride must be 1 or 2, got {self.stem_stride}")

    # -- derived sizes -----------------------------------------------------------------------
    def _width(self, base: int) -> int:
        return make_divisible(base * self.width_mult, 8)

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    @property
    def stage_depth_choices(self) -> tuple[tuple[int, ...], ...]:
        """Each stage's depth choices: its own, or the space's ``depth_choices``."""
        return tuple(s.depths or self.depth_choices for s in self.stages)

    @property
    def all_depth_choices(self) -> tuple[int, ...]:
        """Every depth some stage may take, sorted."""
        return tuple(sorted({d for c in self.stage_depth_choices for d in c}))

    @property
    def n_blocks(self) -> int:
        """Number of elastic block slots (``ks``/``e`` entries): stages x max depth."""
        return self.n_stages * self.max_depth

    @property
    def stem_channels(self) -> int:
        return self._width(self.stem_width)

    @property
    def first_block_channels(self) -> int:
        return self._width(self.first_block_width)

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return tuple(self._width(s.width) for s in self.stages)

    @property
    def final_expand_channels(self) -> int:
        return self._width(self.final_expand_width)

    @property
    def feature_mix_channels(self) -> int:
        return self._width(self.feature_mix_width)

    def mid_channels(self, in_channels: int, expand: int) -> int:
        """Inverted-bottleneck width of a block: OFA's ``make_divisible(round(in * e), 8)``."""
        return make_divisible(round(in_channels * expand), 8)

    # -- validation ----------------------------------------------------------------------------
    def validate(self, arch: ArchConfig | Mapping[str, Any]) -> ArchConfig:
        """Return ``arch`` as an :class:`ArchConfig` if it fits this space, else raise
        :class:`InvalidArchError` naming the field, the bad value and the allowed values."""
        if not isinstance(arch, ArchConfig):
            from .families import get_family

            arch = get_family(self.family).arch_from_dict(self, arch)
        for name, length, allowed in (
            ("ks", self.n_blocks, (self.kernel_choices,) * self.n_blocks),
            ("e", self.n_blocks, (self.expand_choices,) * self.n_blocks),
            ("d", self.n_stages, self.stage_depth_choices),
        ):
            values = getattr(arch, name)
            if len(values) != length:
                raise InvalidArchError(
                    f"arch field {name!r} has {len(values)} entries; space {self.name!r} needs {length}"
                )
            for i, (v, choices) in enumerate(zip(values, allowed)):
                if v not in choices:
                    raise InvalidArchError(
                        f"arch field {name!r}[{i}] = {v} is not allowed in space {self.name!r}; "
                        f"allowed: {list(choices)}"
                    )
        from .families import get_family

        get_family(self.family).check_extra(self, arch)
        if arch.r not in self.resolutions and arch.r not in self.extra_resolutions:
            extra = self.extra_resolutions
            raise InvalidArchError(
                f"arch resolution r = {arch.r} is not in space {self.name!r}; allowed: "
                f"{_describe_values(self.resolutions)}"
                + (f", or {_describe_values(extra)} to evaluate" if extra else "")
            )
        return arch

    def contains(self, arch: ArchConfig) -> bool:
        try:
            self.validate(arch)
        except InvalidArchError:
            return False
        return True

    # -- construction --------------------------------------------------------------------------
    def uniform(self, ks: int, e: int, d: int, r: int | None = None) -> ArchConfig:
        """The same kernel, expand ratio and depth everywhere (how MobileNets are scaled by hand)."""
        r = max(self.resolutions) if r is None else r
        depths = tuple(_nearest(d, s.depths) if s.depths else d for s in self.stages)
        return self.validate(ArchConfig((ks,) * self.n_blocks, (e,) * self.n_blocks, depths, r))

    def max_arch(self) -> ArchConfig:
        return self._extreme_arch(largest=True)

    def min_arch(self) -> ArchConfig:
        return self._extreme_arch(largest=False)

    def _extreme_arch(self, largest: bool) -> ArchConfig:
        """Every choice at its largest (smallest), each stage at its own deepest (shallowest)."""
        from .families import get_family

        pick = max if largest else min
        n = self.n_blocks
        arch = ArchConfig(
            (pick(self.kernel_choices),) * n,
            (pick(self.expand_choices),) * n,
            tuple(pick(c) for c in self.stage_depth_choices),
            pick(self.resolutions),
            get_family(self.family).extreme_extra(self, largest),
        )
        return self.validate(arch)

    def sample(self, rng: int | np.random.Generator | None = None) -> ArchConfig:
        """A uniformly random architecture (every choice independent, as OFA samples)."""
        rng = as_rng(rng)
        return self._fill_unused(
            ArchConfig(
                ks=tuple(int(v) for v in rng.choice(self.kernel_choices, self.n_blocks)),
                e=tuple(int(v) for v in rng.choice(self.expand_choices, self.n_blocks)),
                d=self._own_depths(rng.choice(self.depth_choices, self.n_stages), rng),
                r=int(rng.choice(self.resolutions)),
                extra=self._family().sample_extra(self, rng),
            )
        )

    def _family(self) -> Any:
        from .families import get_family

        return get_family(self.family)

    def _fill_unused(self, arch: ArchConfig) -> ArchConfig:
        """``arch`` with the smallest kernel and expand ratio in the slots no depth runs (the
        slots beyond a stage's own depth choices), so equal networks are equal archs."""
        if not any(s.depths for s in self.stages):
            return arch
        used = set(self.slots())
        ks = tuple(v if i in used else min(self.kernel_choices) for i, v in enumerate(arch.ks))
        e = tuple(v if i in used else min(self.expand_choices) for i, v in enumerate(arch.e))
        return dataclasses.replace(arch, ks=ks, e=e)

    def _own_depths(
        self, depths: Sequence[int], rng: np.random.Generator, hit: Sequence[bool] | None = None
    ) -> tuple[int, ...]:
        """``depths`` drawn from the space's choices, redrawn from a stage's own choices where it
        has them (and ``hit`` says the stage was drawn; a one-choice stage takes its value)."""
        out = [int(v) for v in depths]
        for s, stage in enumerate(self.stages):
            if stage.depths and (hit is None or hit[s] or out[s] not in stage.depths):
                own = stage.depths
                out[s] = own[0] if len(own) == 1 else int(own[rng.integers(len(own))])
        return tuple(out)

    def mutate(
        self,
        arch: ArchConfig,
        rng: int | np.random.Generator | None = None,
        prob: float = 0.1,
        resolution_prob: float = 0.5,
    ) -> ArchConfig:
        """Resample each kernel, expand ratio and depth with probability ``prob`` and the
        resolution with probability ``resolution_prob`` (OFA's evolutionary mutation)."""
        rng = as_rng(rng)

        def resample(values: tuple[int, ...], choices: tuple[int, ...]) -> tuple[int, ...]:
            hit = rng.random(len(values)) < prob
            fresh = rng.choice(choices, len(values))
            return tuple(int(f) if h else v for v, f, h in zip(values, fresh, hit))

        r = int(rng.choice(self.resolutions)) if rng.random() < resolution_prob else arch.r
        ks = resample(arch.ks, self.kernel_choices)
        e = resample(arch.e, self.expand_choices)
        d = resample(arch.d, self.depth_choices)
        if any(s.depths for s in self.stages):
            d = self._own_depths(d, rng, [a != b for a, b in zip(d, arch.d)])
        extra = self._family().mutate_extra(self, arch.extra, rng, prob)
        return self._fill_unused(ArchConfig(ks=ks, e=e, d=d, r=r, extra=extra))

    def crossover(
        self, a: ArchConfig, b: ArchConfig, rng: int | np.random.Generator | None = None
    ) -> ArchConfig:
        """Each gene (kernel, expand, depth, resolution) taken from one parent at random."""
        rng = as_rng(rng)

        def mix(x: tuple[int, ...], y: tuple[int, ...]) -> tuple[int, ...]:
            pick = rng.random(len(x)) < 0.5
            return tuple(u if p else v for u, v, p in zip(x, y, pick))

        return ArchConfig(
            ks=mix(a.ks, b.ks),
            e=mix(a.e, b.e),
            d=mix(a.d, b.d),
            r=a.r if rng.random() < 0.5 else b.r,
            extra=mix(a.extra, b.extra) if a.extra else (),
        )

    def restrict(
        self,
        kernel_choices: Sequence[int] | None = None,
        expand_choices: Sequence[int] | None = None,
        depth_choices: Sequence[int] | None = None,
        resolutions: Sequence[int] | None = None,
    ) -> SpaceSpec:
        """A sub-space with fewer choices (e.g. a progressive-shrinking stage). The network's shape
        (slots per stage) is unchanged; every given choice must already be in this space."""
        changes: dict[str, Any] = {"max_depth": self.max_depth}
        for name, values in (
            ("kernel_choices", kernel_choices),
            ("expand_choices", expand_choices),
            ("depth_choices", depth_choices),
            ("resolutions", resolutions),
        ):
            if values is None:
                continue
            allowed = getattr(self, name)
            bad = sorted(set(int(v) for v in values) - set(allowed))
            if bad:
                raise ConfigError(
                    f"{name} {bad} are not in space {self.name!r}; allowed: {list(allowed)}"
                )
            changes[name] = tuple(values)
        return dataclasses.replace(self, **changes)

    def arch_from_ofa_net_config(self, config: Mapping[str, Any], r: int) -> ArchConfig:
        """The arch of a static subnet saved as OFA's ``net.config`` (``{"blocks": [...]}``); such
        files carry no resolution, so ``r`` is given. A net of another family than this space's
        is refused naming both (see :func:`ofabench.families.detect_net_config_family`)."""
        from .families import check_net_config_family, get_family

        check_net_config_family(config, self)
        return get_family(self.family).arch_from_net_config(self, config, r)

    # -- geometry ------------------------------------------------------------------------------
    def active_blocks(self, arch: ArchConfig) -> list[tuple[int, int, int, int]]:
        """``(stage, slot, kernel, expand)`` of every block a subnet runs, in order."""
        out = []
        for s, depth in enumerate(arch.d):
            for j in range(depth):
                slot = s * self.max_depth + j
                out.append((s, slot, arch.ks[slot], arch.e[slot]))
        return out

    def layers(self, arch: ArchConfig) -> list[LayerGeom]:
        """The layers of a subnet with their shapes, stem to classifier (the family's layout)."""
        from .families import get_family

        return get_family(self.family).layers(self, self.validate(arch))

    def mbv3_layers(self, arch: ArchConfig) -> list[LayerGeom]:
        """The OFA-MobileNetV3 layout: h-swish stem, MBConv blocks, final expand, pooling,
        feature mix (1x1, no BN), classifier."""
        first_act = self.stages[0].act if self.stages else "relu"
        out = self.body_layers(
            arch, "h_swish", first_act, self.stem_channels == self.first_block_channels
        )
        hw, channels = out[-1].out_hw, out[-1].out_c
        out.append(
            LayerGeom("final_expand", hw, channels, self.final_expand_channels, act="h_swish")
        )
        out.append(LayerGeom("pool", hw, self.final_expand_channels, self.final_expand_channels))
        out.append(
            LayerGeom(
                "feature_mix",
                1,
                self.final_expand_channels,
                self.feature_mix_channels,
                act="h_swish",
            )
        )
        out.append(LayerGeom("classifier", 1, self.feature_mix_channels, self.n_classes))
        return out

    def body_layers(
        self, arch: ArchConfig, stem_act: str, first_act: str, first_residual: bool
    ) -> list[LayerGeom]:
        """Stem, the fixed first block (expand ratio 1, kernel 3) and the elastic blocks ``arch``
        runs: the part every MBConv family shares."""
        hw = arch.r
        stem = LayerGeom(
            "stem",
            hw,
            self.in_channels,
            self.stem_channels,
            kernel=3,
            stride=self.stem_stride,
            act=stem_act,
        )
        hw = stem.out_hw
        first = LayerGeom(
            "mbconv",
            hw,
            self.stem_channels,
            self.first_block_channels,
            mid=self.stem_channels,
            kernel=3,
            stride=1,
            se=False,
            act=first_act,
            residual=first_residual,
            has_expand=False,
        )
        out = [stem, first]
        channels = self.first_block_channels
        for s, slot_j, k, e in self.active_blocks(arch):
            stage = self.stages[s]
            j = slot_j - s * self.max_depth
            stride = stage.stride if j == 0 else 1
            out_c = self.stage_channels[s]
            out.append(
                LayerGeom(
                    "mbconv",
                    hw,
                    channels,
                    out_c,
                    mid=self.mid_channels(channels, e),
                    kernel=k,
                    stride=stride,
                    se=stage.se,
                    act=stage.act,
                    residual=stride == 1 and channels == out_c,
                )
            )
            hw, channels = out[-1].out_hw, out_c
        return out

    def slots(self) -> list[int]:
        """The block slots some depth choice runs (the slots a supernet has blocks for), in order;
        a stage with fewer depth choices than ``max_depth`` leaves the rest of its slots unused."""
        return [
            s * self.max_depth + j
            for s, stage in enumerate(self.stages)
            for j in range(max(stage.depths) if stage.depths else self.max_depth)
        ]

    # -- files ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stages"] = [_stage_dict(s) for s in self.stages]
        for key in ("kernel_choices", "expand_choices", "depth_choices", "resolutions"):
            data[key] = list(data[key])
        # fields newer than schema 1 are written only when set, so older files (and their
        # fingerprints) stay what they were
        if self.family == DEFAULT_FAMILY:
            del data["family"]
        if self.extra_resolutions:
            data["extra_resolutions"] = list(self.extra_resolutions)
        else:
            del data["extra_resolutions"]
        if self.width_choices:
            data["width_choices"] = list(self.width_choices)
        else:
            del data["width_choices"]
        return {"schema_version": SCHEMA_VERSION, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpaceSpec:
        data = dict(data)
        data.pop("schema_version", None)
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(f"unknown space field(s) {unknown}; allowed: {sorted(allowed)}")
        if "stages" in data:
            if not isinstance(data["stages"], (list, tuple)):
                raise ConfigError(f"space field 'stages' must be a list, got {data['stages']!r}")
            data["stages"] = tuple(_stage(s) for s in data["stages"])
        _check_scalars(cls, data)
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"bad space description: {exc}") from exc

    def fingerprint(self) -> str:
        """A short stable hash of everything that shapes the supernet's weights."""
        import hashlib

        shape = self.to_dict()
        for key in ("name", "resolutions", "dropout", "extra_resolutions"):
            shape.pop(key, None)
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:12]


def _stage_dict(stage: StageSpec) -> dict[str, Any]:
    data = dataclasses.asdict(stage)
    if stage.depths:
        data["depths"] = list(stage.depths)
    else:
        del data["depths"]
    return data


def _nearest(value: int, choices: Sequence[int]) -> int:
    return value if value in choices else min(choices, key=lambda c: (abs(c - value), c))


def _stage(value: StageSpec | Mapping[str, Any]) -> StageSpec:
    if isinstance(value, StageSpec):
        stage = value
    else:
        try:
            stage = StageSpec(**value)
        except TypeError as exc:
            raise ConfigError(f"bad stage {value!r}: needs width, stride, act, se") from exc
    if stage.depths != ():
        depths = _choices("stage depths", stage.depths)
        stage = dataclasses.replace(stage, depths=depths)
    if stage.act not in ACTIVATIONS:
        raise ConfigError(
            f"stage activation {stage.act!r} is unknown; allowed: {list(ACTIVATIONS)}"
        )
    if stage.stride not in (1, 2):
        raise ConfigError(f"stage stride must be 1 or 2, got {stage.stride}")
    return stage


def _check_scalars(cls: type, data: dict[str, Any]) -> None:
    """Type-check (and normalise in place) the scalar fields of a space description."""
    import typing

    from .typed_config import checked

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in data and typing.get_origin(hints[f.name]) is not tuple:
            data[f.name] = checked("", f, hints[f.name], data[f.name])


def _choices(name: str, values: Any) -> tuple[int, ...]:
    """A space's choice list as sorted unique positive integers (ConfigError otherwise)."""
    ok = isinstance(values, (list, tuple)) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in values
    )
    if not ok:
        raise ConfigError(
            f"space field {name!r} must be a list of positive integers, got {values!r}"
        )
    if not values:
        raise ConfigError(f"space field {name!r} must list at least one value")
    return tuple(sorted({int(v) for v in values}))


def _width_choices(values: Any) -> tuple[float, ...]:
    ok = isinstance(values, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values
    )
    if not ok:
        raise ConfigError(f"space field 'width_choices' must list positive numbers, got {values!r}")
    return tuple(sorted({float(v) for v in values}))


def _describe_values(values: tuple[int, ...]) -> str:
    steps = {b - a for a, b in zip(values, values[1:])}
    if len(values) > 4 and len(steps) == 1:
        return f"{values[0]}..{values[-1]} in steps of {steps.pop()}"
    return str(list(values))


# -- presets ---------------------------------------------------------------------------------------
def _small_input(width_mult: float = 1.0, in_channels: int = 1, n_classes: int = 10) -> SpaceSpec:
    return SpaceSpec(
        name="small32" if width_mult == 1.0 else f"small32_w{width_mult:g}",
        width_mult=width_mult,
        in_channels=in_channels,
        n_classes=n_classes,
        stem_stride=1,
        resolutions=(24, 28, 32),
    )


# OFA's published specialised nets were fine-tuned at up to 260 px: the ImageNet presets accept
# those resolutions to evaluate a net (sampling, tables and predictors keep to ``resolutions``).
OFA_EVAL_RESOLUTIONS = tuple(range(228, 261, 4))

SPACE_PRESETS = {
    "ofa_mbv3_w1.0": lambda: SpaceSpec(extra_resolutions=OFA_EVAL_RESOLUTIONS),
    "ofa_mbv3_w1.2": lambda: SpaceSpec(
        name="ofa_mbv3_w1.2", width_mult=1.2, extra_resolutions=OFA_EVAL_RESOLUTIONS
    ),
    "small32": _small_input,
    "small32_w0.5": lambda: _small_input(0.5),
}
"""The MobileNetV3 family's presets (every family's: :func:`list_spaces`)."""


def list_spaces() -> list[str]:
    """Every preset name of every registered space family."""
    from .families import all_presets

    return sorted(all_presets())


def get_space(name_or_path: str | Path | SpaceSpec = "ofa_mbv3_w1.0") -> SpaceSpec:
    """A preset by name (see :func:`list_spaces`), or a space saved as JSON/YAML at a path."""
    from .families import all_presets

    if isinstance(name_or_path, SpaceSpec):
        return name_or_path
    key = str(name_or_path)
    presets = all_presets()
    if key in presets:
        return presets[key]()
    path = Path(key)
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        from .files import read_mapping_file

        data = read_mapping_file(path, "space file")
        try:
            return SpaceSpec.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"space file {path}: {exc}") from exc
    raise ConfigError(
        f"unknown space {key!r}; presets: {sorted(presets)}, or a .json/.yaml space file"
    )


def load_arch(
    path: str | Path, space: SpaceSpec | None = None, resolution: int | None = None
) -> ArchConfig:
    """Read an arch file and validate it against ``space``: ofabench JSON, an OFA arch dict, or
    an OFA ``net.config`` (see :func:`arch_from_data`)."""
    from .files import read_text

    text = read_text(path, "arch file", InvalidArchError)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArchError(f"arch file {path} is not valid JSON: {exc}") from exc
    return arch_from_data(data, space, resolution, Path(path))


def arch_from_data(
    data: Any,
    space: SpaceSpec | None = None,
    resolution: int | None = None,
    path: Path | None = None,
) -> ArchConfig:
    """An arch from parsed JSON: ofabench's or OFA's dict (``resolution`` used when it has no
    ``r``), or an OFA ``net.config`` (family detected from its blocks; resolution
    ``resolution``, else the ``image_size`` of a ``run.config`` beside ``path``), validated
    against ``space`` when given."""
    if isinstance(data, Mapping) and "blocks" in data:
        from .families import arch_from_net_config_file

        return arch_from_net_config_file(data, path, space, resolution)
    if isinstance(data, Mapping) and resolution is not None and "r" not in data:
        data = {**data, "r": resolution}
    if space is not None:
        return space.validate(data)
    return ArchConfig.from_dict(data)


@dataclass(frozen=True, eq=False)
class ArchBatch:
    """A population of architectures as integer arrays, for vectorised prediction and search:
    ``ks``/``e`` of shape (N, n_blocks), ``d`` (N, n_stages), ``r`` (N,); ``extra`` (N, n_extra)
    the family's genes beyond those (None: none, as for MobileNetV3 and ProxylessNAS)."""

    ks: np.ndarray
    e: np.ndarray
    d: np.ndarray
    r: np.ndarray
    extra: np.ndarray | None = None

    @classmethod
    def from_archs(cls, archs: Sequence[ArchConfig]) -> ArchBatch:
        if not archs:
            raise InvalidArchError("an ArchBatch needs at least one architecture")
        return cls(
            ks=np.array([a.ks for a in archs], dtype=np.int64),
            e=np.array([a.e for a in archs], dtype=np.int64),
            d=np.array([a.d for a in archs], dtype=np.int64),
            r=np.array([a.r for a in archs], dtype=np.int64),
            extra=np.array([a.extra for a in archs], dtype=np.int64) if archs[0].extra else None,
        )

    def __len__(self) -> int:
        return len(self.r)

    def __getitem__(self, index: int) -> ArchConfig:
        extra = () if self.extra is None else tuple(self.extra[index])
        return ArchConfig(
            tuple(self.ks[index]),
            tuple(self.e[index]),
            tuple(self.d[index]),
            int(self.r[index]),
            extra,
        )

    def to_archs(self) -> list[ArchConfig]:
        return [self[i] for i in range(len(self))]

    def active_mask(self, space: SpaceSpec) -> np.ndarray:
        """(N, n_blocks) booleans: which block slots each subnet runs."""
        slot_in_stage = np.arange(space.n_blocks) % space.max_depth
        depth_of_slot = np.repeat(self.d, space.max_depth, axis=1)
        return slot_in_stage[None, :] < depth_of_slot

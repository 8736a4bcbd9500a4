"""The OFA-ResNet50 shape (the reference package's ``OFAResNets``): geometry and arch forms.

Facts, from ``ofa/imagenet_classification/elastic_nn/networks/ofa_resnets.py`` and
``networks/resnets.py``: an input stem of three 3x3 conv + BN + ReLU layers (the first with
stride 2 to ``make_divisible(64 w // 2)`` channels, the second a residual block the stem's depth
may skip, the third to ``make_divisible(64 w)``), a 3x3/2 max pooling, four stages of bottleneck
blocks (base depths 2/2/4/2 plus 0..2 extra, widths 256/512/1024/2048 x w, first strides
1/2/2/2), global average pooling and a linear classifier. A block is 1x1 conv -> 3x3 conv
(stride) -> 1x1 conv, each with BN, ReLU after the first two and after the sum; its middle width
is ``make_divisible(round(out * e))``; a stage's first block adds a downsample branch (average
pooling of the stride, ``ceil_mode``, then 1x1 conv + BN), the others the identity. BN eps 1e-5,
no dropout. Width multipliers are chosen per part (stem middle, stem output, each stage).

OFA's arch dict is ``{"d": [stem, s1..s4], "e": [18 ratios], "w": [6 indices]}``: ``d`` counts a
stage's extra blocks (the stem runs its residual conv only when ``d[0]`` is the largest). In
ofabench an arch keeps the slot layout of the other families (:class:`~ofabench.space.ArchConfig`):
``d`` is the number of blocks a stage runs (base + extra), ``e`` an expand ratio in percent per
slot (six slots a stage; unused slots hold the smallest ratio), ``ks`` all 3, and ``extra`` is
``(stem blocks run (0 or 1), w_stem_mid, w_stem_out, w_1, w_2, w_3, w_4)``. Pure Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidArchError
from ..space import (
    OFA_EVAL_RESOLUTIONS,
    ArchBatch,
    ArchConfig,
    LayerGeom,
    SpaceSpec,
    StageSpec,
    make_divisible,
)
from . import SpaceFamily, register_family

if TYPE_CHECKING:
    from torch import nn

    from ..latency.table import OpSpec

BASE_DEPTHS = (2, 2, 4, 2)
STAGE_WIDTHS = (256, 512, 1024, 2048)
STAGE_STRIDES = (1, 2, 2, 2)
STEM_WIDTH = 64
EXTRA_GENES = (
    "stem_depth",
    "w_stem_mid",
    "w_stem_out",
    "w_stage1",
    "w_stage2",
    "w_stage3",
    "w_stage4",
)


@dataclass(frozen=True)
class ResNetShape:
    """The choices of an OFA-ResNet supernet: extra depths, expand ratios (percent), width
    multipliers; ``width_mult`` scales every width before them (1.0: OFA's ``ofa_resnet50``)."""

    width_mult: float = 1.0
    in_channels: int = 3
    n_classes: int = 1000
    extra_depths: tuple[int, ...] = (0, 1, 2)
    expand_percents: tuple[int, ...] = (20, 25, 35)
    width_choices: tuple[float, ...] = (0.65, 0.8, 1.0)

    @classmethod
    def from_space(cls, space: SpaceSpec) -> ResNetShape:
        return cls(
            width_mult=space.width_mult,
            in_channels=space.in_channels,
            n_classes=space.n_classes,
            extra_depths=tuple(d - BASE_DEPTHS[0] for d in space.stage_depth_choices[0]),
            expand_percents=space.expand_choices,
            width_choices=space.width_choices,
        )

    @property
    def max_depth(self) -> int:
        return max(BASE_DEPTHS) + max(self.extra_depths)

    @property
    def n_slots(self) -> int:
        return len(BASE_DEPTHS) * self.max_depth

    def stage_depths(self, s: int) -> tuple[int, ...]:
        return tuple(BASE_DEPTHS[s] + x for x in self.extra_depths)

    def slots(self) -> list[int]:
        """The slots of the supernet's blocks, in order (18 of 24 for ResNet50)."""
        top = max(self.extra_depths)
        return [s * self.max_depth + j for s, b in enumerate(BASE_DEPTHS) for j in range(b + top)]

    def _width(self, base: int, w: int) -> int:
        return make_divisible(base * self.width_mult * self.width_choices[w], 8)

    def stem_out_channels(self, w: int) -> int:
        return self._width(STEM_WIDTH, w)

    def stem_mid_channels(self, w: int) -> int:
        return make_divisible(self.stem_out_channels(w) // 2, 8)

    def stage_channels(self, s: int, w: int) -> int:
        return self._width(STAGE_WIDTHS[s], w)

    @staticmethod
    def mid_channels(out_channels: int, percent: int) -> int:
        return make_divisible(round(out_channels * (percent / 100)), 8)

    # -- archs -----------------------------------------------------------------------------------
    def validate(self, arch: ArchConfig) -> ArchConfig:
        n_w = len(self.width_choices)
        rules = (
            ("ks", (3,), self.n_slots),
            ("e", self.expand_percents, self.n_slots),
            ("extra", None, len(EXTRA_GENES)),
        )
        for name, allowed, length in rules:
            values = getattr(arch, name)
            if len(values) != length:
                raise InvalidArchError(
                    f"OFA-ResNet arch field {name!r} has {len(values)} entries; needs {length}"
                )
            for i, v in enumerate(values):
                ok = allowed or ((0, 1) if name == "extra" and i == 0 else tuple(range(n_w)))
                if v not in ok:
                    what = EXTRA_GENES[i] if name == "extra" else f"{name}[{i}]"
                    raise InvalidArchError(
                        f"OFA-ResNet arch {what} = {v} is not allowed; allowed: {list(ok)}"
                    )
        if len(arch.d) != len(BASE_DEPTHS):
            raise InvalidArchError(f"OFA-ResNet arch field 'd' needs {len(BASE_DEPTHS)} entries")
        for s, d in enumerate(arch.d):
            if d not in self.stage_depths(s):
                raise InvalidArchError(
                    f"OFA-ResNet arch d[{s}] = {d} is not allowed; allowed: "
                    f"{list(self.stage_depths(s))} (stage base depth {BASE_DEPTHS[s]} + extra)"
                )
        return arch

    def uniform(self, extra_depth: int, percent: int, w: int, r: int) -> ArchConfig:
        stem_depth = int(extra_depth == max(self.extra_depths))
        return self.validate(
            ArchConfig(
                ks=(3,) * self.n_slots,
                e=(percent,) * self.n_slots,
                d=tuple(
                    self.stage_depths(s)[self.extra_depths.index(extra_depth)] for s in range(4)
                ),
                r=r,
                extra=(stem_depth,) + (w,) * 6,
            )
        )

    def sample(self, rng: np.random.Generator, r: int) -> ArchConfig:
        """A random arch, as OFA samples one (the stem at its largest or smallest depth)."""
        n_w = len(self.width_choices)
        percents = [min(self.expand_percents)] * self.n_slots
        for slot in self.slots():
            percents[slot] = int(rng.choice(self.expand_percents))
        depths = tuple(int(rng.choice(self.stage_depths(s))) for s in range(len(BASE_DEPTHS)))
        extra = (int(rng.integers(2)), *(int(v) for v in rng.integers(n_w, size=6)))
        return ArchConfig((3,) * self.n_slots, tuple(percents), depths, r, extra)

    def to_ofa_dict(self, arch: ArchConfig) -> dict[str, Any]:
        """OFA's ``set_active_subnet`` arguments (plus ``r``) for ``arch``."""
        top = max(self.extra_depths)
        return {
            "d": [top if arch.extra[0] else min(self.extra_depths)]
            + [d - b for d, b in zip(arch.d, BASE_DEPTHS)],
            "e": [arch.e[slot] / 100 for slot in self.slots()],
            "w": list(arch.extra[1:]),
            "r": [arch.r],
        }

    def arch_from_ofa_dict(self, data: Mapping[str, Any], r: int) -> ArchConfig:
        """An arch from OFA's dict (``d`` 5 extra depths, ``e`` 18 ratios, ``w`` 6 indices)."""
        try:
            d, e, w = list(data["d"]), list(data["e"]), list(data["w"])
        except (KeyError, TypeError) as exc:
            raise InvalidArchError(
                "an OFA-ResNet arch dict needs d (5 depths), e (18 ratios), w (6 indices)"
            ) from exc
        slots = self.slots()
        if len(d) != 5 or len(e) != len(slots) or len(w) != 6:
            raise InvalidArchError(
                f"an OFA-ResNet arch dict has 5 d, {len(slots)} e and 6 w entries; got "
                f"{len(d)}, {len(e)}, {len(w)}"
            )
        percents = [min(self.expand_percents)] * self.n_slots
        for slot, ratio in zip(slots, e):
            percents[slot] = _percent(ratio)
        depths = tuple(b + x for b, x in zip(BASE_DEPTHS, d[1:]))
        stem = int(d[0] == max(self.extra_depths))
        return self.validate(ArchConfig((3,) * self.n_slots, percents, depths, r, (stem, *w)))

    # -- geometry --------------------------------------------------------------------------------
    def layers(self, arch: ArchConfig) -> list[LayerGeom]:
        """Stem convs, max pooling, bottleneck blocks, pooling, classifier of ``arch``."""
        stem_depth, w_mid, w_out, *w_stages = arch.extra
        mid, out_c = self.stem_mid_channels(w_mid), self.stem_out_channels(w_out)
        hw = arch.r
        out = [LayerGeom("stem", hw, self.in_channels, mid, kernel=3, stride=2)]
        hw = out[-1].out_hw
        if stem_depth:
            out.append(LayerGeom("stem", hw, mid, mid, kernel=3, residual=True))
        out.append(LayerGeom("stem", hw, mid, out_c, kernel=3))
        out.append(LayerGeom("maxpool", hw, out_c, out_c, kernel=3, stride=2))
        hw, channels = out[-1].out_hw, out_c
        for s, depth in enumerate(arch.d):
            width = self.stage_channels(s, w_stages[s])
            for j in range(depth):
                stride = STAGE_STRIDES[s] if j == 0 else 1
                block = LayerGeom(
                    "bottleneck",
                    hw,
                    channels,
                    width,
                    mid=self.mid_channels(width, arch.e[s * self.max_depth + j]),
                    kernel=3,
                    stride=stride,
                    residual=j > 0,  # the first block of a stage has the downsample branch
                )
                out.append(block)
                hw, channels = block.out_hw, width
        out.append(LayerGeom("pool", hw, channels, channels))
        out.append(LayerGeom("classifier", 1, channels, self.n_classes))
        return out


class ResNetCostTables:
    """A subnet's sum of per-layer costs, gathered for whole batches: tables of the stem (by
    stem depth, its two width indices), of every supernet block (by expand ratio, input and
    output width index: a stage's first block reads the previous stage's width) and of the head
    (by the last stage's width), one per resolution; ``cost(layer, r)`` gives a layer's cost."""

    def __init__(
        self,
        space: SpaceSpec,
        resolutions: Sequence[int],
        cost: Callable[[LayerGeom, int], float],
    ) -> None:
        shape = ResNetShape.from_space(space)
        self.shape, self.resolutions = shape, tuple(resolutions)
        n_w, n_e = len(shape.width_choices), len(shape.expand_percents)
        n_r, n_b = len(self.resolutions), len(shape.slots())
        self.stem = np.full((n_r, 2, n_w, n_w), np.nan)
        self.blocks = np.full((n_r, n_b, n_e, n_w, n_w), np.nan)
        self.head = np.full((n_r, n_w), np.nan)
        top = max(shape.extra_depths)
        slots = [(s, j) for s, b in enumerate(BASE_DEPTHS) for j in range(b + top)]
        self._stage = np.array([s for s, _ in slots])
        self._in_stage = np.array([j for _, j in slots])
        self._slot = self._stage * shape.max_depth + self._in_stage
        for ri, r in enumerate(self.resolutions):
            for arch in covering_archs(shape, r):
                self._fill(ri, arch, [cost(layer, r) for layer in shape.layers(arch)])
        unused = (self._in_stage > 0)[:, None, None] & ~np.eye(n_w, dtype=bool)[None, :, :]
        self.blocks[:, np.broadcast_to(unused[:, None], self.blocks.shape[1:])] = 0.0  # in == out
        if np.isnan(self.stem).any() or np.isnan(self.blocks).any() or np.isnan(self.head).any():
            raise AssertionError("covering_archs left a cost unset")

    def _fill(self, ri: int, arch: ArchConfig, costs: list[float]) -> None:
        stem_depth, w_mid, w_out, *w_stages = arch.extra
        n_stem = 2 + stem_depth + 1  # convs and max pooling
        self.stem[ri, stem_depth, w_mid, w_out] = sum(costs[:n_stem])
        self.head[ri, w_stages[-1]] = sum(costs[-2:])
        e = self.shape.expand_percents.index(arch.e[0])
        for b, cost in enumerate(costs[n_stem:-2]):
            s, j = self._stage[b], self._in_stage[b]
            w_in = w_stages[s] if j else (w_stages[s - 1] if s else w_out)
            self.blocks[ri, b, e, w_in, w_stages[s]] = cost

    def __call__(self, batch: ArchBatch) -> np.ndarray | None:
        """The cost of every subnet of ``batch``; None if a value is outside the tables."""
        extra, d = batch.extra, batch.d
        r = np.searchsorted(self.resolutions, batch.r)
        e_choices = np.array(self.shape.expand_percents)
        e = np.searchsorted(e_choices, batch.e[:, self._slot])
        try:
            ok = (np.array(self.resolutions)[r] == batch.r).all()
            ok &= (e_choices[e] == batch.e[:, self._slot]).all()
        except IndexError:
            return None
        if not ok or extra is None:
            return None
        w_out = extra[:, 3:][:, self._stage]
        w_prev = np.concatenate([extra[:, 2:3], extra[:, 3:6]], axis=1)[:, self._stage]
        w_in = np.where(self._in_stage[None, :] == 0, w_prev, w_out)
        active = self._in_stage[None, :] < d[:, self._stage]
        rows = r[:, None]
        block = self.blocks[rows, np.arange(len(self._slot))[None, :], e, w_in, w_out]
        stem = self.stem[r, extra[:, 0], extra[:, 1], extra[:, 2]]
        return stem + self.head[r, extra[:, 6]] + (block * active).sum(axis=1)


def covering_archs(shape: ResNetShape, resolution: int) -> list[ArchConfig]:
    """Archs whose layers hold every layer any subnet runs at ``resolution``: deepest, uniform
    expand ratio, both stem depths, width indices ``(a + i b) mod n`` along the six width genes
    (every value pair on every neighbouring pair of genes)."""
    n_w = len(shape.width_choices)
    depths = tuple(max(shape.stage_depths(s)) for s in range(len(BASE_DEPTHS)))
    out = []
    for percent in shape.expand_percents:
        for stem_depth in (0, 1):
            for a in range(n_w):
                for b in range(n_w):
                    widths = tuple((a + i * b) % n_w for i in range(6))
                    extra = (stem_depth, *widths)
                    out.append(
                        ArchConfig(
                            (3,) * shape.n_slots,
                            (percent,) * shape.n_slots,
                            depths,
                            resolution,
                            extra,
                        )
                    )
    return out


def _percent(ratio: Any) -> int:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise InvalidArchError(f"an OFA-ResNet expand ratio is a number, got {ratio!r}")
    return int(round(float(ratio) * 100))


# -- the family ------------------------------------------------------------------------------------
RESNET_STAGES = tuple(
    StageSpec(width, stride, "relu", False, depths=tuple(b + x for x in (0, 1, 2)))
    for width, stride, b in zip(STAGE_WIDTHS, STAGE_STRIDES, BASE_DEPTHS)
)
_NOT_YET = "{} (only counting, export, evaluation and training with every dimension elastic)"


def resnet_space(name: str = "ofa_resnet50", width_mult: float = 1.0, **changes: Any) -> SpaceSpec:
    """OFA's ``ofa_resnet50`` space (expand 0.2/0.25/0.35 as percent, widths 0.65/0.8/1.0)."""
    fields: dict[str, Any] = {
        "name": name,
        "family": "resnet",
        "width_mult": width_mult,
        "stem_width": STEM_WIDTH,
        "first_block_width": STEM_WIDTH,
        "stages": RESNET_STAGES,
        "final_expand_width": 0,
        "feature_mix_width": 0,
        "kernel_choices": (3,),
        "expand_choices": (20, 25, 35),
        "depth_choices": (2, 3, 4),
        "max_depth": max(BASE_DEPTHS) + 2,
        "dropout": 0.0,
        "extra_resolutions": OFA_EVAL_RESOLUTIONS,
        "width_choices": (0.65, 0.8, 1.0),
    }
    return SpaceSpec(**{**fields, **changes})


@register_family
class ResNetFamily(SpaceFamily):
    name = "resnet"
    title = "OFA-ResNet50"
    lut_block_flags = ()
    lut_additive = False
    encoder_layout = "ofa_resnet"
    unsupported = {
        "shrinking": "progressive-shrinking stages that fix kernel, depth or expand ratio",
        "net_config": "writing an OFA net.config",
    }

    def presets(self) -> Mapping[str, Callable[[], SpaceSpec]]:
        return {
            "ofa_resnet50": resnet_space,
            # for 28-32 px grey data sets, like proxyless_small32_w0.5
            "resnet_small32_w0.25": lambda: resnet_space(
                "resnet_small32_w0.25",
                0.25,
                in_channels=1,
                n_classes=10,
                resolutions=(24, 28, 32),
                extra_resolutions=(),
            ),
        }

    def layers(self, space: SpaceSpec, arch: ArchConfig) -> list[LayerGeom]:
        return ResNetShape.from_space(space).layers(arch)

    def check_extra(self, space: SpaceSpec, arch: ArchConfig) -> None:
        ResNetShape.from_space(space).validate(arch)

    def extreme_extra(self, space: SpaceSpec, largest: bool) -> tuple[int, ...]:
        w = len(space.width_choices) - 1 if largest else 0
        return (int(largest),) + (w,) * 6

    def sample_extra(self, space: SpaceSpec, rng: Any) -> tuple[int, ...]:
        widths = rng.integers(len(space.width_choices), size=6)
        return (int(rng.integers(2)), *(int(v) for v in widths))

    def extra_choices(self, space: SpaceSpec) -> tuple[tuple[int, ...], ...]:
        return ((0, 1),) + (tuple(range(len(space.width_choices))),) * 6

    def mutate_extra(
        self, space: SpaceSpec, extra: tuple[int, ...], rng: Any, prob: float
    ) -> tuple[int, ...]:
        fresh = self.sample_extra(space, rng)
        hit = rng.random(len(extra)) < prob
        return tuple(f if h else v for v, f, h in zip(extra, fresh, hit))

    def claims_net_config(self, config: Mapping[str, Any]) -> bool:
        """OFA's ``ResNets`` configs: an input stem and bottleneck blocks."""
        blocks = config.get("blocks")
        return isinstance(config.get("input_stem"), list) and isinstance(blocks, list)

    def arch_from_net_config(
        self, space: SpaceSpec, config: Mapping[str, Any], r: int
    ) -> ArchConfig:
        return _arch_from_net_config(ResNetShape.from_space(space), space, config, r)

    def arch_from_dict(self, space: SpaceSpec, data: Any) -> ArchConfig:
        """ofabench's form (``ks/e/d/r/extra``) or OFA's (``d/e/w`` + ``r``)."""
        if isinstance(data, Mapping) and "ks" not in data:
            r = data.get("r", data.get("image_size"))
            if isinstance(r, list) and len(r) == 1:
                r = r[0]
            if r is None:
                raise InvalidArchError("an OFA-ResNet arch dict needs r (the input resolution)")
            return ResNetShape.from_space(space).arch_from_ofa_dict(data, r)
        return ArchConfig.from_dict(data)

    def to_ofa_dict(self, space: SpaceSpec, arch: ArchConfig) -> dict[str, Any]:
        return ResNetShape.from_space(space).to_ofa_dict(space.validate(arch))

    def to_net_config(self, space: SpaceSpec, arch: ArchConfig) -> dict[str, Any]:
        self.require("net_config")
        raise AssertionError("unreachable")

    def supernet(self, space: SpaceSpec) -> nn.Module:
        from ..supernet.ofa_resnet import OFAResNet

        return OFAResNet(ResNetShape.from_space(space), space)

    def static_network(self, space: SpaceSpec, arch: ArchConfig) -> nn.Module:
        from ..supernet.ofa_resnet import ResNet

        return ResNet(space.layers(arch))

    def lut_ops(self, space: SpaceSpec, resolution: int) -> list[OpSpec]:
        """Every op at ``resolution``, from the layers of :func:`covering_archs` (an op depends
        on its own slot and genes and on the width of the layer before it)."""
        from ..latency.table import OpSpec

        shape = ResNetShape.from_space(space)
        ops: dict[str, OpSpec] = {}
        for arch in covering_archs(shape, resolution):
            for layer in shape.layers(arch):
                op = OpSpec.from_layer(layer, self.name)
                ops.setdefault(op.key, op)
        return list(ops.values())

    def cost_tables(
        self,
        space: SpaceSpec,
        resolutions: Sequence[int],
        cost: Callable[[LayerGeom, int], float],
    ) -> ResNetCostTables:
        return ResNetCostTables(space, resolutions, cost)

    def build_op(self, spec: OpSpec) -> nn.Module:
        from ..latency.ops import build_resnet_op

        return build_resnet_op(spec)

    def load_ofa_state_dict(self, model: nn.Module, state_dict: Mapping[str, Any]) -> nn.Module:
        from ..supernet.ofa_resnet import load_ofa_resnet_state_dict

        return load_ofa_resnet_state_dict(model, state_dict)


def _arch_from_net_config(
    shape: ResNetShape, space: SpaceSpec, config: Mapping[str, Any], r: int
) -> ArchConfig:
    """The arch of an OFA ``ResNets`` net.config: the stem's length gives its depth, its widths
    and each stage's (blocks grouped by output width) the width indices."""
    stem, blocks = config.get("input_stem"), config.get("blocks")
    if not isinstance(stem, list) or len(stem) not in (2, 3) or not isinstance(blocks, list):
        raise InvalidArchError("an OFA-ResNet net.config needs input_stem (2 or 3 layers), blocks")
    n_w = range(len(shape.width_choices))
    try:
        mid = _layer(stem[0])["out_channels"]
        out = _layer(stem[-1])["out_channels"]
        w_mid = next(i for i in n_w if shape.stem_mid_channels(i) == mid)
        w_out = next(i for i in n_w if shape.stem_out_channels(i) == out)
        stages: list[list[Mapping[str, Any]]] = []
        for block in blocks:
            if not stages or block["out_channels"] != stages[-1][0]["out_channels"]:
                stages.append([])
            stages[-1].append(block)
        if len(stages) != len(BASE_DEPTHS):
            raise InvalidArchError(f"{len(stages)} stages of blocks (by output width), not 4")
        widths = [
            next(i for i in n_w if shape.stage_channels(s, i) == g[0]["out_channels"])
            for s, g in enumerate(stages)
        ]
        e = [min(shape.expand_percents)] * shape.n_slots
        for s, group in enumerate(stages):
            for j, block in enumerate(group):
                e[s * shape.max_depth + j] = _percent(block["expand_ratio"])
    except (KeyError, TypeError, StopIteration) as exc:
        raise InvalidArchError(
            f"net.config does not fit space {space.name!r} (OFA-ResNet widths "
            f"{list(shape.width_choices)} x {space.width_mult:g}): {type(exc).__name__} {exc}"
        ) from exc
    depths = tuple(len(g) for g in stages)
    arch = ArchConfig((3,) * shape.n_slots, e, depths, r, (len(stem) - 2, w_mid, w_out, *widths))
    return space.validate(arch)


def _layer(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return config["conv"] if config.get("name") == "ResidualBlock" else config

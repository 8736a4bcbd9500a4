"""Space families: the seam between a search space's numbers and the networks they describe.

A :class:`~ofabench.space.SpaceSpec` holds the choices (stages, widths, kernels, expand ratios,
depths, resolutions) and names its ``family``; the family says what a subnet's layers are (stem,
blocks, head, activations), how its supernet and static subnets are built, how OFA's files
(``net.config``, arch dicts, state-dict keys, LUT keys) map onto it. Built-in families:

==========  ===============================================  ==================================
family      OFA supernet                                     presets
==========  ===============================================  ==================================
mbv3        ``OFAMobileNetV3`` (SE, h-swish, final expand)   ofa_mbv3_w1.0, ofa_mbv3_w1.2, small32…
proxyless   ``OFAProxylessNASNets`` (ReLU6, no SE)           ofa_proxyless_d234_e346_k357_w1.3…
resnet      ``OFAResNets`` (bottlenecks, elastic widths)      ofa_resnet50, resnet_small32_w0.25
==========  ===============================================  ==================================

Families register by name (:func:`register_family`, refusing a taken name); third parties add one
through the ``ofabench.space_families`` entry-point group. Everything here is pure Python: the
torch side of a family is imported only when a network is built.
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError, InvalidArchError
from ..registry import Registry, RegistryMessages
from ..space import ArchBatch, ArchConfig, LayerGeom, SpaceSpec

if TYPE_CHECKING:
    from torch import nn

    from ..latency.table import OpSpec

ENTRY_POINT_GROUP = "ofabench.space_families"
BUILTIN_FAMILIES = {
    "mbv3": "ofabench.families.mbv3:MobileNetV3Family",
    "proxyless": "ofabench.families.proxyless:ProxylessFamily",
    "resnet": "ofabench.families.resnet:ResNetFamily",
}
MBCONV_NAMES = frozenset({"MBConvLayer", "MBInvertedConvLayer"})  # the second: older OFA files


class SpaceFamily(ABC):
    """What a family of spaces is made of. Subclasses set the class attributes and implement
    :meth:`presets`, :meth:`layers`, :meth:`claims_net_config` and the torch constructors."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    """What OFA calls the supernet, for messages (``OFA-MobileNetV3``)."""
    bn_eps: ClassVar[float] = 1e-5
    lut_expand_is_ratio: ClassVar[bool] = False
    """LUT keys give a block's expand ratio (ProxylessNAS) rather than its mid channels (MBv3)."""
    lut_block_flags: ClassVar[tuple[str, ...]] = ("se", "hs")
    """The flags after ``idskip`` in a block's LUT key."""
    lut_additive: ClassVar[bool] = True
    """A block's latency-table key depends on its slot and own genes only, so a subnet's cost is
    additive over genes (:meth:`~ofabench.latency.model.LatencyModel.additive_cost`). False when
    it depends on other genes too (OFA-ResNet50: a block's input is the previous stage's elastic
    width); such a family lists its ops in :meth:`lut_ops` and is predicted per arch."""
    encoder_layout: ClassVar[str] = "slots"
    """The accuracy-predictor encoding of the family's archs: ``slots`` (kernel and expand
    one-hots per block slot, :class:`~ofabench.predictor.mlp.ArchEncoder`) or ``ofa_resnet``."""
    ofa_top_level: ClassVar[Mapping[str, str]] = {}
    """OFA module path (normalised) -> ofabench module path, outside the blocks."""
    unsupported: ClassVar[Mapping[str, str]] = {}
    """Features the family lacks yet (``lut``, ``predictor``, ``search``, ``shrinking``) -> what
    to say; :meth:`require` refuses them in one line."""

    def require(self, feature: str) -> None:
        """ConfigError naming the family and ``feature`` if the family does not support it."""
        if feature in self.unsupported:
            raise ConfigError(
                f"space family {self.name!r} ({self.title}) does not support "
                f"{self.unsupported[feature]} yet"
            )

    # -- genes beyond ks/e/d/r (ArchConfig.extra); none by default -------------------------------
    def check_extra(self, space: SpaceSpec, arch: ArchConfig) -> None:
        """InvalidArchError if ``arch.extra`` does not fit ``space`` (called by ``validate``)."""
        if arch.extra:
            raise InvalidArchError(
                f"space {space.name!r} ({self.title}) has no extra arch genes; got extra "
                f"{list(arch.extra)}"
            )

    def extreme_extra(self, space: SpaceSpec, largest: bool) -> tuple[int, ...]:
        """The extra genes of the largest (or smallest) subnet."""
        return ()

    def sample_extra(self, space: SpaceSpec, rng: Any) -> tuple[int, ...]:
        """Random extra genes (draws nothing from ``rng`` when the family has none)."""
        return ()

    def extra_choices(self, space: SpaceSpec) -> tuple[tuple[int, ...], ...]:
        """The choices of each extra gene, in ``ArchConfig.extra`` order (the search's genes)."""
        return ()

    def mutate_extra(
        self, space: SpaceSpec, extra: tuple[int, ...], rng: Any, prob: float
    ) -> tuple[int, ...]:
        return extra

    def lut_ops(self, space: SpaceSpec, resolution: int) -> list[OpSpec]:
        """Every latency-table op a subnet of ``space`` can run at ``resolution`` (needed only
        when :attr:`lut_additive` is False)."""
        raise ConfigError(f"space family {self.name!r} does not list its latency-table ops")

    def cost_tables(
        self,
        space: SpaceSpec,
        resolutions: Sequence[int],
        cost: Callable[[LayerGeom, int], float],
    ) -> Callable[[ArchBatch], Any] | None:
        """For a non-additive family: a function giving the sum of ``cost(layer, r)`` over each
        subnet of a batch (None if a value is outside the space), or None to sum arch by arch."""
        return None

    # -- the space side (pure Python) -----------------------------------------------------------
    @abstractmethod
    def presets(self) -> Mapping[str, Callable[[], SpaceSpec]]:
        """Preset name -> a function building that space."""

    @abstractmethod
    def layers(self, space: SpaceSpec, arch: ArchConfig) -> list[LayerGeom]:
        """The layers of the (validated) subnet ``arch``, stem to classifier."""

    @abstractmethod
    def claims_net_config(self, config: Mapping[str, Any]) -> bool:
        """True if an OFA ``net.config`` describes a network of this family."""

    def arch_from_net_config(
        self, space: SpaceSpec, config: Mapping[str, Any], r: int
    ) -> ArchConfig:
        """The arch of an OFA ``net.config`` of this family (at resolution ``r``)."""
        return mbconv_arch_from_net_config(space, config, r)

    def arch_from_dict(self, space: SpaceSpec, data: Any) -> ArchConfig:
        """An arch from ofabench's or OFA's dict form (not yet validated)."""
        return ArchConfig.from_dict(data)

    def to_ofa_dict(self, space: SpaceSpec, arch: ArchConfig) -> dict[str, Any]:
        """OFA's dict form of ``arch`` (what its ``set_active_subnet(**d)`` takes)."""
        return arch.to_ofa_dict()

    def to_net_config(self, space: SpaceSpec, arch: ArchConfig) -> dict[str, Any]:
        """OFA's ``net.config`` of the static subnet ``arch`` (what OFA's ``build_from_config``
        and OFA's published-net readers take; no resolution in it)."""
        raise ConfigError(f"space family {self.name!r} cannot write an OFA net.config")

    # -- the torch side (imported lazily) ---------------------------------------------------------
    @abstractmethod
    def supernet(self, space: SpaceSpec) -> nn.Module:
        """A freshly initialised elastic supernet of ``space``."""

    @abstractmethod
    def static_network(self, space: SpaceSpec, arch: ArchConfig) -> nn.Module:
        """A freshly initialised static network of the subnet ``arch``."""

    @abstractmethod
    def build_op(self, spec: OpSpec) -> nn.Module:
        """A plain torch module computing one latency-table op (random weights)."""

    def load_ofa_state_dict(self, model: nn.Module, state_dict: Mapping[str, Any]) -> nn.Module:
        """Load a reference-OFA state dict of this family's supernet into ``model``."""
        from ..supernet.ofa_import import load_mbconv_state_dict

        return load_mbconv_state_dict(model, state_dict)

    def default_space(self) -> SpaceSpec:
        return next(iter(self.presets().values()))()


FAMILIES: Registry[SpaceFamily] = Registry(
    "space family",
    SpaceFamily,
    builtin=BUILTIN_FAMILIES,
    entry_point_group=ENTRY_POINT_GROUP,
    messages=RegistryMessages(
        unknown="unknown space family {name!r}; known: {valid_text}",
        taken="space family {name!r} is taken by {existing.__qualname__}",
        nameless="{cls.__qualname__} has no name",
        broken="space family {name!r} ({value}) failed to load: {exc}",
        not_subclass="entry point {value!r} is not an ofabench {base}",
    ),
)


def register_family(cls: type[SpaceFamily]) -> type[SpaceFamily]:
    """Class decorator: make ``cls`` available as ``cls.name``; a taken name is refused."""
    return FAMILIES.register(cls)


def list_families() -> list[str]:
    return FAMILIES.names()


def get_family(name: str) -> SpaceFamily:
    """The family called ``name`` (one instance per class); an unknown name lists the valid
    ones."""
    return _instance(FAMILIES.get(name))


@functools.cache
def _instance(cls: type[SpaceFamily]) -> SpaceFamily:
    return cls()


def family_of(space: SpaceSpec) -> SpaceFamily:
    return get_family(space.family)


def all_presets() -> dict[str, Callable[[], SpaceSpec]]:
    """Every family's presets by name (a name two families claim is refused)."""
    out: dict[str, Callable[[], SpaceSpec]] = {}
    for name in list_families():
        for preset, make in get_family(name).presets().items():
            if preset in out:
                raise ConfigError(f"space preset {preset!r} is defined by two families")
            out[preset] = make
    return out


# -- OFA net.config files ----------------------------------------------------------------------
def _block_types(config: Mapping[str, Any]) -> list[str]:
    blocks = config.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise InvalidArchError("an OFA net.config needs a non-empty 'blocks' list")
    names = []
    for block in blocks:
        layer = (
            block.get("conv") or block.get("mobile_inverted_conv")
            if isinstance(block, Mapping)
            else None
        )
        names.append(str(layer.get("name")) if isinstance(layer, Mapping) else repr(block)[:40])
    return names


def detect_net_config_family(config: Mapping[str, Any], expected: str | None = None) -> SpaceFamily:
    """The family of an OFA ``net.config``, told from its blocks; else one line naming the block
    types found, the family ``expected`` and the families known."""
    if not isinstance(config, Mapping):
        raise InvalidArchError(f"an OFA net.config is a mapping, got {type(config).__name__}")
    for name in list_families():
        family = get_family(name)
        if family.claims_net_config(config):
            return family
    wanted = f"space family {expected!r} expected; " if expected else ""
    raise InvalidArchError(
        f"net.config {config.get('name', '(unnamed)')!r} has block types "
        f"{sorted(set(_block_types(config)))}, which no space family reads ({wanted}known "
        f"families: {', '.join(list_families())})"
    )


def suggest_space(config: Mapping[str, Any], family: SpaceFamily) -> str:
    """The preset of ``family`` whose stage widths fit ``config`` (else its first preset)."""
    for preset, make in family.presets().items():
        space = make()
        try:
            family.arch_from_net_config(space, config, min(space.resolutions))
        except (InvalidArchError, ConfigError):
            continue
        return preset
    return next(iter(family.presets()))


def check_net_config_family(config: Mapping[str, Any], space: SpaceSpec) -> SpaceFamily:
    """The family of ``config``; a net of another family than ``space``'s is one line naming
    both and the space to use."""
    found = detect_net_config_family(config, space.family)
    if found.name != space.family:
        expected = get_family(space.family)
        raise InvalidArchError(
            f"net.config is an {found.title} network (family {found.name!r}) but space "
            f"{space.name!r} is {expected.title} (family {expected.name!r}); use "
            f"--space {suggest_space(config, found)}"
        )
    return found


def resolution_beside(path: Path) -> int | None:
    """The ``image_size`` of an OFA ``run.config`` in the folder of ``path``, if there is one."""
    run_config = path.parent / "run.config"
    if not run_config.is_file():
        return None
    from ..files import read_text

    try:
        size = json.loads(read_text(run_config, "run.config", InvalidArchError)).get("image_size")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise InvalidArchError(
            f"{run_config} is not an OFA run.config (JSON with image_size)"
        ) from exc
    if isinstance(size, list) and len(size) == 1:
        size = size[0]
    if isinstance(size, bool) or not isinstance(size, int):
        raise InvalidArchError(f"{run_config}: image_size must be one integer, got {size!r}")
    return size


def arch_from_net_config_file(
    config: Mapping[str, Any], path: Path | None, space: SpaceSpec | None, resolution: int | None
) -> ArchConfig:
    """The arch of an OFA ``net.config`` (read from ``path``, or given inline when None),
    validated against ``space`` (by default the preset of its own family that fits it)."""
    if space is None:
        from ..space import get_space

        space = get_space(suggest_space(config, detect_net_config_family(config)))
    check_net_config_family(config, space)
    if resolution is None and path is not None:
        resolution = resolution_beside(path)
    if resolution is None:
        where = f"net.config {path}" if path is not None else "the net.config"
        raise InvalidArchError(
            f"{where} carries no input resolution and no run.config with image_size is beside "
            "it; pass --resolution"
        )
    return space.arch_from_ofa_net_config(config, resolution)


def mbconv_arch_from_net_config(space: SpaceSpec, config: Mapping[str, Any], r: int) -> ArchConfig:
    """The arch of an MBConv family's ``net.config``: blocks after the first are assigned to
    stages by their output width; skipped slots get the smallest kernel and expand ratio."""
    blocks = config.get("blocks") if isinstance(config, Mapping) else None
    if not isinstance(blocks, list) or len(blocks) < 2:
        raise InvalidArchError("an OFA net.config needs a 'blocks' list (first block + stages)")
    layers = [b.get("conv") or b.get("mobile_inverted_conv") or {} for b in blocks[1:]]
    ks = [min(space.kernel_choices)] * space.n_blocks
    e = [min(space.expand_choices)] * space.n_blocks
    d, pos = [], 0
    for s, width in enumerate(space.stage_channels):
        depth, deepest = 0, max(space.stage_depth_choices[s])
        while pos < len(layers) and depth < deepest and layers[pos].get("out_channels") == width:
            ks[s * space.max_depth + depth] = layers[pos].get("kernel_size")
            e[s * space.max_depth + depth] = layers[pos].get("expand_ratio")
            depth, pos = depth + 1, pos + 1
        d.append(depth)
    if pos != len(layers):
        raise InvalidArchError(
            f"net.config block {pos + 1} (out_channels {layers[pos].get('out_channels')}) does not "
            f"fit space {space.name!r} with stage widths {list(space.stage_channels)}"
        )
    return space.validate(ArchConfig(ks, e, d, r))


def block_layers(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The layer description of every block of a ``net.config`` (``conv`` or legacy name)."""
    blocks = config.get("blocks")
    if not isinstance(blocks, list):
        return []
    out = []
    for block in blocks:
        layer = (
            block.get("conv") or block.get("mobile_inverted_conv")
            if isinstance(block, Mapping)
            else None
        )
        out.append(layer if isinstance(layer, Mapping) else {})
    return out


# -- writing OFA net.config files --------------------------------------------------------------
def _conv_config(layer: LayerGeom, kernel: int, stride: int, use_bn: bool) -> dict[str, Any]:
    return {
        "name": "ConvLayer",
        "kernel_size": kernel,
        "stride": stride,
        "dilation": 1,
        "groups": 1,
        "bias": False,
        "has_shuffle": False,
        "use_se": False,
        "in_channels": layer.in_c,
        "out_channels": layer.out_c,
        "use_bn": use_bn,
        "act_func": layer.act,
        "dropout_rate": 0,
        "ops_order": "weight_bn_act",
    }


def _block_config(layer: LayerGeom, expand: int) -> dict[str, Any]:
    shortcut = None
    if layer.residual:
        shortcut = {
            "name": "IdentityLayer",
            "in_channels": layer.in_c,
            "out_channels": layer.out_c,
            "use_bn": False,
            "act_func": None,
            "dropout_rate": 0,
            "ops_order": "weight_bn_act",
        }
    conv = {
        "name": "MBConvLayer",
        "in_channels": layer.in_c,
        "out_channels": layer.out_c,
        "kernel_size": layer.kernel,
        "stride": layer.stride,
        "expand_ratio": expand,
        "mid_channels": layer.mid if layer.has_expand else None,
        "act_func": layer.act,
        "use_se": layer.se,
        "groups": None,
    }
    return {"name": "ResidualBlock", "conv": conv, "shortcut": shortcut}


def mbconv_net_config(
    space: SpaceSpec, arch: ArchConfig, name: str, bn_eps: float, head: Mapping[str, str]
) -> dict[str, Any]:
    """OFA's ``net.config`` of an MBConv family's subnet, from its layer geometry. ``head``
    maps ofabench's head layer kinds to OFA's keys (ProxylessNAS's final expand is OFA's
    ``feature_mix_layer``); MobileNetV3's feature mix has no BN."""
    layers = space.layers(arch)
    blocks = [layer for layer in layers if layer.kind == "mbconv"]
    expands = [1] + [e for _, _, _, e in space.active_blocks(arch)]
    by_kind = {layer.kind: layer for layer in layers}
    config: dict[str, Any] = {
        "name": name,
        "bn": {"momentum": 0.1, "eps": bn_eps, "ws_eps": None},
        "first_conv": _conv_config(by_kind["stem"], 3, space.stem_stride, True),
        "blocks": [_block_config(b, e) for b, e in zip(blocks, expands)],
    }
    for kind, key in head.items():
        config[key] = _conv_config(by_kind[kind], 1, 1, use_bn=kind != "feature_mix")
    classifier = by_kind["classifier"]
    config["classifier"] = {
        "name": "LinearLayer",
        "in_features": classifier.in_c,
        "out_features": classifier.out_c,
        "bias": True,
        "use_bn": False,
        "act_func": None,
        "dropout_rate": space.dropout,
        "ops_order": "weight_bn_act",
    }
    return config

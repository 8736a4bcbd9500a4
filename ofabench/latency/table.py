"""Operator-level latency lookup tables (LUTs): the key of one layer (:class:`OpSpec`), its
measured latency (:class:`LatencyEntry`) and the table of them for one device
(:class:`LatencyTable`), stored as JSON or imported from / exported to OFA's YAML LUTs.

A key is OFA's string form, so tables written by OFA and by ofabench are interchangeable::

    Conv-input:224x224x3-output:112x112x24                                    stem
    expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:0
    Conv_1-input:7x7x192-output:7x7x1152                                      final expand
    AvgPool2D-input:7x7x1152-output:1x1x1152                                  global pooling
    Conv_2-input:1x1x1152-output:1x1x1536                                     feature mix
    Logits-input:1x1x1536-output:1000                                         classifier

A ProxylessNAS table (family ``proxyless``) keys its blocks by expand *ratio* without the SE and
h-swish flags, and times pooling with the classifier::

    expanded_conv-input:56x56x24-output:28x28x40-expand:3-kernel:5-stride:2-idskip:0
    Logits-input:7x7x1280-output:1000

OFA has no OFA-ResNet50 tables; an ofabench ResNet table (family ``resnet``) uses the same key
form, adding max pooling and bottleneck blocks keyed by mid channels (``expand``) and
``idskip:0`` for a stage's first block (the one with the downsample branch). A block's input width
is the previous stage's (elastic) width, so it is part of the key and the cost of a block is not a
function of its own genes alone (see :mod:`ofabench.latency.model`). A stem conv whose input and
output shapes are equal is the stem's residual conv::

    Conv-input:12x12x8-output:12x12x8                                         residual stem conv
    MaxPool2D-input:12x12x16-output:6x6x16
    Bottleneck-input:6x6x16-output:3x3x128-expand:24-kernel:3-stride:2-idskip:0

OFA ships one YAML file per input resolution, and a few keys (the head, the last stage at
neighbouring resolutions) occur in several files with slightly different measurements. A table
keeps one shared entry per key and, where a resolution's file disagrees with it, a
resolution-scoped entry, so predictions match OFA's exactly and YAML round trips are lossless.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import LatencyTableError
from ..families import get_family
from ..provenance import atomic_open
from ..provenance import provenance as make_provenance
from ..space import ArchConfig, LayerGeom, SpaceSpec, get_space

log = logging.getLogger("ofabench")

SCHEMA_VERSION = 1
FORMAT_NAME = "ofabench-latency-table"

# ofabench layer kind -> OFA's operator name in LUT keys
OFA_OP_NAMES = {
    "stem": "Conv",
    "mbconv": "expanded_conv",
    "final_expand": "Conv_1",
    "pool": "AvgPool2D",
    "feature_mix": "Conv_2",
    "classifier": "Logits",
}
# ofabench-only kinds (OFA-ResNet50's), keyed in the same form
OP_NAMES = {**OFA_OP_NAMES, "maxpool": "MaxPool2D", "bottleneck": "Bottleneck"}
BLOCK_KINDS = ("mbconv", "bottleneck")
_KINDS_BY_OP = {op: kind for kind, op in OP_NAMES.items()}
_MBCONV_FIELDS = ("expand", "kernel", "stride", "idskip", "se", "hs")
_OFA_FILE = re.compile(r"^(\d+)_lookup_table\.ya?ml$")


# -- keys ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpSpec:
    """The latency-table key of one layer: its kind, input and output shapes (square feature
    maps, ``hw`` x ``hw`` x ``c``) and, for an MBConv block, the fields OFA keys it by
    (mid channels, kernel, stride, residual, SE, h-swish). Render with :attr:`key`, read
    with :meth:`parse`; ``OpSpec.parse(spec.key) == spec``."""

    kind: str
    in_hw: int
    in_c: int
    out_hw: int
    out_c: int
    mid: int = 0
    kernel: int = 0
    stride: int = 0
    residual: bool = False
    se: bool = False
    h_swish: bool = False
    family: str = "mbv3"
    """The space family whose key format and modules this op has (not part of the key)."""

    def __post_init__(self) -> None:
        if self.kind not in OP_NAMES:
            raise LatencyTableError(f"unknown op kind {self.kind!r}; allowed: {sorted(OP_NAMES)}")
        extras = (self.mid, self.kernel, self.stride, self.residual, self.se, self.h_swish)
        if self.kind not in BLOCK_KINDS and any(extras):
            raise LatencyTableError(
                f"a {self.kind} op is keyed by its shapes only; mid, kernel, stride, residual, "
                f"se and h_swish are for {' and '.join(BLOCK_KINDS)} ops"
            )
        ratio_keys = get_family(self.family).lut_expand_is_ratio
        if self.kind == "mbconv" and ratio_keys and (self.in_c < 1 or self.mid % self.in_c):
            raise LatencyTableError(
                f"a {self.family} block is keyed by its expand ratio: mid channels {self.mid} "
                f"must be a multiple of its {self.in_c} input channels"
            )

    @classmethod
    def from_layer(cls, layer: LayerGeom, family: str = "mbv3") -> OpSpec:
        """The key of a layer of :meth:`SpaceSpec.layers` of a space of ``family`` (OFA's
        conventions: pooling outputs 1x1, the classifier's output is a vector)."""
        if layer.kind in BLOCK_KINDS:
            return cls(
                layer.kind,
                layer.hw,
                layer.in_c,
                layer.out_hw,
                layer.out_c,
                mid=layer.mid,
                kernel=layer.kernel,
                stride=layer.stride,
                residual=layer.residual,
                se=layer.se,
                h_swish=layer.act == "h_swish",
                family=family,
            )
        out_hw = 1 if layer.kind in ("pool", "classifier") else layer.out_hw
        return cls(layer.kind, layer.hw, layer.in_c, out_hw, layer.out_c, family=family)

    @property
    def key(self) -> str:
        """OFA's key string, e.g. ``Conv_1-input:7x7x192-output:7x7x1152``."""
        output = str(self.out_c) if self.kind == "classifier" else _shape(self.out_hw, self.out_c)
        parts = [
            OP_NAMES[self.kind],
            f"input:{_shape(self.in_hw, self.in_c)}",
            f"output:{output}",
        ]
        if self.kind in BLOCK_KINDS:
            family = get_family(self.family)
            expand = self.mid // self.in_c if family.lut_expand_is_ratio else self.mid
            values = (expand, self.kernel, self.stride, self.residual, self.se, self.h_swish)
            names = _mbconv_fields(self.family)
            parts += [f"{name}:{int(v)}" for name, v in zip(names, values)]
        return "-".join(parts)

    def __str__(self) -> str:
        return self.key

    @classmethod
    def parse(cls, key: str, family: str | None = None) -> OpSpec:
        """Read an OFA key string of a table of ``family`` (None: told from an MBConv key's
        fields, else ``mbv3``); raises :class:`LatencyTableError` saying what is malformed."""
        if not isinstance(key, str):
            raise LatencyTableError(f"a latency key must be a string, got {key!r}")
        op, *parts = key.split("-")
        if op not in _KINDS_BY_OP:
            raise LatencyTableError(
                f"latency key {key!r} starts with unknown op {op!r}; allowed: {sorted(_KINDS_BY_OP)}"
            )
        kind = _KINDS_BY_OP[op]
        fields = _key_fields(key, parts)
        if family is None:
            family = _family_of_key(kind, fields)
        block = kind in BLOCK_KINDS
        expected = ["input", "output", *(_mbconv_fields(family) if block else ())]
        if list(fields) != expected:
            raise LatencyTableError(
                f"latency key {key!r} has fields {list(fields)}; an {op} key has {expected}"
            )
        in_hw, in_c = _parse_shape(key, fields["input"])
        out_hw, out_c = (
            (1, _parse_int(key, fields["output"]))
            if kind == "classifier"
            else _parse_shape(key, fields["output"])
        )
        extra = _read_mbconv_fields(key, fields, in_c, family) if block else {}
        spec = cls(kind, in_hw, in_c, out_hw, out_c, **extra, family=family)
        if spec.key != key:
            raise LatencyTableError(
                f"latency key {key!r} is not in canonical form; expected {spec.key!r}"
            )
        return spec


def _family_of_key(kind: str, fields: Mapping[str, str]) -> str:
    """The family a key without one belongs to, told from its op and fields."""
    if kind in ("bottleneck", "maxpool"):
        return "resnet"
    return "proxyless" if kind == "mbconv" and "se" not in fields else "mbv3"


def _shape(hw: int, c: int) -> str:
    return f"{hw}x{hw}x{c}"


def _key_fields(key: str, parts: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in parts:
        name, sep, value = part.partition(":")
        if not sep or name in fields:
            raise LatencyTableError(
                f"latency key {key!r}: field {part!r} must be 'name:value' and appear once"
            )
        fields[name] = value
    return fields


def _mbconv_fields(family: str) -> tuple[str, ...]:
    """The fields of an MBConv key of ``family`` (ProxylessNAS's have no se/hs flags)."""
    return (*_MBCONV_FIELDS[:4], *get_family(family).lut_block_flags)


def _read_mbconv_fields(
    key: str, fields: Mapping[str, str], in_c: int, family: str
) -> dict[str, Any]:
    values = {f: _parse_int(key, fields[f]) for f in _mbconv_fields(family)}
    expand = values["expand"]
    mid = in_c * expand if get_family(family).lut_expand_is_ratio else expand
    return dict(
        mid=mid,
        kernel=values["kernel"],
        stride=values["stride"],
        residual=bool(values["idskip"]),
        se=bool(values.get("se", 0)),
        h_swish=bool(values.get("hs", 0)),
    )


def _parse_int(key: str, text: str) -> int:
    if not text.isdigit():
        raise LatencyTableError(f"latency key {key!r}: {text!r} is not a non-negative integer")
    return int(text)


def _parse_shape(key: str, text: str) -> tuple[int, int]:
    dims = [_parse_int(key, t) for t in text.split("x")]
    if len(dims) != 3 or dims[0] != dims[1]:
        raise LatencyTableError(f"latency key {key!r}: shape {text!r} must be HxWxC with H == W")
    return dims[0], dims[2]


def arch_ops(space: SpaceSpec, arch: ArchConfig) -> list[OpSpec]:
    """The latency-table keys of every layer ``arch`` runs, stem to classifier."""
    from ..families import family_of

    family_of(space).require("lut")
    return [OpSpec.from_layer(layer, space.family) for layer in space.layers(arch)]


@dataclass(frozen=True)
class ResolutionOps:
    """Every op a space can run at one resolution: the ``fixed`` ones every subnet runs (stem,
    first block, head) and ``blocks[(slot, kernel, expand)]`` for the elastic block slots
    (only slots some depth choice reaches). For a family without additive costs, every op is in
    ``fixed`` (the first one a stem conv) and ``blocks`` is empty."""

    resolution: int
    fixed: tuple[OpSpec, ...]
    blocks: Mapping[tuple[int, int, int], OpSpec]

    def all_ops(self) -> list[OpSpec]:
        """Distinct ops in a stable order: fixed ones first, then blocks by slot/kernel/expand."""
        unique = dict.fromkeys([*self.fixed, *(self.blocks[k] for k in sorted(self.blocks))])
        return list(unique)


def resolution_ops(space: SpaceSpec, resolution: int) -> ResolutionOps:
    """Enumerate the ops of ``space`` at ``resolution``. A block's input shape depends on its slot
    (stage, first slot or not), never on earlier choices, so deepest uniform archs suffice. A
    family whose costs are not additive (``lut_additive`` False: OFA-ResNet50's) lists every op
    as ``fixed`` (from its :meth:`~ofabench.families.SpaceFamily.lut_ops`) and no ``blocks``."""
    from ..families import family_of

    family = family_of(space)
    family.require("lut")
    if not family.lut_additive:
        return ResolutionOps(resolution, tuple(family.lut_ops(space, resolution)), {})
    depths = tuple(max(c) for c in space.stage_depth_choices)
    fixed: tuple[OpSpec, ...] = ()
    blocks: dict[tuple[int, int, int], OpSpec] = {}
    for k in space.kernel_choices:
        for e in space.expand_choices:
            arch = ArchConfig((k,) * space.n_blocks, (e,) * space.n_blocks, depths, resolution)
            ops = arch_ops(space, arch)
            active = space.active_blocks(arch)
            fixed = (*ops[:2], *ops[2 + len(active) :])  # stem, first block, the family's head
            for (_, slot, _, _), op in zip(active, ops[2 : 2 + len(active)]):
                blocks[(slot, k, e)] = op
    return ResolutionOps(resolution, fixed, MappingProxyType(blocks))


# -- entries -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyEntry:
    """The measured latency of one op in milliseconds: mean, standard deviation, number of
    timed runs and, when the profiler recorded them, the median and the reference probe's
    reading at the moment of the measurement (``probe_ms``; the values are then normalised to
    the table's reference speed, see :mod:`ofabench.latency.probe`)."""

    mean_ms: float
    std_ms: float = 0.0
    count: int = 1
    median_ms: float | None = None
    probe_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("mean_ms", "std_ms", "median_ms", "probe_ms"):
            value = getattr(self, name)
            if value is None and name in ("median_ms", "probe_ms"):
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise LatencyTableError(f"latency entry {name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise LatencyTableError(
                    f"latency entry {name} must be finite and >= 0, got {value!r}"
                )
            object.__setattr__(self, name, float(value))
        count = self.count
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
            raise LatencyTableError(f"latency entry count must be an integer >= 0, got {count!r}")
        object.__setattr__(self, "count", int(count))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mean_ms": self.mean_ms, "std_ms": self.std_ms, "count": self.count}
        if self.median_ms is not None:
            data["median_ms"] = self.median_ms
        if self.probe_ms is not None:
            data["probe_ms"] = self.probe_ms
        return data

    @classmethod
    def from_dict(cls, data: Any) -> LatencyEntry:
        if not isinstance(data, Mapping) or "mean_ms" not in data:
            raise LatencyTableError(f"a latency entry needs at least 'mean_ms', got {data!r}")
        unknown = sorted(set(data) - {"mean_ms", "std_ms", "count", "median_ms", "probe_ms"})
        if unknown:
            raise LatencyTableError(f"unknown latency entry field(s) {unknown}")
        return cls(**data)

    def to_ofa(self) -> dict[str, Any]:
        """OFA's YAML form (``count``/``mean``/``std``; ``median`` kept as an extra field OFA ignores)."""
        data: dict[str, Any] = {"count": self.count, "mean": self.mean_ms, "std": self.std_ms}
        if self.median_ms is not None:
            data["median"] = self.median_ms
        return data

    @classmethod
    def from_ofa(cls, key: str, data: Any) -> LatencyEntry:
        """Read OFA's ``{count, mean, std}`` (ProxylessNAS tables give ``var`` instead of ``std``)."""
        if not isinstance(data, Mapping) or "mean" not in data:
            raise LatencyTableError(f"OFA latency entry for {key!r} needs 'mean', got {data!r}")
        std = data.get("std", math.sqrt(data["var"]) if "var" in data else 0.0)
        return cls(data["mean"], std, data.get("count", 1), data.get("median"))


# -- the table -----------------------------------------------------------------------------------
class LatencyTable:
    """Per-op latencies of one device: OFA key string -> :class:`LatencyEntry`, with the device,
    the backend that measured it, the search space it was made for (name + fingerprint) and its
    provenance. ``resolution_entries[r][key]`` overrides the shared entry for subnets at input
    resolution ``r`` (only OFA imports need this; see the module docstring)."""

    def __init__(
        self,
        *,
        device: str,
        backend: str,
        space_name: str,
        space_fingerprint: str,
        provenance: Mapping[str, Any] | None = None,
        schema_version: int = SCHEMA_VERSION,
        family: str = "mbv3",
    ) -> None:
        self.family = get_family(family).name
        self.device = device
        self.backend = backend
        self.space_name = space_name
        self.space_fingerprint = space_fingerprint
        self.provenance = dict(provenance or {})
        self.schema_version = schema_version
        self._entries: dict[str, LatencyEntry] = {}
        self._scoped: dict[int, dict[str, LatencyEntry]] = {}

    @classmethod
    def for_space(
        cls,
        space: SpaceSpec,
        *,
        device: str,
        backend: str,
        provenance: Mapping[str, Any] | None = None,
    ) -> LatencyTable:
        """An empty table for ``space``, to be filled with :meth:`add`."""
        return cls(
            device=device,
            backend=backend,
            space_name=space.name,
            space_fingerprint=space.fingerprint(),
            provenance=provenance,
            family=space.family,
        )

    # -- mapping -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return str(key) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __getitem__(self, key: str | OpSpec) -> LatencyEntry:
        return self._entries[str(key)]

    @property
    def entries(self) -> Mapping[str, LatencyEntry]:
        """The shared entries, read-only."""
        return MappingProxyType(self._entries)

    @property
    def resolution_entries(self) -> Mapping[int, Mapping[str, LatencyEntry]]:
        """Resolution-scoped entries that override shared ones, read-only."""
        return MappingProxyType({r: MappingProxyType(e) for r, e in self._scoped.items()})

    def get(
        self, key: str | OpSpec, default: LatencyEntry | None = None, resolution: int | None = None
    ) -> LatencyEntry | None:
        """The entry for ``key`` (an :class:`OpSpec` or its string), the one scoped to
        ``resolution`` when there is one."""
        key = str(key)
        if resolution is not None and key in self._scoped.get(resolution, {}):
            return self._scoped[resolution][key]
        return self._entries.get(key, default)

    def add(self, key: str | OpSpec, entry: LatencyEntry, resolution: int | None = None) -> None:
        """Set the entry of ``key`` (validated), shared or scoped to one ``resolution``."""
        key = key.key if isinstance(key, OpSpec) else OpSpec.parse(key, self.family).key
        if not isinstance(entry, LatencyEntry):
            raise LatencyTableError(f"add() needs a LatencyEntry for {key!r}, got {entry!r}")
        if resolution is None or key not in self._entries:
            self._entries[key] = entry
        elif self._entries[key] != entry:
            self._scoped.setdefault(int(resolution), {})[key] = entry
        else:
            self._scoped.get(int(resolution), {}).pop(key, None)

    # -- space ---------------------------------------------------------------------------------
    def check_space(self, space: SpaceSpec) -> None:
        """Raise :class:`LatencyTableError` unless this table was made for ``space`` (same
        fingerprint: same widths, strides, choices; the name and resolutions may differ)."""
        if self.family != space.family:
            raise LatencyTableError(
                f"latency table for device {self.device!r} is for a space of family "
                f"{self.family!r} ({self.space_name}), but space {space.name!r} is of family "
                f"{space.family!r}; use a table of that family or --space {self.space_name}"
            )
        if self.space_fingerprint != space.fingerprint():
            raise LatencyTableError(
                f"latency table for device {self.device!r} was made for space "
                f"{self.space_name!r} (fingerprint {self.space_fingerprint}), not for space "
                f"{space.name!r} (fingerprint {space.fingerprint()}); profile the device for "
                f"this space or pass the space the table was made for"
            )

    def missing_ops(self, space: SpaceSpec, resolution: int) -> list[str]:
        """Keys ``space`` needs at ``resolution`` that this table lacks (empty: fully covered)."""
        return self.missing_keys(resolution_ops(space, resolution))

    def missing_keys(self, ops: ResolutionOps) -> list[str]:
        """Keys of ``ops`` (one resolution's ops, see :func:`resolution_ops`) this table lacks."""
        r = ops.resolution
        return [op.key for op in ops.all_ops() if self.get(op, resolution=r) is None]

    def covered_resolutions(self, space: SpaceSpec) -> tuple[int, ...]:
        """The resolutions of ``space`` at which every op any subnet runs has an entry."""
        return tuple(r for r in space.resolutions if not self.missing_ops(space, r))

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "schema_version": self.schema_version,
            "device": self.device,
            "backend": self.backend,
            "space": {
                "name": self.space_name,
                "fingerprint": self.space_fingerprint,
                **({"family": self.family} if self.family != "mbv3" else {}),
            },
            "provenance": self.provenance,
            "entries": {k: e.to_dict() for k, e in sorted(self._entries.items())},
            "resolution_entries": {
                str(r): {k: e.to_dict() for k, e in sorted(scoped.items())}
                for r, scoped in sorted(self._scoped.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "latency table") -> LatencyTable:
        """Rebuild a table from :meth:`to_dict`; ``source`` names it in error messages."""
        try:
            return _table_from_dict(cls, data)
        except (LatencyTableError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LatencyTableError(
                f"{source} is not a valid ofabench latency table: {exc}; re-create it with "
                f"`ofabench profile` or import an OFA LUT with LatencyTable.from_ofa_yaml"
            ) from exc

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON, atomically (temp file in the same folder, fsync, rename)."""
        path = Path(path)
        with atomic_open(path) as handle:
            json.dump(self.to_dict(), handle, indent=1)
            handle.write("\n")
        log.debug("wrote latency table with %d entries to %s", len(self), path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise LatencyTableError(
                f"latency table {path} does not exist; run `ofabench profile` to create one"
            )
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LatencyTableError(
                f"latency table {path} is not valid JSON ({exc}); the file is damaged or was "
                f"cut short, re-create it with `ofabench profile` or restore a copy"
            ) from exc
        return cls.from_dict(data, source=f"latency table {path}")

    # -- OFA YAML ------------------------------------------------------------------------------
    @classmethod
    def from_ofa_yaml(
        cls,
        paths_or_dir: str | Path | Iterable[str | Path],
        *,
        space: SpaceSpec | str,
        device: str = "unknown",
        backend: str = "ofa-lut",
    ) -> LatencyTable:
        """Import OFA LUTs (``<resolution>_lookup_table.yaml``, one file per resolution; a folder
        means all such files in it). Several files merge: the lowest resolution's entries are
        shared, a later file's differing value for the same key is scoped to its resolution."""
        space = get_space(space)
        files = _ofa_files(paths_or_dir)
        table = cls.for_space(
            space,
            device=device,
            backend=backend,
            provenance=make_provenance(source=[str(p) for p in files], imported_from="ofa_yaml"),
        )
        for resolution, raw in sorted((_read_ofa_file(p) for p in files), key=lambda x: x[0]):
            _check_ofa_family(raw, space, files, resolution)
            for key, value in raw.items():
                table.add(key, LatencyEntry.from_ofa(key, value), resolution=resolution)
            _check_ofa_coverage(table, space, resolution)
        return table

    def to_ofa_yaml(
        self, directory: str | Path, space: SpaceSpec | str | None = None
    ) -> list[Path]:
        """Write one OFA ``<r>_lookup_table.yaml`` per resolution of ``space`` (default: the
        table's preset space) this table covers; returns the files written."""
        import yaml

        space = get_space(space if space is not None else self.space_name)
        self.check_space(space)
        written = []
        for r in self.covered_resolutions(space):
            ops = resolution_ops(space, r).all_ops()
            data = {op.key: self.get(op, resolution=r).to_ofa() for op in ops}
            path = Path(directory) / f"{r}_lookup_table.yaml"
            with atomic_open(path) as handle:
                yaml.safe_dump(data, handle, default_flow_style=False)
            written.append(path)
        if not written:
            raise LatencyTableError(
                f"latency table covers no resolution of space {space.name!r}; nothing to export"
            )
        return written


def _table_from_dict(cls: type[LatencyTable], data: Any) -> LatencyTable:
    if not isinstance(data, Mapping) or data.get("format") != FORMAT_NAME:
        raise LatencyTableError(f"expected a JSON object with format {FORMAT_NAME!r}")
    version = data["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise LatencyTableError(
            f"schema_version {version!r} is not supported (this ofabench reads <= {SCHEMA_VERSION}); "
            f"upgrade ofabench"
        )
    table = cls(
        device=str(data["device"]),
        backend=str(data["backend"]),
        space_name=str(data["space"]["name"]),
        space_fingerprint=str(data["space"]["fingerprint"]),
        provenance=data.get("provenance") or {},
        schema_version=version,
        family=str(data["space"].get("family", "mbv3")),
    )
    for key, value in data["entries"].items():
        table.add(key, LatencyEntry.from_dict(value))
    for r, scoped in data.get("resolution_entries", {}).items():
        for key, value in scoped.items():
            table._scoped.setdefault(int(r), {})[OpSpec.parse(key, table.family).key] = (
                LatencyEntry.from_dict(value)
            )
    return table


def _ofa_files(paths_or_dir: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(paths_or_dir, (str, Path)):
        path = Path(paths_or_dir)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if _OFA_FILE.match(p.name))
            if not files:
                raise LatencyTableError(
                    f"no OFA lookup tables (<resolution>_lookup_table.yaml) in folder {path}"
                )
            return files
        paths = [path]
    else:
        paths = [Path(p) for p in paths_or_dir]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise LatencyTableError(f"OFA lookup table file(s) not found: {missing or 'none given'}")
    return paths


def _read_ofa_file(path: Path) -> tuple[int, dict[str, Any]]:
    """``(resolution, {key: {count, mean, std}})`` of one OFA YAML LUT."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise LatencyTableError(f"OFA lookup table {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not raw:
        raise LatencyTableError(
            f"OFA lookup table {path} must map op keys to {{count, mean, std}}; it is empty or not a mapping"
        )
    return _ofa_resolution(path, raw), raw


def _ofa_resolution(path: Path, raw: Mapping[str, Any]) -> int:
    """The input resolution of an OFA LUT: from its name, else from its stem (``Conv``) key."""
    match = _OFA_FILE.match(path.name)
    if match:
        return int(match.group(1))
    stems = [OpSpec.parse(k) for k in raw if str(k).startswith("Conv-")]
    if len(stems) == 1:
        return stems[0].in_hw
    raise LatencyTableError(
        f"cannot tell the resolution of OFA lookup table {path}: name it "
        f"<resolution>_lookup_table.yaml or keep exactly one stem (Conv-...) key in it"
    )


def _check_ofa_family(
    raw: Mapping[str, Any], space: SpaceSpec, files: list[Path], resolution: int
) -> None:
    """An OFA LUT of another family than ``space``'s (told from its block keys) is one line
    naming both and the preset whose stem it has."""
    blocks = [str(k) for k in raw if str(k).startswith("expanded_conv-")]
    if not blocks:
        return
    found = get_family(OpSpec.parse(blocks[0]).family)  # the key fields tell the formats apart
    if found.name == space.family:
        return
    presets = list(found.presets().items())
    suggestion = presets[0][0]
    for name, make in presets:
        candidate = make()
        if resolution in candidate.resolutions:
            stem = resolution_ops(candidate, resolution).fixed[0]
            if stem.key in raw:
                suggestion = name
                break
    raise LatencyTableError(
        f"OFA lookup table {files[0]} has {found.title} keys (family {found.name!r}) but space "
        f"{space.name!r} is of family {space.family!r}; import it with a space of family "
        f"{found.name!r}, e.g. --space {suggestion}"
    )


def _check_ofa_coverage(table: LatencyTable, space: SpaceSpec, resolution: int) -> None:
    """Raise if an imported file does not fit ``space`` at all; log if it covers it partly."""
    if resolution not in space.resolutions:
        log.warning("OFA LUT resolution %d is not in space %r", resolution, space.name)
        return
    ops = resolution_ops(space, resolution)
    missing = table.missing_ops(space, resolution)
    if ops.fixed[0].key in missing:
        raise LatencyTableError(
            f"OFA lookup table for resolution {resolution} has no key {ops.fixed[0].key!r}: it "
            f"was made for another search space than {space.name!r}; pass the right space"
        )
    if missing:
        log.warning(
            "OFA LUT at resolution %d lacks %d of the ops of space %r (first: %s)",
            resolution,
            len(missing),
            space.name,
            missing[0],
        )

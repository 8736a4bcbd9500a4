"""Additive costs: ``cost(arch) = base[r] + sum of block[slot, k, e, r] over the slots it runs``.

MACs, parameters and a latency-table sum all have this form (a block's cost depends only on its
slot, kernel, expand ratio and the input resolution). Knowing the table lets the search evaluate
a constraint for a whole population with one gather in *choice-index* space, and find the exact
smallest value any subnet reaches (a small dynamic programme over stage depths).

Where the tables come from: MACs and parameters from per-layer counts
(:meth:`AdditiveCost.from_layer_costs`); latency from the
:class:`~ofabench.latency.LatencyModel` itself (``LatencyModel.additive_cost()``, its own
arrays). Only a black-box batch function goes through :meth:`AdditiveCost.probe`, which
recovers its table by least squares on random subnets and keeps it only if it then reproduces
the function exactly on fresh ones; a function that is not additive gets ``None`` and is simply
called as it is.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..blas import single_threaded_blas
from ..space import ArchBatch, SpaceSpec
from .genome import Genome

logger = logging.getLogger("ofabench")

BatchFn = Callable[[ArchBatch], np.ndarray]
PROBES_PER_UNKNOWN = 2.5
CHECK_SAMPLES = 512
RELATIVE_TOLERANCE = 1e-9


@dataclass(frozen=True, eq=False)
class AdditiveCost:
    """An exact additive cost over ``space``: ``base`` (R,) per resolution index and ``blocks``
    (n_blocks, K, E, R) per slot, kernel index, expand index and resolution index, in the order
    of ``space``'s choice tuples."""

    space: SpaceSpec
    base: np.ndarray
    blocks: np.ndarray

    def __post_init__(self) -> None:
        s = self.space
        shape = (s.n_blocks, len(s.kernel_choices), len(s.expand_choices), len(s.resolutions))
        if self.blocks.shape != shape or self.base.shape != shape[-1:]:
            raise ValueError(
                f"additive cost arrays have shapes {self.base.shape}, {self.blocks.shape}; "
                f"space {s.name!r} needs {shape[-1:]}, {shape}"
            )

    # -- evaluation --------------------------------------------------------------------------
    def __call__(self, batch: ArchBatch) -> np.ndarray:
        """The cost of every architecture of a value batch (ks/e/d/r hold choices, not indices)."""
        genome = self._genome
        return self.of_indices(genome.indices(genome.from_batch(batch)))

    def of_indices(self, genes: np.ndarray) -> np.ndarray:
        """The cost of rows of choice indices laid out ``ks | e | d | r`` (see ``Genome``)."""
        return _gather_sum(self._layout(), self.base, self.blocks.reshape(-1), genes)

    @functools.cached_property
    def _genome(self) -> Genome:
        return Genome(self.space)

    def _layout(self) -> _Layout:
        return layout_of(self.space)

    # -- restriction -------------------------------------------------------------------------
    def for_space(self, space: SpaceSpec) -> AdditiveCost | None:
        """The same cost indexed by ``space``'s choices, if ``space`` is a restriction of this
        table's space (same block layout, choices a subset); else None."""
        own = self.space
        if space == own:
            return self
        if not _same_shape(space, own):
            return None
        picks = [
            _positions(getattr(own, f), getattr(space, f))
            for f in ("kernel_choices", "expand_choices", "resolutions", "depth_choices")
        ]
        if any(p is None for p in picks):
            return None
        k, e, r, _ = picks
        blocks = self.blocks[:, k][:, :, e][..., r]
        return AdditiveCost(space, self.base[r], np.ascontiguousarray(blocks))

    # -- extremes ----------------------------------------------------------------------------
    def minimum(self) -> tuple[float, np.ndarray]:
        """The smallest cost any subnet of the space reaches and one such subnet, as a row of
        choice indices."""
        layout = self._layout()
        s = self.space
        best_value, best_row = np.inf, None
        for ri in range(len(s.resolutions)):
            value, row = _minimum_at(layout, self.base[ri], self.blocks[..., ri])
            if value < best_value:
                best_value, best_row = value, row
                best_row[-1] = ri
        assert best_row is not None
        return float(best_value), best_row

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_layer_costs(
        cls, space: SpaceSpec, layer_cost: Callable[[Any], float], scale: float = 1.0
    ) -> AdditiveCost:
        """The exact table of ``sum(layer_cost(layer))`` over a subnet's layers, times ``scale``
        (``layer_cost`` is e.g. :func:`ofabench.latency.counting.layer_macs`)."""
        base, blocks = _layer_cost_table(space, layer_cost)
        return cls(space, base * scale, blocks * scale)

    @classmethod
    def probe(
        cls, space: SpaceSpec, fn: BatchFn, seed: int = 0, tolerance: float = RELATIVE_TOLERANCE
    ) -> AdditiveCost | None:
        """Recover the additive table of ``fn`` over ``space`` by least squares on random
        subnets; None if ``fn`` is not exactly additive (checked on fresh random subnets)."""
        genome, rng = Genome(space), np.random.default_rng(seed)
        layout = layout_of(space)
        n_unknown = 1 + space.n_blocks * len(space.kernel_choices) * len(space.expand_choices)
        n_probe = int(PROBES_PER_UNKNOWN * n_unknown) * len(space.resolutions)
        genes = genome.random_index(n_probe, rng)
        values = _call(fn, genome, genes)
        with single_threaded_blas():  # a threaded LAPACK is 100x slower on a busy machine
            base, blocks = _fit(space, layout, genes, values)
        table = cls(space, base, blocks)
        check = genome.random_index(CHECK_SAMPLES, rng)
        truth = _call(fn, genome, check)
        error = np.abs(table.of_indices(check) - truth)
        if not (error <= tolerance * np.maximum(1.0, np.abs(truth))).all():
            logger.debug("cost %r is not additive (max error %g)", fn, float(error.max()))
            return None
        return table

    @classmethod
    def stack(cls, tables: Sequence[AdditiveCost]) -> StackedCost:
        """Several costs of one space evaluated by one gather (see :class:`StackedCost`)."""
        return StackedCost(tables)


class StackedCost:
    """Costs of one space stacked on a last axis: ``of_indices(genes) -> (N, C)``."""

    def __init__(self, tables: Sequence[AdditiveCost]) -> None:
        if not tables or len({t.space for t in tables}) != 1:
            raise ValueError("stack needs at least one table, all of one space")
        self.layout = layout_of(tables[0].space)
        self.base = np.stack([t.base for t in tables], axis=-1)
        self.flat_blocks = np.stack([t.blocks.reshape(-1) for t in tables], axis=-1)

    def of_indices(self, genes: np.ndarray) -> np.ndarray:
        """(N, C) values of every stacked cost."""
        if self.base.shape[-1] == 1:
            flat = self.flat_blocks[:, 0]
            return _gather_sum(self.layout, self.base[:, 0], flat, genes)[:, None]
        return _gather_sum(self.layout, self.base, self.flat_blocks, genes)


# -- layout and gathers ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    """Column cuts of a gene row, flat-index strides and the active-slot table of a space."""

    n_blocks: int
    n_stages: int
    max_depth: int
    slots: np.ndarray  # (1, n_blocks)
    active_of_depth: np.ndarray  # (n_stages, n_depth_choices, max_depth) bool
    depth_values: np.ndarray  # (n_stages, n_depth_choices), a stage's own choices padded
    k_stride: int  # E * R
    e_stride: int  # R
    slot_offsets: np.ndarray  # (n_blocks,) intp: slot * K * E * R
    narrow: bool  # the in-slot index fits uint8 arithmetic
    shared_depths: bool  # no stage has its own depth choices

    @classmethod
    def of(cls, space: SpaceSpec) -> _Layout:
        width = max(len(c) for c in space.stage_depth_choices)
        depths = np.array([list(c) + [c[-1]] * (width - len(c)) for c in space.stage_depth_choices])
        active = np.arange(space.max_depth)[None, None, :] < depths[:, :, None]
        n_k, n_e, n_r = (
            len(space.kernel_choices),
            len(space.expand_choices),
            len(space.resolutions),
        )
        return cls(
            space.n_blocks,
            space.n_stages,
            space.max_depth,
            np.arange(space.n_blocks)[None, :],
            active,
            depths,
            n_e * n_r,
            n_r,
            np.arange(space.n_blocks, dtype=np.intp) * (n_k * n_e * n_r),
            n_k * n_e * n_r <= 256,
            not any(stage.depths for stage in space.stages),
        )

    def active(self, genes: np.ndarray) -> np.ndarray:
        nb, ns = self.n_blocks, self.n_stages
        depth_genes = genes[:, 2 * nb : 2 * nb + ns]
        if self.shared_depths:  # every stage has the space's depth choices: one gather
            return self.active_of_depth[0][depth_genes].reshape(len(genes), nb)
        stages = np.arange(ns)[None, :]
        return self.active_of_depth[stages, depth_genes].reshape(len(genes), nb)

    def flat_index(self, genes: np.ndarray) -> np.ndarray:
        """(N, n_blocks) positions in a flattened (n_blocks, K, E, R) table."""
        nb = self.n_blocks
        if not self.narrow:
            genes = genes.astype(np.intp)
        local = genes[:, :nb] * self.k_stride + genes[:, nb : 2 * nb] * self.e_stride
        local += genes[:, -1:]
        return self.slot_offsets + local


@functools.lru_cache(maxsize=32)
def layout_of(space: SpaceSpec) -> _Layout:
    """The (cached) gene layout of ``space``: column cuts, strides, active-slot table."""
    return _Layout.of(space)


def _gather_sum(
    layout: _Layout, base: np.ndarray, flat_blocks: np.ndarray, genes: np.ndarray
) -> np.ndarray:
    """``base[r] + sum of active blocks`` for rows of indices; ``flat_blocks`` is the block
    table flattened to (n_blocks * K * E * R,) or, for several costs, (..., C)."""
    per_block = flat_blocks[layout.flat_index(genes)]
    active = layout.active(genes)
    r = genes[:, -1]
    if per_block.ndim == 2:
        return base[r] + np.einsum("ij,ij->i", per_block, active)
    return base[r] + np.einsum("ijc,ij->ic", per_block, active)


def _minimum_at(layout: _Layout, base: float, blocks: np.ndarray) -> tuple[float, np.ndarray]:
    """Minimum over subnets at one resolution: cheapest (k, e) per slot, best depth per stage."""
    nb, ns, md = layout.n_blocks, layout.n_stages, layout.max_depth
    flat = blocks.reshape(nb, -1)
    best_ke = flat.argmin(axis=1)
    cheapest = flat[np.arange(nb), best_ke].reshape(ns, md)
    prefix = np.cumsum(cheapest, axis=1)  # cost of running the first j+1 slots
    rows = np.arange(ns)[:, None]
    stage_costs = prefix[rows, layout.depth_values - 1]  # (ns, n_depth_choices), padded
    depth_idx = stage_costs.argmin(axis=1)  # the first of equal minima: never a padding copy
    n_e = blocks.shape[2]
    row = np.concatenate([best_ke // n_e, best_ke % n_e, depth_idx, [0]]).astype(np.uint8)
    return float(base + stage_costs[np.arange(ns), depth_idx].sum()), row


def _fit(
    space: SpaceSpec, layout: _Layout, genes: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares table per resolution from probe rows (minimum-norm where not unique)."""
    nb = layout.n_blocks
    n_res = len(space.resolutions)
    k_n, e_n = len(space.kernel_choices), len(space.expand_choices)
    n_ke = k_n * e_n
    base = np.zeros(n_res)
    blocks = np.zeros((nb, k_n, e_n, n_res))
    active = layout.active(genes)
    ke = genes[:, :nb].astype(np.intp) * e_n + genes[:, nb : 2 * nb]
    for ri in range(n_res):
        rows = np.flatnonzero(genes[:, -1] == ri)
        design = np.zeros((len(rows), 1 + nb * n_ke))
        design[:, 0] = 1.0
        cols = 1 + np.arange(nb)[None, :] * n_ke + ke[rows]
        design[np.arange(len(rows))[:, None], cols] = active[rows]
        solution = np.linalg.lstsq(design, values[rows], rcond=None)[0]
        base[ri] = solution[0]
        blocks[..., ri] = solution[1:].reshape(nb, k_n, e_n)
    return base, blocks


def _call(fn: BatchFn, genome: Genome, genes: np.ndarray) -> np.ndarray:
    batch = genome.to_batch(genome.values(genes))
    return np.asarray(fn(batch), dtype=np.float64).reshape(-1)


def _positions(own: Sequence[int], wanted: Sequence[int]) -> list[int] | None:
    lookup = {v: i for i, v in enumerate(own)}
    if not set(wanted) <= set(lookup):
        return None
    return [lookup[v] for v in wanted]


def _same_shape(a: SpaceSpec, b: SpaceSpec) -> bool:
    """Same network apart from the choice lists and name (widths, strides, slots, classes...)."""
    fields = ("kernel_choices", "expand_choices", "depth_choices", "resolutions", "name")
    shape_a, shape_b = a.to_dict(), b.to_dict()
    for f in fields:
        shape_a.pop(f), shape_b.pop(f)
    return shape_a == shape_b


# -- probed tables, remembered while their function's owner lives ----------------------------
_PROBED: weakref.WeakKeyDictionary[Any, dict[tuple[Any, SpaceSpec], AdditiveCost | None]] = (
    weakref.WeakKeyDictionary()
)


def probe_cached(space: SpaceSpec, fn: BatchFn) -> AdditiveCost | None:
    """:meth:`AdditiveCost.probe`, remembered per (function, space) for as long as the object
    that owns ``fn`` (a bound method's instance, else the function) is alive: a sweep searches
    the same black-box model many times, and the cache never keeps a model alive."""
    owner, func = getattr(fn, "__self__", fn), getattr(fn, "__func__", None)
    try:
        tables = _PROBED.setdefault(owner, {})
    except TypeError:  # not weakly referenceable: probe every time
        return AdditiveCost.probe(space, fn)
    key = (func, space)
    if key not in tables:
        tables[key] = AdditiveCost.probe(space, fn)
    return tables[key]


@functools.lru_cache(maxsize=16)
def _layer_cost_table(
    space: SpaceSpec, layer_cost: Callable[[Any], float]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-resolution fixed cost (R,) and per-block cost (n_blocks, K, E, R) of ``space``.

    A block's cost depends only on its slot, kernel, expand ratio and the input resolution
    (strides sit on a stage's first slot, which always runs), so a subnet's cost is the fixed
    part plus the costs of its active slots.
    """
    kc, ec, res = space.kernel_choices, space.expand_choices, space.resolutions
    depth = max(space.depth_choices)
    base = np.zeros(len(res))
    blocks = np.zeros((space.n_blocks, len(kc), len(ec), len(res)))
    slots = [
        s * space.max_depth + j
        for s, choices in enumerate(space.stage_depth_choices)
        for j in range(max(choices))
    ]
    for ri, r in enumerate(res):
        for ki, k in enumerate(kc):
            for ei, e in enumerate(ec):
                layers = space.layers(space.uniform(k, e, depth, r))
                costs = [layer_cost(layer) for layer in layers]
                blocks[slots, ki, ei, ri] = costs[2 : 2 + len(slots)]
                base[ri] = sum(costs) - sum(costs[2 : 2 + len(slots)])
    return base, blocks

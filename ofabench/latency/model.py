"""Predict a subnet's latency on a device from its latency table.

``LatencyModel.predict(arch)`` sums the table's mean latency of every layer the subnet runs
(OFA's method). ``predict_batch`` does the same for a whole population with a few numpy
gathers: a block's input shape depends on its slot but not on earlier choices, so the cost of
every (slot, kernel, expand, resolution) is precomputed once into one array. That array is the
model's exact additive form (:meth:`LatencyModel.additive_cost`), which the search evaluates
directly: the cost table is built here once, never rebuilt or probed by the search.

A family whose block keys depend on other genes than the block's own (OFA-ResNet50: a stage's
first block takes the previous stage's elastic width; ``SpaceFamily.lut_additive`` False) has no
such form: :meth:`additive_cost` refuses, and :meth:`predict_batch` gathers the family's own cost
tables (``SpaceFamily.cost_tables``: OFA-ResNet50's block costs by input and output width),
exact up to summation order, or sums each subnet's ops.

Optional calibration: a LUT sum misses what happens between layers (memory traffic, framework
overhead), so end-to-end measurements are often ``measured ≈ scale * lut_sum + overhead``.
:meth:`LatencyModel.fit_overhead` fits ``scale`` and ``overhead_ms`` by least squares on a few
measured subnets; by default ``scale = 1`` and ``overhead_ms = 0`` (the plain LUT sum).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from ..errors import InvalidArchError, LatencyTableError
from ..space import ArchBatch, ArchConfig, LayerGeom, SpaceSpec
from .table import LatencyTable, OpSpec, arch_ops, resolution_ops

if TYPE_CHECKING:
    from ..search.additive import AdditiveCost

_INVALID = -(2**40)  # any flat index built from it stays negative, so one min() finds it


def _index_of(values: Sequence[int]) -> np.ndarray:
    """A lookup array mapping each value to its position in ``values``, ``_INVALID`` elsewhere.
    Twice as long as needed so that small negative values (which numpy indexing wraps) land on
    ``_INVALID`` too."""
    index = np.full(2 * (max(values) + 1), _INVALID, dtype=np.int64)
    index[list(values)] = np.arange(len(values))
    return index


class LatencyModel:
    """Latency in ms of any subnet of ``space`` on the device ``table`` was measured on:
    ``scale * (sum of the table's per-layer means) + overhead_ms``."""

    def __init__(
        self,
        table: LatencyTable,
        space: SpaceSpec,
        overhead_ms: float = 0.0,
        scale: float = 1.0,
    ) -> None:
        table.check_space(space)
        self.table = table
        self.space = space
        self.overhead_ms = float(overhead_ms)
        self.scale = float(scale)
        self._build_arrays()

    # -- precomputation --------------------------------------------------------------------------
    def _build_arrays(self) -> None:
        """Tabulate every covered resolution's costs once; remember why the others are not."""
        self._missing: dict[int, str] = {}
        self._additive: tuple[float, float, AdditiveCost] | None = None
        if not self.additive:
            from ..families import family_of

            self.resolutions = self._covered_resolutions()
            family = family_of(self.space)
            self._exact = family.cost_tables(self.space, self.resolutions, self._layer_mean)
            return
        fixed, blocks = {}, {}
        for r in self.space.resolutions:
            costs = self._resolution_costs(r)
            if costs is not None:
                fixed[r], blocks[r] = costs
        if not fixed:
            self._raise_uncovered()
        self.resolutions: tuple[int, ...] = tuple(fixed)
        """The resolutions of the space this model can predict (restrict a search to these)."""
        self._fixed = np.array(list(fixed.values()))
        self._blocks = np.ascontiguousarray(np.stack(list(blocks.values()), axis=-1))
        self._flat_blocks = self._blocks.ravel()
        self._build_indices()

    @property
    def additive(self) -> bool:
        """True if the space's costs are additive over genes (see the module docstring)."""
        from ..families import family_of

        return family_of(self.space).lut_additive

    def _covered_resolutions(self) -> tuple[int, ...]:
        """The resolutions at which the table holds every op of a non-additive family."""
        covered = []
        for r in self.space.resolutions:
            missing = self.table.missing_keys(resolution_ops(self.space, r))
            if missing:
                self._missing[r] = missing[0]
            else:
                covered.append(r)
        if not covered:
            self._raise_uncovered()
        return tuple(covered)

    def _raise_uncovered(self) -> NoReturn:
        r, key = next(iter(self._missing.items()))
        raise LatencyTableError(
            f"latency table for device {self.table.device!r} covers no resolution of space "
            f"{self.space.name!r} (at {r}: no entry for {key}); profile the device for it"
        )

    def _resolution_costs(self, r: int) -> tuple[float, np.ndarray] | None:
        """The fixed cost (stem, first block, head) and the ``[slot, kernel, expand]`` block costs
        at resolution ``r``; None (and the first missing key noted) if the table lacks an op."""
        space = self.space
        stem = arch_ops(space, space.restrict(resolutions=[r]).min_arch())[0]
        if self.table.get(stem, resolution=r) is None:  # cheap early exit
            self._missing[r] = stem.key
            return None
        ops = resolution_ops(space, r)
        missing = self.table.missing_keys(ops)
        if missing:
            self._missing[r] = missing[0]
            return None
        costs = np.zeros((space.n_blocks, len(space.kernel_choices), len(space.expand_choices)))
        for (slot, k, e), op in ops.blocks.items():
            ki, ei = space.kernel_choices.index(k), space.expand_choices.index(e)
            costs[slot, ki, ei] = self._mean(op, r)
        return sum(self._mean(op, r) for op in ops.fixed), costs

    def _build_indices(self) -> None:
        """Lookup arrays turning an :class:`ArchBatch` into positions in ``_flat_blocks``, laid
        out ``[slot, kernel, expand, resolution]``; invalid values map to ``_INVALID``."""
        space = self.space
        n_k, n_e, n_r = len(space.kernel_choices), len(space.expand_choices), len(self.resolutions)
        self._r_index = _index_of(self.resolutions)
        self._r_offset = np.where(self._r_index < 0, _INVALID, self._r_index)
        k_index, e_index = _index_of(space.kernel_choices), _index_of(space.expand_choices)
        invalid = (k_index[:, None] < 0) | (e_index[None, :] < 0)
        ke = (k_index[:, None] * n_e + e_index[None, :]) * n_r
        self._ke_index = np.where(invalid, _INVALID, ke)
        self._d_index = _index_of(space.all_depth_choices)
        self._slot_offset = np.arange(space.n_blocks) * (n_k * n_e * n_r)
        self._slot_in_stage = np.arange(space.n_blocks) % space.max_depth
        self._stage_of_slot = np.arange(space.n_blocks) // space.max_depth

    def _layer_mean(self, layer: LayerGeom, resolution: int) -> float:
        return self._mean(OpSpec.from_layer(layer, self.space.family), resolution)

    def _mean(self, op: OpSpec, resolution: int) -> float:
        entry = self.table.get(op, resolution=resolution)
        if entry is None:
            raise LatencyTableError(
                f"latency table for device {self.table.device!r} has no entry for op {op} "
                f"(resolution {resolution}); the table does not cover this resolution/op: "
                f"profile it, or restrict the space to resolutions {list(self.resolutions)}"
            )
        return entry.mean_ms

    # -- the additive form -----------------------------------------------------------------------
    def additive_cost(self) -> AdditiveCost:
        """:meth:`predict_batch` as an exact :class:`~ofabench.search.additive.AdditiveCost`
        over the space restricted to :attr:`resolutions`: ``scale * fixed + overhead_ms`` per
        resolution and ``scale * block`` per (slot, kernel, expand, resolution). The search
        evaluates latency constraints through it by one gather per population. A space whose
        costs are not additive (OFA-ResNet50's) is refused: use :meth:`predict_batch`."""
        if not self.additive:
            raise LatencyTableError(
                f"latency of space {self.space.name!r} (family {self.space.family!r}) is not "
                "additive over its genes (a block's key holds the previous stage's width); "
                "predict each subnet with LatencyModel.predict_batch"
            )
        cached = self._additive
        if cached is None or cached[:2] != (self.scale, self.overhead_ms):
            from ..search.additive import AdditiveCost

            space = self.space.restrict(resolutions=self.resolutions)
            base = self.scale * self._fixed + self.overhead_ms
            table = AdditiveCost(space, base, self.scale * self._blocks)
            cached = self._additive = (self.scale, self.overhead_ms, table)
        return cached[2]

    # -- prediction ------------------------------------------------------------------------------
    def lut_sum(self, arch: ArchConfig) -> float:
        """The plain sum of the table's mean latencies of ``arch``'s layers (ms), uncalibrated."""
        arch = self.space.validate(arch)
        return float(sum(self._mean(op, arch.r) for op in arch_ops(self.space, arch)))

    def predict(self, arch: ArchConfig) -> float:
        """Predicted latency of one subnet in ms (layer by layer, through the table's keys)."""
        return self.scale * self.lut_sum(arch) + self.overhead_ms

    def lut_sum_batch(self, batch: ArchBatch) -> np.ndarray:
        """:meth:`lut_sum` of every subnet of ``batch``, vectorised, shape (N,) (one arch at a
        time for a non-additive family)."""
        if not self.additive:
            sums = None if self._exact is None else self._exact(batch)
            if sums is None:  # no tables, or a value outside them: arch by arch (raises on it)
                sums = [self.lut_sum(arch) for arch in batch.to_archs()]
            return np.asarray(sums, dtype=np.float64)
        flat = self._flat_indices(batch)
        active = self._slot_in_stage < batch.d[:, self._stage_of_slot]
        fixed = self._fixed[self._r_index[batch.r]]
        return fixed + np.einsum("ij,ij->i", self._flat_blocks[flat], active)

    def predict_batch(self, batch: ArchBatch | Sequence[ArchConfig]) -> np.ndarray:
        """Predicted latency in ms of every subnet of ``batch``, shape (N,)."""
        if not isinstance(batch, ArchBatch):
            batch = ArchBatch.from_archs(list(batch))
        return self.scale * self.lut_sum_batch(batch) + self.overhead_ms

    def _flat_indices(self, batch: ArchBatch) -> np.ndarray:
        """(N, n_blocks) positions in the flat ``[resolution, slot, kernel, expand]`` cost array;
        raises on anything outside the space or the table."""
        try:
            flat = self._r_offset[batch.r][:, None] + self._slot_offset
            flat += self._ke_index[batch.ks, batch.e]
            bad = flat.min() < 0 or self._d_index[batch.d].min() < 0
        except (IndexError, ValueError):
            bad = True
        if bad or batch.ks.shape[1:] != (self.space.n_blocks,):
            self._raise_bad_batch(batch)
        return flat

    def _raise_bad_batch(self, batch: ArchBatch) -> NoReturn:
        bad_r = sorted(set(batch.r.tolist()) - set(self.resolutions))
        if bad_r:
            detail = "; ".join(
                f"{r}: no entry for {self._missing[r]}" for r in bad_r if r in self._missing
            )
            raise LatencyTableError(
                f"resolution(s) {bad_r} are not covered by the latency table of device "
                f"{self.table.device!r}; it covers {list(self.resolutions)}"
                + (f" ({detail})" if detail else "")
                + "; restrict the space with space.restrict(resolutions=model.resolutions)"
            )
        for arch in batch.to_archs():
            self.space.validate(arch)  # raises InvalidArchError naming the bad field
        raise InvalidArchError(f"batch does not fit space {self.space.name!r}")

    # -- calibration -----------------------------------------------------------------------------
    def fit_overhead(
        self,
        archs: Sequence[ArchConfig] | ArchBatch,
        measured_ms: Sequence[float] | np.ndarray,
        fit_scale: bool = True,
    ) -> LatencyModel:
        """A calibrated copy of this model: least-squares ``measured ≈ scale * lut_sum + overhead``
        over end-to-end measurements of ``archs`` (``fit_scale=False`` fits the overhead only)."""
        batch = archs if isinstance(archs, ArchBatch) else ArchBatch.from_archs(list(archs))
        sums = self.lut_sum_batch(batch)
        measured = np.asarray(measured_ms, dtype=np.float64)
        if measured.shape != sums.shape:
            raise LatencyTableError(
                f"fit_overhead got {len(sums)} archs but {measured.size} measurements"
            )
        if not fit_scale:
            return self._calibrated(1.0, float(np.mean(measured - sums)))
        if len(sums) < 2 or np.ptp(sums) == 0:
            raise LatencyTableError(
                "fit_overhead needs at least two archs with different predicted latencies to "
                "fit a scale; pass more archs or fit_scale=False"
            )
        design = np.stack([sums, np.ones_like(sums)], axis=1)
        (scale, overhead), *_ = np.linalg.lstsq(design, measured, rcond=None)
        return self._calibrated(float(scale), float(overhead))

    def _calibrated(self, scale: float, overhead_ms: float) -> LatencyModel:
        model = copy.copy(self)  # shares the read-only lookup arrays
        model.scale, model.overhead_ms = scale, overhead_ms
        return model

    def __repr__(self) -> str:
        return (
            f"LatencyModel(device={self.table.device!r}, space={self.space.name!r}, "
            f"resolutions={list(self.resolutions)}, scale={self.scale:g}, "
            f"overhead_ms={self.overhead_ms:g})"
        )

"""Architectures as rows of one small-integer matrix: the layout ``ks | e | d | r | extra`` of a
space and the batch operations on it (random sampling, OFA's mutation, uniform crossover, value
<-> index conversion). ``extra`` holds a family's genes beyond ``ks/e/d/r`` (OFA-ResNet50's stem
depth and width indices; none for the MBConv families, whose rows are unchanged). Pure numpy."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..space import ArchBatch, SpaceSpec


class Genome:
    """The row layout ``ks | e | d | r | extra`` of a space, and the batch operations on it.

    Rows of *values* (kernel sizes, expand ratios, depths, resolution) are what
    :meth:`to_batch` and the public operators use; the search itself works on rows of *choice
    indices* (``uint8``, see :meth:`random_index`, :meth:`indices`, :meth:`values`).
    """

    def __init__(self, space: SpaceSpec) -> None:
        from ..families import family_of

        family = family_of(space)
        family.require("search")
        self.space = space
        nb, ns = space.n_blocks, space.n_stages
        self.extra_choices = family.extra_choices(space)
        n_extra = len(self.extra_choices)
        self.groups = (
            [space.kernel_choices] * nb
            + [space.expand_choices] * nb
            + list(space.stage_depth_choices)
            + [space.resolutions]
            + list(self.extra_choices)
        )
        width = max(len(g) for g in self.groups)
        if width > 255:
            raise ConfigError(f"space {space.name!r} has more than 255 choices for one gene")
        self.options = np.array([list(g) + [g[-1]] * (width - len(g)) for g in self.groups])
        self.counts = np.array([len(g) for g in self.groups], dtype=np.float64)
        self.columns = np.arange(len(self.groups))[None, :]
        self._cuts = (nb, 2 * nb, 2 * nb + ns)
        self._extra_start = 2 * nb + ns + 1
        # mutation: one coin per slot (kernel and expand together), per stage, for the resolution
        # and per extra gene
        self._coin_of_column = np.r_[np.arange(nb), np.arange(nb), nb + np.arange(ns + 1 + n_extra)]
        self._thresholds: dict[tuple[float, float], np.ndarray] = {}
        self._luts = [_index_lut(c) for c in self._choice_sets()]
        self._extra_luts = [_index_lut(c) for c in self.extra_choices]
        self._stage_luts = [_index_lut(c) for c in space.stage_depth_choices]
        self._shared_depths = not any(stage.depths for stage in space.stages)

    def _choice_sets(self) -> tuple[tuple[int, ...], ...]:
        s = self.space
        return (s.kernel_choices, s.expand_choices, s.depth_choices, s.resolutions)

    @property
    def n_genes(self) -> int:
        return len(self.groups)

    # -- index space --------------------------------------------------------------------------
    def random_index(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniformly random rows of choice indices (every choice independent)."""
        return (rng.random((n, self.n_genes)) * self.counts).astype(np.uint8)

    def mutate_index(
        self, genes: np.ndarray, rng: np.random.Generator, prob: float, resolution_prob: float
    ) -> np.ndarray:
        """OFA's mutation of every row of indices (see :meth:`mutate`)."""
        thresholds = self._coin_thresholds(prob, resolution_prob)
        hit = (rng.random((len(genes), len(thresholds))) < thresholds)[:, self._coin_of_column]
        fresh = (rng.random(genes.shape) * self.counts).astype(np.uint8)
        return np.where(hit, fresh, genes)

    def meaningful(self, genes: np.ndarray) -> np.ndarray:
        """(N, n_genes) bool: the genes whose change changes the network (depths, resolution,
        kernel and expand of the slots each row runs)."""
        s = self.space
        nb, ns = s.n_blocks, s.n_stages
        depth_idx = genes[:, 2 * nb : 2 * nb + ns].astype(np.intp)
        depths = self.options[self.columns[:, 2 * nb : 2 * nb + ns], depth_idx]
        active = (np.arange(nb) % s.max_depth)[None, :] < np.repeat(depths, s.max_depth, axis=1)
        rest = np.ones((len(genes), ns + 1 + len(self.extra_choices)), dtype=bool)
        return np.concatenate([active, active, rest], axis=1) & (self.counts > 1)

    def mutate_one_index(self, genes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Every row with one meaningful gene (chosen uniformly) set to another of its choices:
        the mutation of regularized evolution (Real et al., 2019)."""
        pick = self.meaningful(genes) * rng.random(genes.shape)
        column = pick.argmax(axis=1)
        rows = np.arange(len(genes))
        counts = self.counts[column].astype(np.int64)
        step = 1 + (rng.random(len(genes)) * (counts - 1)).astype(np.int64)
        out = genes.copy()
        out[rows, column] = (genes[rows, column].astype(np.int64) + step) % counts
        return out

    def neighbours_index(self, row: np.ndarray) -> np.ndarray:
        """Every row that differs from ``row`` in one meaningful gene (a local-search step)."""
        columns = np.flatnonzero(self.meaningful(row[None, :])[0])
        out = []
        for c in columns:
            others = np.setdiff1d(np.arange(int(self.counts[c])), [row[c]])
            block = np.repeat(row[None, :], len(others), axis=0)
            block[:, c] = others
            out.append(block)
        return np.concatenate(out).astype(np.uint8) if out else np.empty((0, len(row)), np.uint8)

    def _coin_thresholds(self, prob: float, resolution_prob: float) -> np.ndarray:
        key = (prob, resolution_prob)
        if key not in self._thresholds:
            n_coins = self.space.n_blocks + self.space.n_stages
            extra = np.full(len(self.extra_choices), prob)
            self._thresholds[key] = np.r_[np.full(n_coins, prob), resolution_prob, extra]
        return self._thresholds[key]

    def values(self, genes: np.ndarray) -> np.ndarray:
        """Rows of choice indices -> rows of choice values (int64)."""
        return self.options[self.columns, genes]

    def indices(self, values: np.ndarray) -> np.ndarray:
        """Rows of choice values -> rows of choice indices; raises on values not in the space."""
        values = np.asarray(values, dtype=np.int64)
        i, j, k = self._cuts
        x = self._extra_start
        parts = [values[:, :i], values[:, i:j], values[:, j:k], values[:, k:x]]
        names = ("ks", "e", "d", "r")
        extra = [
            _lookup(lut, values[:, x + g : x + g + 1], "extra", choices)
            for g, (lut, choices) in enumerate(zip(self._extra_luts, self.extra_choices))
        ]
        out = [
            _lookup(lut, part, name, choices)
            if name != "d" or self._shared_depths
            else self._stage_depth_indices(part)
            for lut, part, name, choices in zip(self._luts, parts, names, self._choice_sets())
        ]
        return np.concatenate(out + extra, axis=1).astype(np.uint8)

    def _stage_depth_indices(self, depths: np.ndarray) -> np.ndarray:
        """Depth values -> indices where some stage has its own depth choices."""
        columns = [
            _lookup(lut, depths[:, s], "d", choices)
            for s, (lut, choices) in enumerate(
                zip(self._stage_luts, self.space.stage_depth_choices)
            )
        ]
        return np.stack(columns, axis=1)

    # -- value space (the public operators) ---------------------------------------------------
    def random(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniformly random rows of values (every choice independent)."""
        return self.values(self.random_index(n, rng))

    def mutate(
        self, genes: np.ndarray, rng: np.random.Generator, prob: float, resolution_prob: float
    ) -> np.ndarray:
        """OFA's mutation of every row of values: one coin per slot for its kernel and expand
        ratio, one per stage depth, one (``resolution_prob``) for the resolution."""
        return self.values(self.mutate_index(self.indices(genes), rng, prob, resolution_prob))

    @staticmethod
    def crossover(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Each gene of each child from row ``a`` or row ``b`` with equal chance."""
        n, width = a.shape
        random_bytes = rng.integers(0, 256, (n, (width + 7) // 8), dtype=np.uint8)
        take_a = np.unpackbits(random_bytes, axis=1, count=width).view(bool)
        return np.where(take_a, a, b)

    def to_batch(self, genes: np.ndarray) -> ArchBatch:
        """An :class:`ArchBatch` view of rows of values."""
        i, j, k = self._cuts
        extra = genes[:, self._extra_start :] if self.extra_choices else None
        return ArchBatch(
            ks=genes[:, :i], e=genes[:, i:j], d=genes[:, j:k], r=genes[:, k], extra=extra
        )

    @staticmethod
    def from_batch(batch: ArchBatch) -> np.ndarray:
        columns = [batch.ks, batch.e, batch.d, np.asarray(batch.r)[:, None]]
        if batch.extra is not None:
            columns.append(batch.extra)
        return np.concatenate(columns, axis=1).astype(np.int64)


def _index_lut(choices: tuple[int, ...]) -> np.ndarray:
    """value -> position in ``choices`` (-1 where a value is not a choice)."""
    lut = np.full(max(choices) + 2, -1, dtype=np.int64)
    lut[list(choices)] = np.arange(len(choices))
    return lut


def _lookup(lut: np.ndarray, values: np.ndarray, name: str, choices: tuple[int, ...]) -> np.ndarray:
    idx = lut[np.clip(values, 0, len(lut) - 1)]
    bad = (idx < 0) | (values < 0)
    if bad.any():
        raise ConfigError(
            f"arch field {name!r} holds {values[bad].flat[0]}; allowed: {list(choices)}"
        )
    return idx

"""The one-hot encoding of OFA-ResNet50 subnets, in the order and length of OFA's own
``ResNetArchEncoder`` (``ofa/nas/accuracy_predictor/arch_encoder.py``): a resolution one-hot,
the input stem's depth (skip or run its residual conv, 2 columns), a width-index one-hot for
each of the 6 width genes (stem middle, stem output, 4 stages), then an expand-ratio one-hot for
each of the supernet's blocks (18 for ResNet50), all zero for blocks a stage does not run (so
depth is encoded by which blocks are active). For ``ofa_resnet50`` at one resolution that is
1 + 2 + 6 x 3 + 18 x 3 = 75 features, column for column OFA's ``arch2feature``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, InvalidArchError
from ..space import ArchBatch, ArchConfig, SpaceSpec

LAYOUT = "ofa_resnet"
N_WIDTH_GENES = 6


class SameDescription:
    """Encoders are equal (and hash alike) when they are of one class with the same
    ``to_dict()`` description: the predictor files store and compare that description."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SameDescription)
            and type(other) is type(self)
            and self.to_dict() == other.to_dict()
        )

    def __hash__(self) -> int:
        return hash(tuple(map(str, self.to_dict().values())))


class ResNetArchEncoder(SameDescription):
    """Vectorised encoding of OFA-ResNet50 archs (the layout in the module docstring).
    :meth:`to_dict` describes it fully; :meth:`from_dict` rebuilds it without the space."""

    def __init__(self, space: SpaceSpec, resolution_encoding: str = "onehot") -> None:
        from ..families.resnet import BASE_DEPTHS, ResNetShape

        if resolution_encoding != "onehot":
            raise ConfigError(
                f"an OFA-ResNet50 predictor one-hots its resolutions; resolution encoding "
                f"{resolution_encoding!r} is for MobileNetV3 spaces; allowed: ['onehot']"
            )
        shape = ResNetShape.from_space(space)
        self._setup(
            space.resolutions,
            space.expand_choices,
            len(shape.width_choices),
            BASE_DEPTHS,
            shape.extra_depths,
        )

    def _setup(
        self,
        resolutions: Sequence[int],
        expand_choices: Sequence[int],
        n_widths: int,
        base_depths: Sequence[int],
        extra_depths: Sequence[int],
    ) -> None:
        self.resolutions = tuple(int(r) for r in resolutions)
        self.expand_choices = tuple(int(e) for e in expand_choices)
        self.n_widths = int(n_widths)
        self.base_depths = tuple(int(b) for b in base_depths)
        self.extra_depths = tuple(int(x) for x in extra_depths)
        self.resolution_encoding = "onehot"
        self.max_depth = max(self.base_depths) + max(self.extra_depths)
        top = max(self.extra_depths)
        stage_slot = [(s, j) for s, b in enumerate(self.base_depths) for j in range(b + top)]
        self._stage = np.array([s for s, _ in stage_slot])
        self._in_stage = np.array([j for _, j in stage_slot])
        self._slots = self._stage * self.max_depth + self._in_stage

    # -- layout ------------------------------------------------------------------------------
    @property
    def n_blocks(self) -> int:
        return len(self._slots)

    @property
    def n_features(self) -> int:
        return self._e_start + self.n_blocks * len(self.expand_choices)

    @property
    def _w_start(self) -> int:
        return len(self.resolutions) + 2

    @property
    def _e_start(self) -> int:
        return self._w_start + N_WIDTH_GENES * self.n_widths

    # -- description -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        from .mlp import ENCODER_FORMAT, SCHEMA_VERSION

        return {
            "format": ENCODER_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "layout": LAYOUT,
            "resolutions": list(self.resolutions),
            "expand_choices": list(self.expand_choices),
            "n_widths": self.n_widths,
            "base_depths": list(self.base_depths),
            "extra_depths": list(self.extra_depths),
            "n_features": self.n_features,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResNetArchEncoder:
        encoder = cls.__new__(cls)
        try:
            encoder._setup(
                data["resolutions"],
                data["expand_choices"],
                data["n_widths"],
                data["base_depths"],
                data["extra_depths"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"not an OFA-ResNet arch-encoder description: {dict(data)!r}"
            ) from exc
        return encoder

    def __repr__(self) -> str:
        return (
            f"ResNetArchEncoder({self.n_blocks} blocks, e={list(self.expand_choices)}, "
            f"{self.n_widths} widths, r={list(self.resolutions)}, F={self.n_features})"
        )

    # -- encoding ----------------------------------------------------------------------------
    def encode(self, archs: ArchBatch | Sequence[ArchConfig] | ArchConfig) -> np.ndarray:
        """Encode one arch -> (F,), or several (list or :class:`ArchBatch`) -> (N, F)."""
        if isinstance(archs, ArchConfig):
            return self.encode_batch(ArchBatch.from_archs([archs]))[0]
        if not isinstance(archs, ArchBatch):
            archs = ArchBatch.from_archs(list(archs))
        return self.encode_batch(archs)

    def encode_batch(self, batch: ArchBatch) -> np.ndarray:
        """(N, F) float32 features, numpy only; a value outside the choices is one line naming
        the field."""
        extra = self._checked_extra(batch)
        n = len(batch)
        rows = np.arange(n)
        out = np.zeros((n, self.n_features), dtype=np.float32)
        out[rows, _index(batch.r, self.resolutions, "r")] = 1.0
        out[rows, len(self.resolutions) + extra[:, 0]] = 1.0
        widths = self._w_start + np.arange(N_WIDTH_GENES) * self.n_widths + extra[:, 1:]
        out[rows[:, None], widths] = 1.0
        e_idx = _index(batch.e[:, self._slots], self.expand_choices, "e")
        cols = self._e_start + np.arange(self.n_blocks) * len(self.expand_choices) + e_idx
        out[rows[:, None], cols] = self._active(batch.d)
        return out

    def _checked_extra(self, batch: ArchBatch) -> np.ndarray:
        n_extra = 1 + N_WIDTH_GENES
        extra = batch.extra
        if extra is None or extra.shape != (len(batch), n_extra):
            got = None if extra is None else extra.shape
            raise InvalidArchError(
                f"an OFA-ResNet arch batch needs extra genes of shape ({len(batch)}, {n_extra}) "
                f"(stem depth, 6 width indices); got {got}"
            )
        bad = (extra[:, 0] < 0) | (extra[:, 0] > 1)
        bad |= ((extra[:, 1:] < 0) | (extra[:, 1:] >= self.n_widths)).any(axis=1)
        if bad.any():
            raise InvalidArchError(
                f"arch extra genes {extra[bad][0].tolist()} are out of range (stem depth 0/1, "
                f"width indices 0..{self.n_widths - 1})"
            )
        if batch.e.shape[1:] != (len(self.base_depths) * self.max_depth,):
            raise InvalidArchError(
                f"arch batch field 'e' has shape {batch.e.shape}; this encoder needs "
                f"({len(batch)}, {len(self.base_depths) * self.max_depth})"
            )
        return extra

    def _active(self, d: np.ndarray) -> np.ndarray:
        """(N, n_blocks) 0/1: the blocks each subnet runs; a depth outside the choices raises."""
        extra_depth = d - np.array(self.base_depths)[None, :]
        bad = ~np.isin(extra_depth, self.extra_depths)
        if d.shape[1:] != (len(self.base_depths),) or bad.any():
            raise InvalidArchError(
                f"arch field 'd' holds {d[bad.any(axis=1)][0].tolist() if bad.any() else d.shape}"
                f"; allowed per stage: base depths {list(self.base_depths)} + "
                f"{list(self.extra_depths)}"
            )
        return (self._in_stage[None, :] < d[:, self._stage]).astype(np.float32)


def _index(values: np.ndarray, choices: tuple[int, ...], name: str) -> np.ndarray:
    """Positions of ``values`` in ``choices``; one line naming ``name`` if one is not in it."""
    values = np.asarray(values, dtype=np.int64)
    known = np.isin(values, choices)
    if not known.all():
        raise InvalidArchError(
            f"arch field {name!r} holds {int(values[~known].flat[0])}, which the encoder does "
            f"not know; allowed: {list(choices)}"
        )
    table = np.zeros(max(choices) + 1, dtype=np.int64)
    table[list(choices)] = np.arange(len(choices))
    return table[values]

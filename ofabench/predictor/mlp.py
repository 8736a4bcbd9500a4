"""An MLP accuracy predictor over a one-hot architecture encoding, and import of OFA's own.

The encoding (:class:`ArchEncoder`) is, in order: a kernel-size one-hot for every block slot,
an expand-ratio one-hot for every block slot (both all-zero for slots a stage does not run),
then a resolution one-hot. With ``resolution_encoding="ofa"`` the resolution part is OFA's:
8 bins of 16 px starting at 112, so the OFA-MobileNetV3 ImageNet spaces encode to OFA's 128
features and OFA's published ``acc_predictor.pth`` reads them unchanged
(:func:`load_ofa_predictor`). OFA-ResNet50 spaces are encoded by
:class:`~ofabench.predictor.resnet_encoder.ResNetArchEncoder` (OFA's ResNet layout);
:func:`make_encoder` picks a space's encoder by its family, :func:`encoder_from_dict` a file's.

Every predictor knows the space it was trained on (``trained_space``, saved with it; OFA's
``acc_predictor.pth`` is the ``ofa_mbv3_w1.2`` space's, the network of OFA's tutorial). Using
it for another space is an error unless explicitly allowed (see :mod:`.spaces`).

Predictions are fractions (0.76, not 76); fit metrics report RMSE in accuracy points.
:meth:`AccuracyPredictor.predict` runs the MLP in numpy on float32 copies of the weights (made
once after a fit or load) with BLAS on one thread: for the small batches of a search, torch's
per-call overhead and a second BLAS thread cost more than the arithmetic.

Accuracy datasets for :func:`fit_from_file` are CSV (or Parquet) files with one row per subnet:
``arch`` (the arch as a JSON string, ``{"ks": [...], "e": [...], "d": [...], "r": 224}``) and
``accuracy`` (a fraction); an ``r`` column, if present, supplies or must agree with the
resolution; other columns (``macs``, ``params``...) are ignored. ``ofabench sample-accuracy``
writes exactly this.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..blas import single_threaded_blas
from ..errors import CheckpointError, ConfigError, DatasetError, InvalidArchError
from ..files import input_file, load_torch
from ..space import ArchBatch, ArchConfig, SpaceSpec, get_space
from .resnet_encoder import LAYOUT as RESNET_LAYOUT
from .resnet_encoder import ResNetArchEncoder, SameDescription
from .spaces import check_predictor_space

logger = logging.getLogger("ofabench")

ENCODER_FORMAT = "ofabench.arch_encoder"
PREDICTOR_FORMAT = "ofabench.accuracy_predictor"
SCHEMA_VERSION = 2  # 2: records trained_space
READABLE_VERSIONS = (1, 2)
OFA_PREDICTOR_SPACE = "ofa_mbv3_w1.2"  # the network OFA's tutorial pairs acc_predictor.pth with
RESOLUTION_ENCODINGS = ("onehot", "ofa")
# OFA's resolution bins: index (r - 112) // 16, 8 slots (112..239 px).
OFA_RES_START, OFA_RES_STEP, OFA_RES_SLOTS = 112, 16, 8

Archs = ArchBatch | Sequence[ArchConfig]


# -- encoding ----------------------------------------------------------------------------------
class ArchEncoder(SameDescription):
    """Vectorised one-hot encoding of architectures (see the module docstring for the layout).

    ``ArchEncoder(space)`` one-hots each of ``space.resolutions``; ``resolution_encoding="ofa"``
    uses OFA's 16-px bins. :meth:`to_dict` describes the encoder fully, so
    :meth:`from_dict` rebuilds it without the space.
    """

    def __init__(self, space: SpaceSpec, resolution_encoding: str = "onehot") -> None:
        from ..families import family_of

        family = family_of(space)
        family.require("predictor")
        if family.encoder_layout != "slots":
            raise ConfigError(
                f"space {space.name!r} (family {family.name!r}) is encoded by its family's "
                f"encoder ({family.encoder_layout!r}); use make_encoder(space)"
            )
        if resolution_encoding not in RESOLUTION_ENCODINGS:
            raise ConfigError(
                f"unknown resolution encoding {resolution_encoding!r}; "
                f"allowed: {list(RESOLUTION_ENCODINGS)}"
            )
        slots = space.resolutions
        if resolution_encoding == "ofa":
            slots = tuple(OFA_RES_START + OFA_RES_STEP * i for i in range(OFA_RES_SLOTS))
            _check_ofa_resolutions(space.resolutions)
        self._setup(
            space.kernel_choices,
            space.expand_choices,
            space.n_stages,
            space.max_depth,
            resolution_encoding,
            slots,
        )

    def _setup(
        self,
        kernel_choices: Sequence[int],
        expand_choices: Sequence[int],
        n_stages: int,
        max_depth: int,
        resolution_encoding: str,
        resolution_slots: Sequence[int],
    ) -> None:
        self.kernel_choices = tuple(int(k) for k in kernel_choices)
        self.expand_choices = tuple(int(e) for e in expand_choices)
        self.n_stages = int(n_stages)
        self.max_depth = int(max_depth)
        self.resolution_encoding = resolution_encoding
        self.resolution_slots = tuple(int(r) for r in resolution_slots)
        self._kernel_lut = _lookup_table(self.kernel_choices)
        self._expand_lut = _lookup_table(self.expand_choices)
        self._res_lut = (
            _lookup_table(self.resolution_slots) if resolution_encoding == "onehot" else None
        )
        self._build_column_tables()

    def _build_column_tables(self) -> None:
        """Direct value -> feature-column tables for the fast path of :meth:`encode_batch`.

        Every table is twice as wide as the largest value, filled with -1 where a value is not
        a choice, so that small negative values (which numpy indexing wraps) land on -1 too."""
        nb, n_k, n_e = self.n_blocks, len(self.kernel_choices), len(self.expand_choices)
        expand_start, res_start = self._offsets()
        slots = np.arange(nb)[:, None]
        self._kernel_cols = _column_table(self.kernel_choices, slots * n_k)
        self._expand_cols = _column_table(self.expand_choices, expand_start + slots * n_e)
        self._res_cols = res_start + self._resolution_table()
        self._res_cols[self._resolution_table() < 0] = -1
        # depth value -> active slots (1/0); rows of invalid depths hold 2, which is checked for
        active = np.arange(self.max_depth)[None, :] < np.arange(2 * (self.max_depth + 1))[:, None]
        self._depth_active = active.astype(np.int8)
        self._depth_active[0] = 2
        self._depth_active[self.max_depth + 1 :] = 2
        self._slot_index = np.arange(nb)[None, :]

    def _resolution_table(self) -> np.ndarray:
        """resolution value -> slot of the resolution one-hot (-1 if not encodable)."""
        if self._res_lut is not None:
            return np.concatenate([self._res_lut, np.full(len(self._res_lut), -1)])
        high = OFA_RES_START + OFA_RES_STEP * OFA_RES_SLOTS
        r = np.arange(2 * high)
        return np.where((r >= OFA_RES_START) & (r < high), (r - OFA_RES_START) // OFA_RES_STEP, -1)

    # -- layout ----------------------------------------------------------------------------
    @property
    def n_blocks(self) -> int:
        return self.n_stages * self.max_depth

    @property
    def n_features(self) -> int:
        per_slot = len(self.kernel_choices) + len(self.expand_choices)
        return self.n_blocks * per_slot + len(self.resolution_slots)

    def _offsets(self) -> tuple[int, int]:
        expand_start = self.n_blocks * len(self.kernel_choices)
        return expand_start, expand_start + self.n_blocks * len(self.expand_choices)

    # -- description -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ENCODER_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "kernel_choices": list(self.kernel_choices),
            "expand_choices": list(self.expand_choices),
            "n_stages": self.n_stages,
            "max_depth": self.max_depth,
            "resolution_encoding": self.resolution_encoding,
            "resolution_slots": list(self.resolution_slots),
            "n_features": self.n_features,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchEncoder:
        if data.get("format") != ENCODER_FORMAT:
            raise ConfigError(f"not an ofabench arch-encoder description: {dict(data)!r}")
        if data.get("resolution_encoding") not in RESOLUTION_ENCODINGS:
            raise ConfigError(
                f"unknown resolution encoding {data.get('resolution_encoding')!r}; "
                f"allowed: {list(RESOLUTION_ENCODINGS)}"
            )
        encoder = cls.__new__(cls)
        encoder._setup(
            data["kernel_choices"],
            data["expand_choices"],
            data["n_stages"],
            data["max_depth"],
            data["resolution_encoding"],
            data["resolution_slots"],
        )
        return encoder

    def __repr__(self) -> str:
        return (
            f"ArchEncoder({self.n_stages}x{self.max_depth} slots, k={list(self.kernel_choices)}, "
            f"e={list(self.expand_choices)}, r={self.resolution_encoding}, F={self.n_features})"
        )

    # -- encoding --------------------------------------------------------------------------
    def encode(self, archs: Archs | ArchConfig) -> np.ndarray:
        """Encode one arch -> (F,), or several (list or :class:`ArchBatch`) -> (N, F)."""
        if isinstance(archs, ArchConfig):
            return self.encode_batch(ArchBatch.from_archs([archs]))[0]
        return self.encode_batch(as_batch(archs))

    def encode_batch(self, batch: ArchBatch) -> np.ndarray:
        """(N, F) float32 features of a whole batch, numpy only (no loop over archs)."""
        self._check_shapes(batch)
        columns = self._columns(batch)
        if columns is None:
            return self._encode_checked(batch)
        cols, values = columns
        n = len(batch)
        out = np.zeros((n, self.n_features), dtype=np.float32)
        out[np.arange(n)[:, None], cols] = values
        return out

    def _columns(self, batch: ArchBatch) -> tuple[np.ndarray, np.ndarray] | None:
        """Feature columns (N, 2 * n_blocks + 1) of every kernel, expand and resolution choice
        and the matching 0/1 values; None if any value is out of range (the checked path then
        names it)."""
        n, nb = len(batch), self.n_blocks
        try:
            cols = np.concatenate(
                [
                    self._kernel_cols[self._slot_index, batch.ks],
                    self._expand_cols[self._slot_index, batch.e],
                    self._res_cols[batch.r][:, None],
                ],
                axis=1,
            )
            active = self._depth_active[batch.d].reshape(n, nb)
        except IndexError:
            return None
        if cols.min() < 0 or active.max() > 1:
            return None
        return cols, np.concatenate([active, active, np.ones((n, 1), np.int8)], axis=1)

    def _encode_checked(self, batch: ArchBatch) -> np.ndarray:
        """The slow, value-checking encoding: raises InvalidArchError naming a bad value."""
        n = len(batch)
        active = self._active_mask(batch.d)
        out = np.zeros((n, self.n_features), dtype=np.float32)
        rows = np.arange(n)[:, None]
        slots = np.arange(self.n_blocks)[None, :]
        expand_start, res_start = self._offsets()
        k_idx = _lookup(self._kernel_lut, batch.ks, "ks", self.kernel_choices)
        e_idx = _lookup(self._expand_lut, batch.e, "e", self.expand_choices)
        out[rows, slots * len(self.kernel_choices) + k_idx] = active
        out[rows, expand_start + slots * len(self.expand_choices) + e_idx] = active
        out[np.arange(n), res_start + self._resolution_index(batch.r)] = 1.0
        return out

    def _active_mask(self, depths: np.ndarray) -> np.ndarray:
        if depths.min(initial=1) < 1 or depths.max(initial=1) > self.max_depth:
            bad = depths[(depths < 1) | (depths > self.max_depth)][0]
            raise InvalidArchError(
                f"arch field 'd' holds {bad}; the encoder allows depths 1..{self.max_depth}"
            )
        slot_in_stage = np.arange(self.n_blocks) % self.max_depth
        return slot_in_stage[None, :] < np.repeat(depths, self.max_depth, axis=1)

    def _resolution_index(self, r: np.ndarray) -> np.ndarray:
        if self._res_lut is not None:
            return _lookup(self._res_lut, r, "r", self.resolution_slots)
        idx = (r - OFA_RES_START) // OFA_RES_STEP
        bad = (idx < 0) | (idx >= OFA_RES_SLOTS)
        if bad.any():
            raise InvalidArchError(
                f"arch resolution r = {int(r[bad][0])} is outside OFA's resolution bins; "
                f"allowed: {OFA_RES_START}..{OFA_RES_START + OFA_RES_STEP * OFA_RES_SLOTS - 1}"
            )
        return idx

    def _check_shapes(self, batch: ArchBatch) -> None:
        expected = {
            "ks": (len(batch), self.n_blocks),
            "e": (len(batch), self.n_blocks),
            "d": (len(batch), self.n_stages),
            "r": (len(batch),),
        }
        for name, shape in expected.items():
            got = np.shape(getattr(batch, name))
            if got != shape:
                raise InvalidArchError(
                    f"arch batch field {name!r} has shape {got}; this encoder needs {shape} "
                    f"({self.n_stages} stages x {self.max_depth} slots)"
                )


Encoder = ArchEncoder | ResNetArchEncoder


def make_encoder(space: SpaceSpec, resolution_encoding: str = "onehot") -> Encoder:
    """The encoder of ``space``'s family: :class:`ArchEncoder` for the MBConv families,
    :class:`~ofabench.predictor.resnet_encoder.ResNetArchEncoder` for OFA-ResNet50."""
    from ..families import family_of

    family = family_of(space)
    family.require("predictor")
    if family.encoder_layout == RESNET_LAYOUT:
        return ResNetArchEncoder(space, resolution_encoding)
    return ArchEncoder(space, resolution_encoding)


def encoder_from_dict(data: Mapping[str, Any]) -> Encoder:
    """The encoder a predictor file describes (its ``layout``: absent for :class:`ArchEncoder`)."""
    if not isinstance(data, Mapping) or data.get("format") != ENCODER_FORMAT:
        raise ConfigError(f"not an ofabench arch-encoder description: {data!r}")
    layout = data.get("layout", "slots")
    if layout == RESNET_LAYOUT:
        return ResNetArchEncoder.from_dict(data)
    if layout != "slots":
        raise ConfigError(
            f"unknown arch-encoder layout {layout!r}; allowed: slots, {RESNET_LAYOUT}"
        )
    return ArchEncoder.from_dict(data)


def _check_ofa_resolutions(resolutions: Sequence[int]) -> None:
    high = OFA_RES_START + OFA_RES_STEP * OFA_RES_SLOTS
    outside = [r for r in resolutions if not OFA_RES_START <= r < high]
    if outside:
        raise ConfigError(
            f"resolutions {outside} do not fit OFA's resolution encoding "
            f"({OFA_RES_START}..{high - 1}); use resolution_encoding='onehot'"
        )


def _column_table(choices: tuple[int, ...], offsets: np.ndarray) -> np.ndarray:
    """(slots, 2 * (max + 1)): column ``offsets[slot] + position of v`` for each choice v,
    -1 elsewhere."""
    table = np.full((len(offsets), 2 * (max(choices) + 1)), -1, dtype=np.intp)
    table[:, list(choices)] = offsets + np.arange(len(choices))[None, :]
    return table


def _lookup_table(choices: tuple[int, ...]) -> np.ndarray:
    """value -> index of ``choices``, -1 for values not in it (values are small integers)."""
    if min(choices) < 0:
        raise ConfigError(f"choices must be non-negative integers, got {list(choices)}")
    table = np.full(max(choices) + 1, -1, dtype=np.int64)
    table[list(choices)] = np.arange(len(choices))
    return table


def _lookup(
    table: np.ndarray, values: np.ndarray, name: str, choices: tuple[int, ...]
) -> np.ndarray:
    values = np.asarray(values, dtype=np.int64)
    clipped = np.clip(values, 0, len(table) - 1)
    idx = np.where(values == clipped, table[clipped], -1)
    if (idx < 0).any():
        bad = int(values[idx < 0].flat[0])
        raise InvalidArchError(
            f"arch field {name!r} holds {bad}, which the encoder does not know; "
            f"allowed: {list(choices)}"
        )
    return idx


def as_batch(archs: Archs) -> ArchBatch:
    """An :class:`ArchBatch` from a batch or a sequence of :class:`ArchConfig`."""
    if isinstance(archs, ArchBatch):
        return archs
    return ArchBatch.from_archs(list(archs))


# -- rank metrics ------------------------------------------------------------------------------
def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b (scipy if importable, else an O(n^2) numpy version)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    try:
        from scipy.stats import kendalltau
    except ImportError:
        return _kendall_tau_numpy(x, y)
    return float(kendalltau(x, y).statistic)


def spearman_rho(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (scipy if importable, else numpy on average ranks)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    try:
        from scipy.stats import spearmanr
    except ImportError:
        return _spearman_numpy(x, y)
    return float(spearmanr(x, y).statistic)


def _kendall_tau_numpy(x: np.ndarray, y: np.ndarray) -> float:
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    denom = math.sqrt(float(np.abs(sx).sum()) * float(np.abs(sy).sum()))
    return float((sx * sy).sum() / denom) if denom > 0 else float("nan")


def _average_ranks(x: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    return (first_rank + (counts - 1) / 2.0)[inverse]


def _spearman_numpy(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


@dataclass(frozen=True)
class FitReport:
    """How a fit went: RMSE in accuracy points, rank correlations, on held-out archs
    (``evaluated_on="train"`` when ``val_fraction`` was 0)."""

    rmse_pct: float
    kendall_tau: float
    spearman_rho: float
    n_train: int
    n_val: int
    epochs: int
    final_train_loss: float
    evaluated_on: str = "val"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- the predictor -----------------------------------------------------------------------------
def build_mlp(n_features: int, hidden_size: int = 400, n_hidden: int = 3) -> nn.Sequential:
    """Linear(F, H)-ReLU x ``n_hidden`` -> Linear(H, 1) as ``nn.Sequential`` (``0.weight``...)."""
    layers: list[nn.Module] = []
    width = n_features
    for _ in range(n_hidden):
        layers += [nn.Linear(width, hidden_size), nn.ReLU()]
        width = hidden_size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class AccuracyPredictor:
    """Predicts the top-1 accuracy (a fraction) of architectures of ``space``.

    ``trained_space`` is the space whose subnets it was (or will be) trained on: ``space``
    itself unless loaded for a restriction of it, or, where explicitly allowed, another space
    (``space_mismatch`` then says so)."""

    def __init__(
        self,
        space: SpaceSpec,
        encoder: Encoder | None = None,
        hidden_size: int = 400,
        n_hidden: int = 3,
        seed: int = 0,
    ) -> None:
        self.space = space
        self.encoder = encoder if encoder is not None else make_encoder(space)
        self.hidden_size = hidden_size
        self.n_hidden = n_hidden
        self.provenance: dict[str, Any] = {"source": "untrained"}
        self.trained_space = space
        self.space_mismatch: str | None = None
        self._numpy_layers: list[tuple[np.ndarray, np.ndarray]] | None = None
        self.model = self._fresh_model(seed)

    @property
    def model(self) -> nn.Sequential:
        """The torch MLP. After changing its weights in place, call :meth:`refresh`."""
        return self._model

    @model.setter
    def model(self, model: nn.Sequential) -> None:
        self._model = model
        self.refresh()

    def refresh(self) -> None:
        """Forget the numpy copy of the weights (rebuilt from ``model`` on the next predict)."""
        self._numpy_layers = None

    def _fresh_model(self, seed: int) -> nn.Sequential:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_mlp(self.encoder.n_features, self.hidden_size, self.n_hidden)
        return model.eval()

    # -- prediction ------------------------------------------------------------------------
    def predict(self, archs: Archs) -> np.ndarray:
        """Predicted accuracy (fractions) of a batch or list of archs: float32 array (N,)."""
        return self.predict_features(self.encoder.encode_batch(as_batch(archs)))

    # skipped blocks encode as zeros: the search may share scores between archs that differ
    # only there (see ofabench.search.evolve)
    predict.ignores_inactive_slots = True  # type: ignore[attr-defined]
    __call__ = predict

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """The MLP on encoded features (N, F), in numpy with one BLAS thread: float32 (N,)."""
        layers = self._layers()
        h = np.asarray(features, dtype=np.float32)
        with single_threaded_blas():
            for weight, bias in layers[:-1]:
                h = h @ weight
                h += bias
                np.maximum(h, 0.0, out=h)
            weight, bias = layers[-1]
            out = h @ weight
        return (out[:, 0] + bias[0]).astype(np.float32, copy=False)

    def _layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._numpy_layers is None:
            self._numpy_layers = _numpy_mlp(self.model)
        return self._numpy_layers

    # -- training --------------------------------------------------------------------------
    def fit(
        self,
        archs: Archs,
        accs: Sequence[float] | np.ndarray,
        epochs: int = 200,
        lr: float = 1e-3,
        seed: int = 0,
        val_fraction: float = 0.2,
        batch_size: int = 256,
        weight_decay: float = 1e-4,
    ) -> FitReport:
        """Train from a fresh initialisation (MSE, Adam) on a random train split and report
        RMSE (points), Kendall tau and Spearman rho on the held-out rest. ``accs`` are fractions."""
        features = self.encoder.encode_batch(as_batch(archs))
        targets = _check_targets(accs, len(features))
        train_idx, val_idx = _split(len(features), val_fraction, seed)
        self.model = self._fresh_model(seed)
        with torch.no_grad():
            self.model[-1].bias.fill_(float(targets[train_idx].mean()))
        loss = self._train(
            features[train_idx], targets[train_idx], epochs, lr, seed, batch_size, weight_decay
        )
        eval_idx = val_idx if len(val_idx) else train_idx
        report = self._evaluate(features[eval_idx], targets[eval_idx], epochs, loss)
        report = dataclasses.replace(
            report,
            n_train=len(train_idx),
            n_val=len(val_idx),
            evaluated_on="val" if len(val_idx) else "train",
        )
        self.provenance = _fit_provenance(report, lr=lr, seed=seed, batch_size=batch_size)
        logger.info("accuracy predictor fit: %s", report)
        return report

    def _train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        epochs: int,
        lr: float,
        seed: int,
        batch_size: int,
        weight_decay: float,
    ) -> float:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
        self.model.train()
        last = float("nan")
        for _ in range(epochs):
            last = self._train_epoch(xt, yt, opt, gen, batch_size)
            sched.step()
        self.model.eval()
        self.refresh()
        return last

    def _train_epoch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        opt: torch.optim.Optimizer,
        gen: torch.Generator,
        batch_size: int,
    ) -> float:
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            loss = nn.functional.mse_loss(self.model(x[idx])[:, 0], y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return total / len(x)

    def _evaluate(self, x: np.ndarray, y: np.ndarray, epochs: int, loss: float) -> FitReport:
        with torch.no_grad():
            pred = self.model(torch.from_numpy(x))[:, 0].numpy().astype(np.float64)
        rmse = float(np.sqrt(np.mean((pred - y) ** 2))) * 100.0
        tau = kendall_tau(pred, y) if len(y) > 1 else float("nan")
        rho = spearman_rho(pred, y) if len(y) > 1 else float("nan")
        return FitReport(rmse, tau, rho, 0, 0, epochs, loss)

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write state dict, encoder, space and provenance to one torch file, atomically."""
        from ..provenance import atomic_open

        payload = {
            "format": PREDICTOR_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "state_dict": self.model.state_dict(),
            "encoder": self.encoder.to_dict(),
            "hidden_size": self.hidden_size,
            "n_hidden": self.n_hidden,
            "space": self.space.to_dict(),
            "space_fingerprint": self.space.fingerprint(),
            "trained_space": self.trained_space.to_dict(),
            "provenance": self.provenance,
        }
        with atomic_open(path, "wb") as handle:
            torch.save(payload, handle)

    @classmethod
    def load(
        cls, path: str | Path, space: SpaceSpec | None = None, allow_space_mismatch: bool = False
    ) -> AccuracyPredictor:
        """Read a file written by :meth:`save`. With ``space``, refuse it unless ``space`` is
        the space it was trained on or a restriction of it (or ``allow_space_mismatch``)."""
        payload = _read_payload(path)
        trained = _trained_space(payload, path)
        note = None
        if space is not None:
            note = check_predictor_space(trained, space, str(path), allow_space_mismatch)
        predictor = cls(
            space if space is not None else SpaceSpec.from_dict(payload["space"]),
            encoder_from_dict(payload["encoder"]),
            hidden_size=int(payload["hidden_size"]),
            n_hidden=int(payload["n_hidden"]),
        )
        _load_state(predictor.model, payload["state_dict"], path)
        predictor.refresh()
        predictor.provenance = dict(payload.get("provenance") or {})
        predictor.trained_space, predictor.space_mismatch = trained, note
        return predictor


def _numpy_mlp(model: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    """float32 ``(weight.T, bias)`` of every Linear of a Linear-ReLU-...-Linear stack."""
    modules = list(model)
    linears = modules[0::2]
    relus = modules[1::2]
    if not all(isinstance(m, nn.Linear) for m in linears) or not all(
        isinstance(m, nn.ReLU) for m in relus
    ):
        raise CheckpointError(f"predictor MLP must alternate Linear and ReLU layers: {model}")
    with torch.no_grad():
        return [
            (
                np.ascontiguousarray(m.weight.detach().cpu().numpy().T, dtype=np.float32),
                m.bias.detach().cpu().numpy().astype(np.float32),
            )
            for m in linears
        ]


def _check_targets(accs: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    targets = np.asarray(accs, dtype=np.float32).reshape(-1)
    if len(targets) != n:
        raise ConfigError(f"got {n} archs but {len(targets)} accuracies; pass one per arch")
    if not np.isfinite(targets).all():
        raise ConfigError("accuracies must be finite numbers")
    if targets.max(initial=0.0) > 1.0 or targets.min(initial=0.0) < 0.0:
        raise ConfigError(
            "accuracies must be fractions in [0, 1] (0.76, not 76); "
            f"got {targets.min():g}..{targets.max():g}"
        )
    return targets


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    n_val = int(round(n * val_fraction))
    if n - n_val < 1:
        raise ConfigError(f"{n} archs leave nothing to train on with val_fraction={val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _fit_provenance(report: FitReport, **settings: Any) -> dict[str, Any]:
    from ..provenance import provenance

    return provenance(source="fit", fit=report.to_dict(), settings=settings)


def _read_payload(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    payload = load_torch(path, "predictor file")
    if not isinstance(payload, dict) or payload.get("format") != PREDICTOR_FORMAT:
        raise CheckpointError(
            f"{path} is not an ofabench accuracy predictor; for OFA's acc_predictor.pth "
            "use load_ofa_predictor"
        )
    if payload.get("schema_version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path} has schema version {payload.get('schema_version')}; "
            f"this ofabench reads versions {list(READABLE_VERSIONS)}"
        )
    return payload


def _trained_space(payload: Mapping[str, Any], path: str | Path) -> SpaceSpec:
    """The space a saved predictor was trained on; files from before it was recorded (schema
    1) are read as trained on the space they were saved for, and say so."""
    if "trained_space" in payload:
        return SpaceSpec.from_dict(payload["trained_space"])
    if "space" not in payload:
        raise CheckpointError(
            f"predictor file {path} does not record the space it was trained on; refit it "
            "with `ofabench fit-predictor`"
        )
    space = SpaceSpec.from_dict(payload["space"])
    logger.warning(
        "predictor file %s is from an older ofabench (schema 1) that did not record the space "
        "a predictor was trained on; taking the space it was saved for, %r (refit or re-save "
        "it to record it)",
        path,
        space.name,
    )
    return space


def _load_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"predictor weights in {path} do not fit the MLP: {exc}") from exc


# -- OFA's published predictor -----------------------------------------------------------------
def load_ofa_predictor(
    path: str | Path, space: SpaceSpec | None = None, *, allow_space_mismatch: bool = False
) -> AccuracyPredictor:
    """OFA's ImageNet ``acc_predictor.pth`` as an :class:`AccuracyPredictor` with OFA's encoding
    (128 features), for the ``ofa_mbv3_w1.2`` space it was trained on (the network of OFA's
    tutorial, which pairs it with the Note10 tables) or a restriction of it.

    The encoding sees only kernel sizes, expand ratios, depths and the resolution, so any
    OFA-MobileNetV3 width (``ofa_mbv3_w1.0``) can be encoded; using it for such a space needs
    ``allow_space_mismatch`` (recorded in ``space_mismatch``): its predictions are then OFA's
    w1.2 numbers, not a fit to that space.
    """
    reference = get_space(OFA_PREDICTOR_SPACE)
    space = reference if space is None else space
    _check_ofa_encodable(space, reference)
    note = check_predictor_space(reference, space, f"ofa:{path}", allow_space_mismatch)
    encoder = ArchEncoder(dataclasses.replace(reference, resolutions=space.resolutions), "ofa")
    predictor = AccuracyPredictor(space, encoder)
    _load_state(predictor.model, _ofa_state_dict(path), path)
    predictor.refresh()
    predictor.trained_space, predictor.space_mismatch = reference, note
    predictor.provenance = {
        "source": "ofa_acc_predictor",
        "file": str(Path(path).resolve()),
        "trained_for": reference.name,
    }
    return predictor


def _check_ofa_encodable(space: SpaceSpec, reference: SpaceSpec) -> None:
    """Raise unless OFA's encoding can encode ``space`` (its stages, slots and choices)."""
    fits = (space.n_stages, space.max_depth) == (reference.n_stages, reference.max_depth) and all(
        set(getattr(space, f)) <= set(getattr(reference, f))
        for f in ("kernel_choices", "expand_choices", "depth_choices")
    )
    if not fits:
        raise ConfigError(
            f"OFA's accuracy predictor encodes the OFA-MobileNetV3 ImageNet space "
            f"({reference.n_stages} stages x {reference.max_depth} slots, kernels "
            f"{list(reference.kernel_choices)}, expand ratios {list(reference.expand_choices)}); "
            f"space {space.name!r} does not fit that encoding"
        )
    _check_ofa_resolutions(space.resolutions)


def _ofa_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    state = load_torch(path, "OFA predictor file")
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} does not hold a state dict")
    return {_strip_prefix(k): v for k, v in state.items()}


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "model.", "layers."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key


# -- predictors by name ------------------------------------------------------------------------
OFA_PREFIX = "ofa:"


def resolve_predictor(
    spec: str | Path, space: SpaceSpec, allow_space_mismatch: bool = False
) -> AccuracyPredictor:
    """A predictor for ``space`` from ``spec``: ``ofa:PATH`` for OFA's published
    ``acc_predictor.pth`` (the ``ofa_mbv3_w1.2`` space's), else a file written by
    :meth:`AccuracyPredictor.save` (``ofabench fit-predictor``). A predictor trained on another
    space is refused unless ``allow_space_mismatch`` (then ``space_mismatch`` says so)."""
    text = str(spec)
    if text.startswith(OFA_PREFIX):
        return load_ofa_predictor(
            text[len(OFA_PREFIX) :], space, allow_space_mismatch=allow_space_mismatch
        )
    return AccuracyPredictor.load(text, space, allow_space_mismatch)


# -- accuracy datasets -------------------------------------------------------------------------
REQUIRED_COLUMNS = ("arch", "accuracy")


def read_accuracy_table(path: str | Path, space: SpaceSpec) -> tuple[list[ArchConfig], np.ndarray]:
    """Archs and accuracies (fractions) of an accuracy dataset (CSV or Parquet; format in the
    module docstring), every arch validated against ``space``; a file made by sample-accuracy
    must be of ``space`` and loses a torn last line (see :func:`made_dataset_text`)."""
    frame = _read_frame(input_file(path, "accuracy dataset", DatasetError), space)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"accuracy dataset {path} lacks column(s) {missing}; it has {list(frame.columns)}. "
            "Expected: arch (JSON string), accuracy (fraction), optional r, macs, params"
        )
    if frame.empty:
        raise DatasetError(f"accuracy dataset {path} has no rows")
    archs = [_row_arch(path, i, row, space) for i, row in enumerate(frame.to_dict("records"))]
    accs = _row_accuracies(path, frame["accuracy"].tolist())
    return archs, accs


def _read_frame(path: Path, space: SpaceSpec) -> Any:
    import io

    import pandas as pd

    from .dataset import made_dataset_text

    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        text = made_dataset_text(path, space)
        source = path if text is None else io.StringIO(text)
        return pd.read_csv(source, dtype={"arch": str})
    except ImportError as exc:
        raise DatasetError(f"cannot read {path}: {exc}; write the dataset as CSV") from exc
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DatasetError(f"accuracy dataset {path} cannot be read: {exc}") from exc


def _row_arch(path: str | Path, i: int, row: dict[str, Any], space: SpaceSpec) -> ArchConfig:
    where = f"accuracy dataset {path}, data row {i + 1}"
    text = row.get("arch")
    if not isinstance(text, str):
        raise DatasetError(f"{where}: column 'arch' must hold the arch as a JSON string")
    r = row.get("r")
    default_r = None if r is None or (isinstance(r, float) and math.isnan(r)) else int(r)
    try:
        import json

        arch = ArchConfig.from_dict(json.loads(text), default_r=default_r)
        if default_r is not None and arch.r != default_r:
            raise InvalidArchError(f"its arch has r = {arch.r} but column r holds {default_r}")
        return space.validate(arch)
    except (ValueError, InvalidArchError) as exc:
        raise DatasetError(f"{where}: {exc}") from exc


def _row_accuracies(path: str | Path, values: list[Any]) -> np.ndarray:
    try:
        accs = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"accuracy dataset {path}: column 'accuracy' must be numbers") from exc
    bad = np.flatnonzero(~np.isfinite(accs) | (accs < 0) | (accs > 1))
    if len(bad):
        raise DatasetError(
            f"accuracy dataset {path}, data row {bad[0] + 1}: accuracy {values[bad[0]]!r} is "
            "not a fraction in [0, 1] (write 0.76, not 76)"
        )
    return accs.astype(np.float32)


def fit_from_file(
    data: str | Path,
    space: SpaceSpec,
    out: str | Path,
    epochs: int = 200,
    val_fraction: float = 0.2,
    seed: int = 0,
    hidden_size: int = 400,
    **fit_args: Any,
) -> FitReport:
    """Fit a predictor for ``space`` on an accuracy dataset file and save it to ``out``."""
    _check_fit_settings(epochs, hidden_size, fit_args.get("lr", 1e-3))
    archs, accs = read_accuracy_table(data, space)
    predictor = AccuracyPredictor(space, hidden_size=hidden_size, seed=seed)
    report = predictor.fit(
        archs, accs, epochs=epochs, seed=seed, val_fraction=val_fraction, **fit_args
    )
    predictor.provenance["data"] = str(Path(data).resolve())
    predictor.save(out)
    return report


def _check_fit_settings(epochs: int, hidden_size: int, lr: float) -> None:
    """Refuse settings that train nothing (a constant predictor) or cannot train at all."""
    if epochs < 1 or hidden_size < 1:
        raise ConfigError(
            f"epochs and hidden size must be at least 1, got epochs {epochs}, hidden {hidden_size}"
        )
    if not lr > 0 or not math.isfinite(lr):
        raise ConfigError(f"the learning rate must be a positive number, got {lr}")

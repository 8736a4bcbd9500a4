"""An MLP accuracy predictor over a one-hot architecture encoding, and import of OFA's own.

The encoding (:class:`ArchEncoder`) is, in order: a kernel-size one-hot for every block slot,
an expand-ratio one-hot for every block slot (both all-zero for slots a stage does not run),
then a resolution one-hot. With ``resolution_encoding="ofa"`` the resolution part is OFA's:
8 bins of 16 px starting at 112, so the w1.0 ImageNet space encodes to OFA's 128 features and
OFA's published ``acc_predictor.pth`` reads it unchanged (:func:`load_ofa_predictor`).

Predictions are fractions (0.76, not 76); fit metrics report RMSE in accuracy points.
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

from ..errors import CheckpointError, ConfigError, InvalidArchError
from ..space import ArchBatch, ArchConfig, SpaceSpec, get_space

logger = logging.getLogger("ofabench")

ENCODER_FORMAT = "ofabench.arch_encoder"
PREDICTOR_FORMAT = "ofabench.accuracy_predictor"
SCHEMA_VERSION = 1
RESOLUTION_ENCODINGS = ("onehot", "ofa")
# OFA's resolution bins: index (r - 112) // 16, 8 slots (112..239 px).
OFA_RES_START, OFA_RES_STEP, OFA_RES_SLOTS = 112, 16, 8

Archs = ArchBatch | Sequence[ArchConfig]


# -- encoding ----------------------------------------------------------------------------------
class ArchEncoder:
    """Vectorised one-hot encoding of architectures (see the module docstring for the layout).

    ``ArchEncoder(space)`` one-hots each of ``space.resolutions``; ``resolution_encoding="ofa"``
    uses OFA's 16-px bins. :meth:`to_dict` describes the encoder fully, so
    :meth:`from_dict` rebuilds it without the space.
    """

    def __init__(self, space: SpaceSpec, resolution_encoding: str = "onehot") -> None:
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

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArchEncoder) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(map(str, self.to_dict().values())))

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


def _check_ofa_resolutions(resolutions: Sequence[int]) -> None:
    high = OFA_RES_START + OFA_RES_STEP * OFA_RES_SLOTS
    outside = [r for r in resolutions if not OFA_RES_START <= r < high]
    if outside:
        raise ConfigError(
            f"resolutions {outside} do not fit OFA's resolution encoding "
            f"({OFA_RES_START}..{high - 1}); use resolution_encoding='onehot'"
        )


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
    """Predicts the top-1 accuracy (a fraction) of architectures of ``space``."""

    def __init__(
        self,
        space: SpaceSpec,
        encoder: ArchEncoder | None = None,
        hidden_size: int = 400,
        n_hidden: int = 3,
        seed: int = 0,
    ) -> None:
        self.space = space
        self.encoder = encoder if encoder is not None else ArchEncoder(space)
        self.hidden_size = hidden_size
        self.n_hidden = n_hidden
        self.provenance: dict[str, Any] = {"source": "untrained"}
        self.model = self._fresh_model(seed)

    def _fresh_model(self, seed: int) -> nn.Sequential:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_mlp(self.encoder.n_features, self.hidden_size, self.n_hidden)
        return model.eval()

    # -- prediction ------------------------------------------------------------------------
    def predict(self, archs: Archs) -> np.ndarray:
        """Predicted accuracy (fractions) of a batch or list of archs: float32 array (N,)."""
        features = torch.from_numpy(self.encoder.encode_batch(as_batch(archs)))
        with torch.no_grad():
            return self.model(features)[:, 0].numpy()

    __call__ = predict

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
            "provenance": self.provenance,
        }
        with atomic_open(path, "wb") as handle:
            torch.save(payload, handle)

    @classmethod
    def load(cls, path: str | Path, space: SpaceSpec | None = None) -> AccuracyPredictor:
        """Read a file written by :meth:`save`; with ``space``, refuse one made for another."""
        payload = _read_payload(path)
        saved_space = SpaceSpec.from_dict(payload["space"])
        if space is not None and space.fingerprint() != payload["space_fingerprint"]:
            raise CheckpointError(
                f"predictor {path} was made for space {saved_space.name!r} "
                f"(fingerprint {payload['space_fingerprint']}), not {space.name!r} "
                f"({space.fingerprint()}); fit a predictor for this space"
            )
        predictor = cls(
            space if space is not None else saved_space,
            ArchEncoder.from_dict(payload["encoder"]),
            hidden_size=int(payload["hidden_size"]),
            n_hidden=int(payload["n_hidden"]),
        )
        _load_state(predictor.model, payload["state_dict"], path)
        predictor.provenance = dict(payload.get("provenance") or {})
        return predictor


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
    if not path.is_file():
        raise CheckpointError(f"predictor file {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for unreadable files
        raise CheckpointError(f"cannot read predictor file {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != PREDICTOR_FORMAT:
        raise CheckpointError(
            f"{path} is not an ofabench accuracy predictor; for OFA's acc_predictor.pth "
            "use load_ofa_predictor"
        )
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(
            f"{path} has schema version {payload.get('schema_version')}; "
            f"this ofabench reads version {SCHEMA_VERSION}"
        )
    return payload


def _load_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"predictor weights in {path} do not fit the MLP: {exc}") from exc


# -- OFA's published predictor -----------------------------------------------------------------
def load_ofa_predictor(path: str | Path, space: SpaceSpec | None = None) -> AccuracyPredictor:
    """OFA's ImageNet ``acc_predictor.pth`` (tutorial) as an :class:`AccuracyPredictor` over the
    w1.0 space (or a restriction of it), with OFA's encoding (128 features)."""
    reference = get_space("ofa_mbv3_w1.0")
    space = reference if space is None else space
    _check_ofa_space(space, reference)
    encoder = ArchEncoder(dataclasses.replace(reference, resolutions=space.resolutions), "ofa")
    predictor = AccuracyPredictor(space, encoder)
    _load_state(predictor.model, _ofa_state_dict(path), path)
    predictor.provenance = {"source": "ofa_acc_predictor", "file": str(Path(path).resolve())}
    return predictor


def _check_ofa_space(space: SpaceSpec, reference: SpaceSpec) -> None:
    widened = dataclasses.replace(
        space,
        kernel_choices=reference.kernel_choices,
        expand_choices=reference.expand_choices,
        depth_choices=reference.depth_choices,
        max_depth=reference.max_depth,
    )
    narrower = all(
        set(getattr(space, f)) <= set(getattr(reference, f))
        for f in ("kernel_choices", "expand_choices", "depth_choices")
    )
    if widened.fingerprint() != reference.fingerprint() or not narrower:
        raise ConfigError(
            f"OFA's accuracy predictor was trained for the ofa_mbv3_w1.0 ImageNet space; "
            f"space {space.name!r} is not that space or a restriction of it"
        )
    _check_ofa_resolutions(space.resolutions)


def _ofa_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"OFA predictor file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for unreadable files
        raise CheckpointError(f"cannot read OFA predictor file {path}: {exc}") from exc
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

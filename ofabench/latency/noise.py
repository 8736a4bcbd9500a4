"""Is the device quiet enough to measure now? The noise floor of one backend in a few seconds.

One fixed subnet (seeded, of any space) is prepared in ``sessions`` separate sessions (ONNX
Runtime sessions, LiteRT interpreters, torch modules, ...) at once; ``rounds`` rounds then measure
every session once, interleaved, with the given timing. From the rounds x sessions matrix of
medians (:func:`noise_figures`):

- ``within_session_cv``: how one session's measurement repeats from round to round: the machine's
  speed moving at the scale of seconds, plus timing noise. A table cannot predict a measurement
  more closely than this;
- ``between_round_cv``: the spread of the rounds' means: every session moving together, the
  machine's speed (what a probe timed alongside, or the fastest of several sweeps, takes out);
- ``between_session_cv`` and ``rank_stability``: the spread of the sessions' means and whether
  their order repeats between the first and the second half of the rounds: a per-session effect
  (memory layout, thread placement) that no probe takes out;
- ``slow_share``: the share of measurements more than 10% above the fastest round's median of
  their session (a machine with slow spells has a bimodal speed).

The verdict: a single measurement likely repeats within ±5% when ``2 * within_session_cv`` is at
most 5%. Where the backend can time the drift probe alternately with the model
(:meth:`~ofabench.devices.base.Backend.pair_with`, what ``ofabench profile`` and ``validate`` do
by default), the same matrix is measured again that way (each entry: its median ratio to the
probe, at the probe's steady speed) and judged by the same rule (``paired``): a machine too noisy
for raw timings may still be quiet enough for paired ones. ``ofabench noise --device DEV``
prints both.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..devices.base import MeasureSettings
from ..errors import ConfigError

TARGET = 0.05  # the fidelity target of a table: within ±5%


@dataclass(frozen=True)
class NoiseReport:
    device: str
    space: str
    resolution: int
    seed: int
    sessions: int
    rounds: int
    settings: dict[str, Any]
    medians_ms: list[list[float]]
    mean_ms: float
    within_session_cv: float
    between_round_cv: float
    between_session_cv: float
    rank_stability: float
    slow_share: float
    quiet_enough: bool
    wall_s: float
    loadavg: tuple[float, float, float]
    #: the same matrix timed alternately with the probe (its figures, medians_ms and
    #: quiet_enough), or None when the backend cannot pair or ``paired=False``
    paired: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rule"] = f"quiet enough when 2 x within-session CV <= {TARGET:.0%}"
        return out

    def summary(self) -> str:
        verdict = "quiet enough" if self.quiet_enough else "too noisy"
        return (
            f"{self.device}: {verdict} for ±{TARGET:.0%} tables now: one measurement repeats "
            f"within {100 * self.within_session_cv:.1f}% (CV; rounds {100 * self.between_round_cv:.1f}%, "
            f"sessions {100 * self.between_session_cv:.1f}%, rank stability {self.rank_stability:.2f}); "
            f"{100 * self.slow_share:.0f}% of measurements in slow spells (>10% over their "
            f"session's fastest); mean {self.mean_ms:.3f} ms" + self._paired_text()
        )

    def _paired_text(self) -> str:
        if self.paired is None:
            return ""
        verdict = "quiet enough" if self.paired["quiet_enough"] else "too noisy"
        return (
            f"; timed alternately with the probe (the default of profile and validate): "
            f"{verdict}, within {100 * self.paired['within_session_cv']:.1f}% (rounds "
            f"{100 * self.paired['between_round_cv']:.1f}%)"
        )


def noise_figures(t: np.ndarray) -> dict[str, float]:
    """The figures of a (rounds x sessions) matrix of medians (see the module docstring)."""
    t = np.asarray(t, dtype=float)
    if t.ndim != 2 or t.shape[0] < 4 or t.shape[1] < 2:
        raise ConfigError("noise figures need at least 4 rounds of at least 2 sessions")
    mean = float(t.mean())
    per_session, per_round = t.mean(axis=0), t.mean(axis=1)
    half = t.shape[0] // 2
    first, second = t[:half].mean(axis=0), t[half:].mean(axis=0)
    return {
        "mean_ms": mean,
        "within_session_cv": float(t.std(axis=0, ddof=1).mean() / mean),
        "between_round_cv": float(per_round.std(ddof=1) / mean),
        "between_session_cv": float(per_session.std(ddof=1) / mean),
        "rank_stability": _spearman(first, second),
        "slow_share": float(np.mean(t > 1.1 * t.min(axis=0))),
    }


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    if np.std(rx) == 0 or np.std(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def measure_noise(
    device: Any,
    space: Any = "ofa_mbv3_w1.0",
    resolution: int | None = None,
    seed: int = 3,
    sessions: int = 4,
    rounds: int = 6,
    settings: MeasureSettings | None = None,
    paired: bool = True,
) -> NoiseReport:
    """Measure the device's noise floor now (see the module docstring) on a random subnet of
    ``space`` (a preset name, a file or a :class:`~ofabench.space.SpaceSpec`) at ``resolution``
    (default: the space's middle one)."""
    from ..devices.profiles import DeviceProfile, load_profile
    from ..space import ArchConfig, get_space
    from .ops import build_subnet_module

    if sessions < 2 or rounds < 4:
        raise ConfigError(f"need sessions >= 2 and rounds >= 4, got {sessions} and {rounds}")
    spec = get_space(space)
    sampled = spec.sample(np.random.default_rng(seed))
    r = resolution if resolution is not None else spec.resolutions[len(spec.resolutions) // 2]
    arch = ArchConfig(sampled.ks, sampled.e, sampled.d, r)
    spec.validate(arch)
    profile = device if isinstance(device, DeviceProfile) else load_profile(device)
    backend = profile.open()
    module, shape = build_subnet_module(spec, arch)
    settings = settings or MeasureSettings(max_rounds=1)
    start = time.perf_counter()
    prepared = backend.prepare_many(module, shape, sessions)  # TVM compiles it once
    try:
        t = _matrix(backend, prepared, rounds, settings, lambda m: m.median_ms)
        pairing = _paired_figures(backend, prepared, rounds, settings) if paired else None
    finally:
        for session in prepared:
            backend.close(session)
    figures = noise_figures(t)
    return NoiseReport(
        device=profile.name,
        space=spec.name,
        resolution=r,
        seed=seed,
        sessions=sessions,
        rounds=rounds,
        settings=asdict(settings),
        medians_ms=np.round(t, 5).tolist(),
        **figures,
        quiet_enough=2 * figures["within_session_cv"] <= TARGET,
        wall_s=round(time.perf_counter() - start, 2),
        loadavg=os.getloadavg(),
        paired=pairing,
    )


def _matrix(
    backend: Any, prepared: list[Any], rounds: int, settings: MeasureSettings, value: Any
) -> np.ndarray:
    """rounds x sessions: every session measured once per round, interleaved."""
    t = np.zeros((rounds, len(prepared)))
    for i in range(rounds):
        for k, session in enumerate(prepared):
            t[i, k] = value(backend.measure_prepared(session, settings))
    return t


def _paired_figures(
    backend: Any, prepared: list[Any], rounds: int, settings: MeasureSettings
) -> dict[str, Any] | None:
    """The matrix again, each measurement timed alternately with the drift probe and given as
    its ratio to the probe at the probe's steady speed; None when the backend cannot pair."""
    from .probe import Probe

    if not backend.can_pair:
        return None
    with Probe(backend, settings) as probe:
        reference = probe.read_steady()
        probe.pair()
        t = _matrix(backend, prepared, rounds, settings, lambda m: m.probe_ratio * reference)
    figures = noise_figures(t)
    return {
        **figures,
        "probe_reference_ms": reference,
        "medians_ms": np.round(t, 5).tolist(),
        "quiet_enough": 2 * figures["within_session_cv"] <= TARGET,
    }

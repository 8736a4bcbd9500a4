"""``ofabench noise``: the parts of a device's noise, from synthetic matrices (each part alone)
and for real through a backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ofabench.cli import main
from ofabench.errors import ConfigError
from ofabench.latency.noise import measure_noise, noise_figures


def test_each_part_of_the_noise_shows_in_its_own_figure() -> None:
    calm = np.full((6, 4), 2.0)
    f = noise_figures(calm)
    assert f["within_session_cv"] == f["between_round_cv"] == f["between_session_cv"] == 0
    assert f["slow_share"] == 0

    spells = calm.copy()
    spells[[1, 4]] *= 1.3  # two rounds in a slow spell: every session slower together
    f = noise_figures(spells)
    assert f["between_round_cv"] > 0.1 and f["within_session_cv"] > 0.1
    assert f["between_session_cv"] == pytest.approx(0, abs=1e-12)
    assert f["slow_share"] == pytest.approx(2 / 6)

    layout = calm * np.array([1.0, 1.05, 1.1, 1.2])  # each session its own steady speed
    f = noise_figures(layout)
    assert f["within_session_cv"] == pytest.approx(0, abs=1e-12)
    assert f["between_round_cv"] == pytest.approx(0, abs=1e-12)
    assert f["between_session_cv"] > 0.05 and f["rank_stability"] == pytest.approx(1.0)

    with pytest.raises(ConfigError, match="at least 4 rounds"):
        noise_figures(calm[:3])


def test_measured_for_real_through_a_backend(tmp_path: Path) -> None:
    device = tmp_path / "jittery.yaml"
    device.write_text('backend: "null"\nsettings: {latency_ms: 2.0, jitter: 0.2, seed: 1}\n')
    report = measure_noise(str(device), "small32_w0.5", sessions=3, rounds=4)
    t = np.array(report.medians_ms)
    assert t.shape == (4, 3) and np.all(t >= 2.0) and report.within_session_cv > 0
    assert report.resolution in (24, 28, 32)
    quiet = tmp_path / "steady.yaml"
    quiet.write_text('backend: "null"\nsettings: {latency_ms: 2.0}\n')
    steady = measure_noise(str(quiet), "small32_w0.5", sessions=2, rounds=4)
    assert steady.quiet_enough and steady.within_session_cv == 0


def test_cli_prints_the_verdict_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    quiet = tmp_path / "steady.yaml"
    quiet.write_text('backend: "null"\nsettings: {latency_ms: 2.0}\n')
    assert main(["noise", "--device", str(quiet), "--space", "small32_w0.5", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["quiet_enough"] is True and record["sessions"] == 4 and record["rounds"] == 6
    assert main(["noise", "--device", str(quiet), "--space", "small32_w0.5",
                 "--rounds", "2"]) == 1  # fmt: skip
    assert "rounds >= 4" in capsys.readouterr().err


def test_paired_timing_is_judged_beside_the_raw_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a simulated machine 30% slower in every other 1 s spell, each raw measurement (3 runs
    of ~50 ms) lands in one spell or the other: too noisy. Timed alternately with the probe,
    each block's ratio holds: quiet. Without pairing, no second verdict."""
    from ofabench.devices.base import MeasureSettings

    from .test_drift import SpellsBackend

    monkeypatch.setattr(SpellsBackend, "SPELL_MS", 1000.0)
    SpellsBackend.clock_ms = 0.0
    device = tmp_path / "spells.yaml"
    device.write_text(f'backend: "{SpellsBackend.name}"\n')
    quick = MeasureSettings(warmup=0, repeats=3, max_rounds=1)
    report = measure_noise(str(device), sessions=3, rounds=6, settings=quick)
    assert not report.quiet_enough and report.within_session_cv > 0.05
    assert report.paired is not None and report.paired["quiet_enough"]
    assert report.paired["within_session_cv"] < 0.01
    assert "timed alternately with the probe" in report.summary()
    unpaired = measure_noise(str(device), sessions=3, rounds=6, settings=quick, paired=False)
    assert unpaired.paired is None and "alternately" not in unpaired.summary()

"""The paired bootstrap of the study's comparisons: checked against a direct resampling loop
and on cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from ofabench.errors import StudyError
from ofabench.study.stats import paired_bootstrap


def test_matches_a_direct_resampling_loop() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((8, 300)) < 0.8
    b = rng.random((8, 300)) < 0.7
    result = paired_bootstrap(a, b, n_boot=500, seed=3)
    # the same replicates drawn one by one: subnets, then images, with replacement
    draws = np.random.default_rng(3)
    subs = draws.multinomial(8, np.full(8, 1 / 8), size=500)
    imgs = draws.multinomial(300, np.full(300, 1 / 300), size=500)
    diff = a.astype(float) - b
    loop = [np.repeat(np.repeat(diff, s, 0), i, 1).mean() for s, i in zip(subs, imgs)]
    low, high = np.quantile(loop, [0.025, 0.975])
    assert result.mean == pytest.approx(diff.mean())
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), abs=1e-6)


def test_a_clear_difference_excludes_zero_and_noise_does_not() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((20, 2000)) < 0.85
    better = base | (rng.random((20, 2000)) < 0.05)  # strictly better on ~0.75% of images
    clear = paired_bootstrap(better, base, n_boot=400)
    assert clear.ci_low > 0 and clear.wins == 20
    noise = paired_bootstrap(rng.random((20, 2000)) < 0.85, base, n_boot=400)
    assert noise.ci_low < 0 < noise.ci_high
    same = paired_bootstrap(base, base, n_boot=100)
    assert same.mean == same.ci_low == same.ci_high == 0.0


def test_shapes_must_match() -> None:
    with pytest.raises(StudyError, match="must match"):
        paired_bootstrap(np.ones((3, 4), bool), np.ones((3, 5), bool))

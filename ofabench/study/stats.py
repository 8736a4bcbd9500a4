"""Paired comparisons of two supernets on the same subnets and the same test images.

A difference of top-1 accuracy between two supernets measured on ``S`` subnets and ``I`` test
images has two sources of sampling noise: which subnets were drawn and which images the test
split holds. :func:`paired_bootstrap` resamples both at once (subnets and images with
replacement, the same draw for both supernets, so the pairing is kept) and gives a percentile
confidence interval of the mean difference.

With the per-subnet, per-image differences ``D`` (S x I, values -1/0/1), one bootstrap replicate
with subnet counts ``a`` (multinomial, sums to S) and image counts ``b`` (sums to I) has mean
``a @ D @ b / (S * I)``: the whole bootstrap is two matrix products, not a loop over replicates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import StudyError


@dataclass(frozen=True)
class PairedDifference:
    """Mean difference (a − b) of accuracy, in fractions, with its percentile CI."""

    mean: float
    ci_low: float
    ci_high: float
    level: float
    n_subnets: int
    n_images: int
    n_boot: int
    wins: int  # subnets on which a is better
    per_subnet_min: float
    per_subnet_max: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_bootstrap(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """The mean of ``correct_a - correct_b`` (subnets x images, booleans) with a bootstrap
    confidence interval over subnets and test images."""
    a = np.asarray(correct_a, dtype=np.float32)
    b = np.asarray(correct_b, dtype=np.float32)
    if a.shape != b.shape or a.ndim != 2 or min(a.shape) < 1:
        raise StudyError(
            f"paired correctness arrays must match (subnets x images); got {a.shape}, {b.shape}"
        )
    diff = a - b
    n_sub, n_img = diff.shape
    rng = np.random.default_rng(seed)
    sub_counts = rng.multinomial(n_sub, np.full(n_sub, 1.0 / n_sub), size=n_boot).astype(np.float32)
    img_counts = rng.multinomial(n_img, np.full(n_img, 1.0 / n_img), size=n_boot).astype(np.float32)
    per_subnet = diff @ img_counts.T  # (S, n_boot): each subnet's summed difference per replicate
    replicates = np.einsum("rs,sr->r", sub_counts, per_subnet) / (n_sub * n_img)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    subnet_means = diff.mean(axis=1)
    return PairedDifference(
        mean=float(diff.mean()),
        ci_low=float(low),
        ci_high=float(high),
        level=level,
        n_subnets=n_sub,
        n_images=n_img,
        n_boot=n_boot,
        wins=int((subnet_means > 0).sum()),
        per_subnet_min=float(subnet_means.min()),
        per_subnet_max=float(subnet_means.max()),
    )

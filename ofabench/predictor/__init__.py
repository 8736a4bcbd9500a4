"""Accuracy predictors: a one-hot architecture encoding, an MLP trained on (arch, accuracy)
pairs, and import of OFA's published ImageNet predictor. Importing this package imports torch."""

from .mlp import (
    AccuracyPredictor,
    ArchEncoder,
    FitReport,
    as_batch,
    build_mlp,
    kendall_tau,
    load_ofa_predictor,
    spearman_rho,
)

__all__ = [
    "AccuracyPredictor",
    "ArchEncoder",
    "FitReport",
    "as_batch",
    "build_mlp",
    "kendall_tau",
    "load_ofa_predictor",
    "spearman_rho",
]

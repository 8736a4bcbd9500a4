"""Accuracy predictors: a one-hot architecture encoding, an MLP trained on (arch, accuracy)
pairs, and import of OFA's published ImageNet predictor. Importing this package imports torch."""

from .mlp import (
    AccuracyPredictor,
    ArchEncoder,
    FitReport,
    as_batch,
    build_mlp,
    encoder_from_dict,
    kendall_tau,
    load_ofa_predictor,
    make_encoder,
    spearman_rho,
)
from .resnet_encoder import ResNetArchEncoder

__all__ = [
    "AccuracyPredictor",
    "ArchEncoder",
    "FitReport",
    "ResNetArchEncoder",
    "as_batch",
    "build_mlp",
    "encoder_from_dict",
    "kendall_tau",
    "load_ofa_predictor",
    "make_encoder",
    "spearman_rho",
]

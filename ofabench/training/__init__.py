"""Training the supernet: datasets, progressive-shrinking stages as data, KD, BN recalibration,
exact resume and data-parallel runs under ``torchrun``; the no-PS and from-scratch baselines."""

from .config import OptimConfig, TrainConfig, config_from_dict, load_config
from .data import DataConfig, Dataset, Split, load_dataset
from .evaluate import (
    SubnetEvaluator,
    evaluate,
    evaluate_static,
    evaluate_subnet,
    recalibrate_bn,
)
from .scratch import build_static_network, load_static_network
from .stages import STAGE_TEMPLATES, Stage
from .trainer import Trainer, train

__all__ = [
    "STAGE_TEMPLATES",
    "DataConfig",
    "Dataset",
    "OptimConfig",
    "Split",
    "Stage",
    "SubnetEvaluator",
    "TrainConfig",
    "Trainer",
    "build_static_network",
    "config_from_dict",
    "evaluate",
    "evaluate_static",
    "evaluate_subnet",
    "load_config",
    "load_dataset",
    "load_static_network",
    "recalibrate_bn",
    "train",
]

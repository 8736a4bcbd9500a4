"""Training the supernet: datasets, progressive-shrinking stages as data, KD, BN recalibration,
exact resume and data-parallel runs under ``torchrun``."""

from .config import OptimConfig, TrainConfig, config_from_dict, load_config
from .data import DataConfig, Dataset, Split, load_dataset
from .evaluate import evaluate, evaluate_subnet, recalibrate_bn
from .stages import STAGE_TEMPLATES, Stage
from .trainer import Trainer, train

__all__ = [
    "STAGE_TEMPLATES",
    "DataConfig",
    "Dataset",
    "OptimConfig",
    "Split",
    "Stage",
    "TrainConfig",
    "Trainer",
    "config_from_dict",
    "evaluate",
    "evaluate_subnet",
    "load_config",
    "load_dataset",
    "recalibrate_bn",
    "train",
]

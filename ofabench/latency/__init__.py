"""Latency tables, latency models and the MACs/parameter counts of subnets."""

from .counting import count_macs, count_params, supernet_params
from .model import LatencyModel
from .table import LatencyEntry, LatencyTable, OpSpec, arch_ops, resolution_ops

__all__ = [
    "LatencyEntry",
    "LatencyModel",
    "LatencyTable",
    "OpSpec",
    "arch_ops",
    "count_macs",
    "count_params",
    "resolution_ops",
    "supernet_params",
]

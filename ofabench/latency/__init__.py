"""Latency tables, latency models and the MACs/parameter counts of subnets."""

from .counting import count_macs, count_params, supernet_params

__all__ = ["count_macs", "count_params", "supernet_params"]

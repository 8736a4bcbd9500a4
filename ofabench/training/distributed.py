"""Data-parallel training under ``torchrun`` (gloo on CPU, nccl on GPU).

The supernet's graph changes with every sampled subnet and one step accumulates the gradients of
several subnets, so instead of wrapping the model in ``DistributedDataParallel`` (which needs a
fixed graph or ``find_unused_parameters`` and would all-reduce once per backward) the trainer
all-reduces the accumulated gradients once per optimizer step: the same arithmetic as DDP, one
communication per step. Subnet sampling is synchronised by seeding it identically on every rank.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel job (``rank 0 of 1`` when not distributed)."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(timeout_s: float | None = None) -> DistContext:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1);
    a single process otherwise. Idempotent. ``timeout_s`` bounds collective waits (torch's
    default, 30 min for gloo, when ``None``): raise it for ranks that may finish far apart."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        timeout = None if timeout_s is None else datetime.timedelta(seconds=timeout_s)
        dist.init_process_group(backend=backend, timeout=timeout)
    return DistContext(dist.get_rank(), dist.get_world_size())


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def allreduce_gradients(module: nn.Module, ctx: DistContext) -> None:
    """Average the gradients of ``module`` over ranks in one flat all-reduce. Every rank ran the
    same subnets, so the same parameters hold gradients everywhere."""
    if not ctx.enabled:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_state(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers (BN statistics) to every rank."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def assert_in_sync(module: nn.Module, ctx: DistContext) -> bool:
    """Whether every rank holds the same parameters (compares a checksum across ranks)."""
    if not ctx.enabled:
        return True
    with torch.no_grad():
        total = torch.stack([p.double().sum() for p in module.parameters()]).sum().reshape(1)
    low, high = total.clone(), total.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))


def max_rank(value: int, ctx: DistContext) -> int:
    """The largest ``value`` over the ranks (every rank gets the same answer); ``value`` itself
    on one process."""
    if not ctx.enabled:
        return value
    tensor = torch.tensor([int(value)])
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()

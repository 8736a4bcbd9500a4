#!/usr/bin/env python
"""Cost of a ``sandwich`` training step against a PS ``expand_2`` step, at the same subnets per
step, and the forward passes each makes.

Both steps are built from the trainer's own pieces (the stages' samplers and distillers, see
``ofabench.training.strategy``) on the same supernet of ``small32_w0.5``, batch 64, one thread,
``channels_last`` as the trainer runs it:

* ``expand_2``: uniform sampler over every elastic dimension, 4 subnets, KD from a frozen
  teacher (the full network), which runs once per step;
* ``sandwich``: largest + smallest + 2 uniform subnets, in-place distillation from the step's
  largest subnet (no teacher).

Each round times ``--steps`` steps of each, back to back (order alternating between rounds);
the headline is the median over rounds of sandwich/expand_2 subnet images per second. Forward
passes are counted by hooks on the student and on the teacher.

    python benchmarks/bench_strategies.py --rounds 7 --steps 4 --out benchmarks/results/strategies.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=4, help="timed steps per variant per round")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="write the results here (JSON)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p.parse_args(argv)


class Counter:
    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.calls += 1


class Variant:
    """One stage's step on its own copy of the supernet (same initial weights for both)."""

    def __init__(self, stage_name: str, net: torch.nn.Module, teacher: torch.nn.Module, space: Any,
                 batch: int) -> None:  # fmt: skip
        from ofabench.training.stages import stage_from_dict
        from ofabench.training.strategy import distiller_class

        stage = stage_from_dict({"name": stage_name, "epochs": 1, "lr": 0.01})
        self.name = stage_name
        self.net = copy.deepcopy(net)
        self.sampler = stage.make_sampler(space)
        uses_teacher = distiller_class(stage.distill).needs_teacher
        self.distiller = distiller_class(stage.distill)(1.0, teacher if uses_teacher else None)
        self.n = stage.subnets_per_step
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        self.student_calls = Counter(self.net)
        self.rng = np.random.default_rng(0)
        self.batch = batch

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        from ofabench.training.data import resize_batch

        resolution, archs = self.sampler.draw(self.rng, self.n)
        x = resize_batch(images, resolution).contiguous(memory_format=torch.channels_last)
        self.distiller.begin_step(x)
        self.opt.zero_grad(set_to_none=True)
        for i, arch in enumerate(archs):
            self.net.set_active_subnet(arch)
            logits = self.net(x)
            hard = F.cross_entropy(logits, labels, label_smoothing=0.1)
            self.distiller.loss(i, logits, hard).backward()
        self.opt.step()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    from ofabench.provenance import provenance
    from ofabench.space import get_space
    from ofabench.supernet import OFAMobileNetV3
    from ofabench.training.evaluate import channels_last

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    space = get_space("small32_w0.5")
    net = channels_last(OFAMobileNetV3(space))
    teacher = copy.deepcopy(net).eval()
    teacher.set_active_subnet(space.max_arch())
    teacher.requires_grad_(False)
    teacher_calls = Counter(teacher)
    variants = [Variant(n, net, teacher, space, args.batch) for n in ("expand_2", "sandwich")]
    images = torch.randn(args.batch, 1, 32, 32)
    labels = torch.randint(0, 10, (args.batch,))
    for v in variants:  # warm-up (oneDNN primitive caches)
        v.step(images, labels)
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    calls = {v.name: {"student": 0, "teacher": 0, "steps": 0} for v in variants}
    for r in range(args.rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            s0, t0 = v.student_calls.calls, teacher_calls.calls
            start = time.perf_counter()
            for _ in range(args.steps):
                v.step(images, labels)
            seconds = time.perf_counter() - start
            rates[v.name].append(args.steps * v.n * args.batch / seconds)
            calls[v.name]["student"] += v.student_calls.calls - s0
            calls[v.name]["teacher"] += teacher_calls.calls - t0
            calls[v.name]["steps"] += args.steps
    ratios = [s / e for s, e in zip(rates["sandwich"], rates["expand_2"])]
    result = {
        "command": "python benchmarks/bench_strategies.py " + " ".join(argv or sys.argv[1:]),
        "settings": vars(args) | {"out": str(args.out) if args.out else None},
        "images_per_s_median": {k: statistics.median(v) for k, v in rates.items()},
        "images_per_s_rounds": rates,
        "sandwich_over_expand_2_median": statistics.median(ratios),
        "sandwich_over_expand_2_range": [min(ratios), max(ratios)],
        "forward_passes_per_step": {
            k: {"student": c["student"] / c["steps"], "teacher": c["teacher"] / c["steps"]}
            for k, c in calls.items()
        },
        "provenance": provenance(),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        med = result["images_per_s_median"]
        fwd = result["forward_passes_per_step"]
        print(f"expand_2 {med['expand_2']:.1f} img/s, sandwich {med['sandwich']:.1f} img/s; "
              f"sandwich/expand_2 {result['sandwich_over_expand_2_median']:.3f} (median of "
              f"{args.rounds} rounds); forward passes per step: expand_2 {fwd['expand_2']}, "
              f"sandwich {fwd['sandwich']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

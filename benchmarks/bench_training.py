#!/usr/bin/env python
"""Training throughput of a progressive-shrinking step: ofabench against the reference ``ofa``.

The step is the one ``ofabench train`` runs in its KD stages (``Trainer``'s ``_train_step``):

1. the teacher (a frozen copy of the network, largest subnet, eval mode) runs once on the batch
   under ``no_grad`` and gives soft targets (``--no-kd`` leaves the teacher and its loss out);
2. for each of ``--subnets`` (2) sampled subnets: activate it, forward, label-smoothed (0.1)
   cross entropy + soft-target cross entropy against the teacher, backward (the gradients of
   the step's subnets accumulate);
3. one SGD (Nesterov, momentum 0.9) step and ``zero_grad``.

Throughput is subnet images per second: ``batch x subnets / step time`` (the unit of the
trainer's ``images_per_s`` metric). Batch 64, 32x32 Fashion-MNIST-sized 1-channel input, 10
classes, random data.

Same network on both sides: the reference ``OFAMobileNetV3(n_classes=10, width_mult=1.0,
ks_list=[3,5,7], expand_ratio_list=[3,4,6], depth_list=[2,3,4])`` (ImageNet layout) with its
first conv replaced by a 1-input-channel one, and ofabench's ``ofa_mbv3_w1.0`` space with
``in_channels=1, n_classes=10``. The reference's initial weights are loaded into ofabench
(``load_ofa_state_dict``); both run the same subnet sequence on the same batches.

Variants, timed back to back in every round (order rotated round by round):

* ``ofabench``      ofabench as its trainer runs it: ``channels_last`` memory format;
* ``reference``     the reference as the ``ofa`` package runs it: NCHW;
* ``ofabench_nchw`` ofabench in NCHW (same layout as the reference: the networks alone);
* ``reference_cl``  the reference moved to ``channels_last`` (what the same trick gives it).

Headline: the median over rounds of ofabench/reference images/s (> 1: ofabench faster); the
same-layout ratios (``ofabench_nchw/reference``, ``ofabench/reference_cl``) are reported too.

    python benchmarks/bench_training.py            # full run, writes benchmarks/results/training.json
    python benchmarks/bench_training.py --quick    # short check; writes nothing unless --out
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as _dt
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_supernet as common  # noqa: E402  (shared helpers: CPU meter, idle wait, versions)

REPO = HERE.parent
DEFAULT_OUT = HERE / "results" / "training.json"
SCHEMA = 1
VARIANTS = ("ofabench", "reference", "ofabench_nchw", "reference_cl")
log = common.log


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="PS training-step throughput: ofabench vs the reference `ofa` network.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="short run (3 rounds, 2 steps each)")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 7, quick 3)")
    p.add_argument("--steps", type=int, default=None, help="steps per round (default 4, quick 2)")
    p.add_argument("--batch", type=int, default=64, help="batch size")
    p.add_argument("--px", type=int, default=32, help="input resolution")
    p.add_argument("--subnets", type=int, default=2, help="subnets per step (OFA: 1, 2, 2, 4, 4)")
    p.add_argument("--no-kd", action="store_true", help="no teacher forward and no KD loss")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data and subnets")
    p.add_argument("--out", type=Path, default=None, help=f"results file (default {DEFAULT_OUT.relative_to(REPO)}; --quick writes none unless given)")  # fmt: skip
    p.add_argument("--no-write", action="store_true", help="write no results file")
    p.add_argument("--idle-load", type=float, default=0.5, help="wait before a round until others use fewer cores than this")  # fmt: skip
    p.add_argument("--wait-round-s", type=float, default=60.0, help="longest idle wait per round (0: never)")  # fmt: skip
    p.add_argument("--wait-total-s", type=float, default=300.0, help="idle-wait budget of the run")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.steps = args.steps or (2 if args.quick else 4)
    for name in ("threads", "rounds", "steps", "batch", "px", "subnets"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    return args


# -- the networks --------------------------------------------------------------------------------
@dataclasses.dataclass
class Side:
    """One network as a training step sees it: model, teacher, optimizer, how to activate."""

    model: object
    teacher: object
    optimizer: object
    activate: object


def build_networks(seed: int) -> tuple[object, object, object]:
    """(ofabench space, ofabench supernet, reference supernet) with identical weights."""
    import torch
    from torch import nn

    from ofabench.space import get_space
    from ofabench.supernet import OFAMobileNetV3
    from ofabench.supernet.ofa_import import load_ofa_state_dict

    ref_cls = common.import_reference()
    torch.manual_seed(seed)
    ref = ref_cls(
        n_classes=10, width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )  # fmt: skip
    ref.first_conv.conv = nn.Conv2d(1, ref.first_conv.conv.out_channels, 3, 2, 1, bias=False)
    space = dataclasses.replace(
        get_space("ofa_mbv3_w1.0"), name="ofa_mbv3_w1.0_c1_n10", in_channels=1, n_classes=10
    )
    ours = OFAMobileNetV3(space)
    load_ofa_state_dict(ours, ref.state_dict())
    return space, ours, ref


def make_side(which: str, space, ours, ref, lr: float = 0.01) -> Side:
    """A fresh copy of one network in its variant's layout, with a frozen max-subnet teacher."""
    import torch

    base = ours if which.startswith("ofabench") else ref
    model = copy.deepcopy(base)
    if which in ("ofabench", "reference_cl"):
        model = model.to(memory_format=torch.channels_last)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    if which.startswith("ofabench"):
        teacher.set_active_subnet(space.max_arch())

        def activate(arch) -> None:
            model.set_active_subnet(arch)
    else:
        teacher.set_max_net()

        def activate(arch) -> None:
            model.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    return Side(model, teacher, optimizer, activate)


def ps_step(side: Side, x, y, archs, kd: bool) -> float:
    """One PS step (see the module docstring); returns the mean loss."""
    import torch
    import torch.nn.functional as F

    soft = None
    if kd:
        with torch.no_grad():
            soft = F.softmax(side.teacher(x), dim=1)
    total = 0.0
    for arch in archs:
        side.activate(arch)
        logits = side.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=0.1)
        if soft is not None:
            loss = loss - (soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        loss.backward()
        total += float(loss.detach())
    side.optimizer.step()
    side.optimizer.zero_grad(set_to_none=True)
    return total / len(archs)


# -- timing ----------------------------------------------------------------------------------------
def make_workload(args: argparse.Namespace, space) -> tuple[list, list]:
    """Per step: a batch (x, y) and its subnets (same for every variant)."""
    import numpy as np
    import torch

    gen = torch.Generator().manual_seed(args.seed + 7)
    rng = np.random.default_rng(args.seed)
    batches = [
        (torch.randn(args.batch, 1, args.px, args.px, generator=gen),
         torch.randint(0, 10, (args.batch,), generator=gen))
        for _ in range(args.steps)
    ]  # fmt: skip
    archs = [[space.sample(rng) for _ in range(args.subnets)] for _ in range(args.steps)]
    return batches, archs


def run_round(side: Side, batches, archs, kd: bool) -> tuple[float, list[float], list[float]]:
    """Seconds of the round's steps, per-step times and losses."""
    times, losses = [], []
    for (x, y), step_archs in zip(batches, archs):
        t = time.perf_counter()
        losses.append(ps_step(side, x, y, step_archs, kd))
        times.append(time.perf_counter() - t)
    return sum(times), times, losses


def time_variants(args, sides, batches, archs) -> list[dict]:
    kd = not args.no_kd
    images = args.batch * args.subnets * args.steps
    waiter = common.IdleWaiter(args.idle_load, args.wait_round_s, args.wait_total_s)
    rounds = []
    for r in range(args.rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        entry: dict = {"round": r, "order": list(order)}
        if args.wait_round_s > 0:
            entry["idle_wait"] = waiter.wait()
        for which in order:
            gc.collect()
            meter = common.CpuMeter()
            seconds, times, losses = run_round(sides[which], batches, archs, kd)
            entry[which] = {
                "images_per_s": round(images / seconds, 3),
                "step_s": [round(t, 4) for t in times],
                "losses": [round(v, 4) for v in losses],
                "foreign_load_cores": meter.foreign_cores(),
            }
        rounds.append(entry)
        log(f"round {r}: " + "  ".join(f"{w} {entry[w]['images_per_s']:.1f}" for w in VARIANTS) + " img/s")  # fmt: skip
    return rounds


def summarise(rounds: list[dict]) -> dict:
    def median_ratio(a: str, b: str) -> float:
        return round(statistics.median(e[a]["images_per_s"] / e[b]["images_per_s"] for e in rounds), 4)  # fmt: skip

    medians = {
        w: round(statistics.median(e[w]["images_per_s"] for e in rounds), 3) for w in VARIANTS
    }
    return {
        "images_per_s_median": medians,
        "ratio_median": median_ratio("ofabench", "reference"),
        "ratio_same_layout_nchw": median_ratio("ofabench_nchw", "reference"),
        "ratio_same_layout_channels_last": median_ratio("ofabench", "reference_cl"),
        "ratio_min": round(
            min(e["ofabench"]["images_per_s"] / e["reference"]["images_per_s"] for e in rounds), 4
        ),  # fmt: skip
        "ratio_max": round(
            max(e["ofabench"]["images_per_s"] / e["reference"]["images_per_s"] for e in rounds), 4
        ),  # fmt: skip
    }


def equivalence(space, ours, ref) -> float:
    """Max |logit difference| of the two networks on a few subnets (eval mode)."""
    import numpy as np
    import torch

    a, b = copy.deepcopy(ours).eval(), copy.deepcopy(ref).eval()
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    rng = np.random.default_rng(123)
    diffs = []
    with torch.no_grad():
        for arch in [space.max_arch(), space.min_arch(), space.sample(rng)]:
            a.set_active_subnet(arch)
            b.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))
            diffs.append(float((a(x) - b(x)).abs().max()))
    return max(diffs)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.import_reference()
    import torch

    torch.set_num_threads(args.threads)
    started = _dt.datetime.now(_dt.timezone.utc)
    load_start = common.load_avg()
    space, ours, ref = build_networks(args.seed)
    max_diff = equivalence(space, ours, ref)
    log(f"equivalence: max |ofabench - reference| logit = {max_diff:.3g}")
    batches, archs = make_workload(args, space)
    sides = {w: make_side(w, space, ours, ref) for w in VARIANTS}
    t0 = time.perf_counter()
    for which in VARIANTS:  # warm-up: every shape once, optimizer state created
        run_round(sides[which], batches, archs, not args.no_kd)
    warmup_s = time.perf_counter() - t0
    rounds = time_variants(args, sides, batches, archs)
    results = {
        "schema": SCHEMA,
        "benchmark": "PS training step: ofabench OFAMobileNetV3 vs reference ofa OFAMobileNetV3",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "timestamp_utc": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 1),
        "quick": args.quick,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "ofa": common.version_of("ofa"),
        "numpy": common.version_of("numpy"),
        "python": platform.python_version(),
        "cpu_model": common.cpu_model(),
        "logical_cpus": os.cpu_count(),
        "loadavg_start": load_start,
        "loadavg_end": common.load_avg(),
        "git": common.git_state(),
        "settings": {
            "batch": args.batch,
            "px": args.px,
            "in_channels": 1,
            "n_classes": 10,
            "subnets_per_step": args.subnets,
            "steps_per_round": args.steps,
            "rounds": args.rounds,
            "kd_teacher_forward": not args.no_kd,
            "seed": args.seed,
            "network": "ofa_mbv3_w1.0 layout (ks 3/5/7, e 3/4/6, d 2/3/4), 1-channel stem",
            "step": "teacher no_grad fwd (if KD) + per subnet: set, fwd, CE(ls 0.1) + soft CE, "
            "bwd; then SGD nesterov step + zero_grad",
            "images_per_s": "batch x subnets_per_step x steps / seconds",
            "warmup_s": round(warmup_s, 2),
        },  # fmt: skip
        "equivalence_max_abs_diff": max_diff,
        **summarise(rounds),
        "per_round": rounds,
        "archs": [[a.to_dict() for a in step] for step in archs],
    }
    out = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)
    if out is not None and not args.no_write:
        common.write_json_atomic(out, results)
        log(f"wrote {out}")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(human(results))
    return 0


def human(r: dict) -> str:
    m = r["images_per_s_median"]
    return "\n".join(
        [
            f"PS step, batch {r['settings']['batch']}, {r['settings']['px']} px, "
            f"{r['settings']['subnets_per_step']} subnets/step, KD teacher "
            f"{'included' if r['settings']['kd_teacher_forward'] else 'excluded'}, "
            f"{r['threads']} thread(s), {len(r['per_round'])} rounds",
            "median images/s: " + ", ".join(f"{w} {m[w]:.1f}" for w in VARIANTS),
            f"ofabench/reference (median of rounds): {r['ratio_median']:.3f} "
            f"(min {r['ratio_min']:.3f}, max {r['ratio_max']:.3f})",
            f"same layout: NCHW {r['ratio_same_layout_nchw']:.3f}, "
            f"channels_last {r['ratio_same_layout_channels_last']:.3f}",
            f"torch {r['torch']}, ofa {r['ofa']}, CPU {r['cpu_model']}, load {r['loadavg_start']}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())

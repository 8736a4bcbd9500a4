#!/usr/bin/env python
"""Benchmark ofabench's elastic OFA-MobileNetV3 supernet against the reference ``ofa`` one.

Both networks run in the same process, on the same inputs, with the same weights (the reference
state dict is loaded into ofabench with ``load_ofa_state_dict``) and the same sequence of sampled
subnets (ofabench ``ArchConfig`` -> reference ``set_active_subnet(ks=..., e=..., d=...)``).

Cases (CPU only, ``torch.set_num_threads(--threads)``):

* ``train32``    training step (forward + cross-entropy + backward + SGD step + zero_grad) of a
                 sampled subnet, 32x32 input, batch ``--batch-32`` (64);
* ``train224``   the same at 224x224, batch ``--batch-224`` (16 by default: 64 is very slow on
                 two cores);
* ``fwd224_bN``  eval-mode ``no_grad`` forward of the full supernet (max arch) at 224x224, one
                 case per batch size in ``--fwd-batches`` (1,16).

Protocol against noise: one untimed warm-up pass over the case's subnet sequence for each
network, then ``--rounds`` rounds; each round times ofabench and the reference on the *same*
subnet sequence back to back (order alternating AB, BA, AB, ... so neither always runs second).
Per round: images/s of each and their ratio. Reported: medians of each and the median of the
per-round ratios ofabench/reference (> 1.0 means ofabench is faster).

    python benchmarks/bench_supernet.py            # full run (~5-6 min on 2 cores), writes
                                                   # benchmarks/results/supernet.json
    python benchmarks/bench_supernet.py --quick    # short run, writes nothing unless --out
    python benchmarks/bench_supernet.py --json     # print the results as JSON on stdout
    python benchmarks/bench_supernet.py --profile  # torch.profiler tables of one training step

Progress goes to stderr; the table (or the JSON with ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUT = HERE / "results" / "supernet.json"
SCHEMA = 1

# iterations per round (full run, --quick run) for each case kind
DEFAULT_ITERS = {
    "train32": (6, 3),
    "train224": (3, 2),
    "fwd224_b1": (20, 8),
}
FWD_BIG_ITERS = (3, 2)
MIN_ROUNDS = 3  # a case cut short by --max-minutes still gets this many rounds  # any other forward batch size


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- arguments ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark ofabench's OFA-MobileNetV3 supernet against the reference `ofa`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="short run (3 rounds, few iterations)")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 7, quick 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, inputs and subnets")
    p.add_argument("--batch-32", type=int, default=64, help="batch of the 32 px training step")
    p.add_argument("--batch-224", type=int, default=16, help="batch of the 224 px training step")
    p.add_argument(
        "--fwd-batches", default="1,16", help="comma list of batch sizes of the max-arch forward"
    )
    p.add_argument(
        "--cases",
        default=None,
        help="comma list of cases to run (train32, train224, fwd224_b<N>); default all",
    )
    p.add_argument(
        "--iters",
        action="append",
        default=[],
        metavar="CASE=N",
        help="iterations per round for a case (repeatable), e.g. --iters train224=8",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=10.0,
        help=f"soft time budget: a case past its share stops after {MIN_ROUNDS} rounds",
    )
    p.add_argument("--lr", type=float, default=1e-3, help="SGD learning rate (momentum 0.9)")
    p.add_argument(
        "--no-sgd",
        action="store_true",
        help="training step without the optimizer step (forward + backward + zero_grad)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"results file (default {DEFAULT_OUT.relative_to(REPO)}; --quick writes none unless given)",
    )
    p.add_argument("--no-write", action="store_true", help="write no results file")
    p.add_argument(
        "--idle-load",
        type=float,
        default=0.5,
        help="before each round wait until other processes use fewer than this many CPU cores",
    )
    p.add_argument(
        "--wait-round-s",
        type=float,
        default=60.0,
        help="longest wait for idle before one round (0: never wait)",
    )
    p.add_argument(
        "--wait-total-s",
        type=float,
        default=300.0,
        help="total idle-waiting budget of the whole run",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="instead of benchmarking: torch.profiler tables of the training steps of both networks",
    )
    p.add_argument("--profile-rows", type=int, default=25, help="rows per profiler table")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.rounds is None:
        args.rounds = 3 if args.quick else 7
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    try:
        args.fwd_batches = [int(b) for b in args.fwd_batches.split(",") if b.strip()]
    except ValueError:
        p.error(f"--fwd-batches must be a comma list of integers, got {args.fwd_batches!r}")
    overrides = {}
    for item in args.iters:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit() or int(value) < 1:
            p.error(f"--iters expects CASE=N with N >= 1, got {item!r}")
        overrides[name.strip()] = int(value)
    args.iters = overrides
    for name in ("batch_32", "batch_224"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


# -- environment ----------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_state() -> dict:
    def run(*cmd: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *cmd], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
            )
            return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = run("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": run("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


def version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_avg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class CpuMeter:
    """CPU time other processes used (in cores) between construction and ``foreign_cores()``:
    machine-wide busy time from /proc/stat minus this process's own CPU time. None off Linux."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.machine = self._machine_busy()
        self.own = self._own()

    @staticmethod
    def _machine_busy() -> float | None:
        try:
            with open("/proc/stat") as fh:
                fields = fh.readline().split()
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal ...; busy = all but idle and iowait
        values = [int(v) for v in fields[1:9]]
        busy = sum(values) - values[3] - values[4]
        return busy / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system

    def foreign_cores(self) -> float | None:
        machine = self._machine_busy()
        if machine is None or self.machine is None:
            return None
        wall = time.perf_counter() - self.wall
        other = (machine - self.machine) - (self._own() - self.own)
        return round(max(other, 0.0) / wall, 3) if wall > 0 else None


class IdleWaiter:
    """Before a round, wait (bounded per round and in total) until other processes leave the
    CPU mostly idle: on a shared 2-core machine a busy neighbour makes 2-thread OpenMP runs
    several times slower, which would swamp the A/B difference."""

    def __init__(self, threshold: float, per_round: float, total: float) -> None:
        self.threshold, self.per_round, self.budget = threshold, per_round, total
        self.waited_total = 0.0

    def wait(self) -> dict:
        start = time.perf_counter()
        while True:
            meter = CpuMeter()
            time.sleep(0.5)
            load = meter.foreign_cores()
            waited = time.perf_counter() - start
            if (
                load is None
                or load < self.threshold
                or waited >= self.per_round
                or self.waited_total + waited >= self.budget
            ):
                self.waited_total += waited
                return {"waited_s": round(waited, 1), "load_before": load}


# -- the two networks -----------------------------------------------------------------------------
def import_reference():
    """The reference OFAMobileNetV3 class, or exit with a clear message if `ofa` is missing."""
    try:
        from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name == "ofa" or exc.name.startswith("ofa."):
            log(
                "error: the reference implementation `ofa` is not installed, so there is nothing "
                "to compare against.\n  Install it with:  pip install ofa --no-deps"
            )
        else:
            log(f"error: `ofa` is installed but needs the missing module {exc.name!r}: {exc}")
        raise SystemExit(2) from exc
    except ImportError as exc:
        log(f"error: `ofa` is installed but cannot be imported: {exc}")
        raise SystemExit(2) from exc
    return OFAMobileNetV3


@dataclass
class Pair:
    """The two supernets plus the reference weights both start each case from."""

    space: object
    ours: object
    ref: object
    state: dict  # reference state dict (cloned)

    def reset(self) -> None:
        from ofabench.supernet.ofa_import import load_ofa_state_dict

        self.ref.load_state_dict(self.state)
        load_ofa_state_dict(self.ours, self.state)

    def setter(self, which: str):
        if which == "ofabench":
            return self.ours.set_active_subnet

        def set_ref(arch) -> None:
            self.ref.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))

        return set_ref

    def model(self, which: str):
        return self.ours if which == "ofabench" else self.ref


def build_pair(seed: int) -> Pair:
    import torch

    from ofabench.space import get_space
    from ofabench.supernet import OFAMobileNetV3
    from ofabench.supernet.ofa_import import load_ofa_state_dict

    ref_cls = import_reference()
    torch.manual_seed(seed)
    ref = ref_cls(
        width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
    )
    space = get_space("ofa_mbv3_w1.0")
    ours = OFAMobileNetV3(space)
    state = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    load_ofa_state_dict(ours, state)
    return Pair(space, ours, ref, state)


def equivalence_check(pair: Pair, seed: int) -> dict:
    """Max |ofabench - reference| of eval-mode logits on a few subnets (should be ~0)."""
    import numpy as np
    import torch

    pair.reset()
    gen = torch.Generator().manual_seed(seed + 12345)
    x = torch.randn(2, 3, 224, 224, generator=gen)
    archs = [pair.space.max_arch(), pair.space.min_arch()]
    rng = np.random.default_rng(seed + 999)
    archs += [pair.space.sample(rng) for _ in range(2)]
    diffs = []
    for which in ("ofabench", "reference"):
        pair.model(which).eval()
    with torch.no_grad():
        for arch in archs:
            pair.setter("ofabench")(arch)
            pair.setter("reference")(arch)
            diffs.append(float((pair.ours(x) - pair.ref(x)).abs().max()))
    return {"archs": len(archs), "input": [2, 3, 224, 224], "max_abs_diff": max(diffs)}


# -- cases ----------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    kind: str  # "train" | "forward"
    px: int
    batch: int
    iters: int
    description: str
    archs: list = field(default_factory=list)


def make_cases(args: argparse.Namespace, space) -> list[Case]:
    import numpy as np

    def iters(name: str) -> int:
        if name in args.iters:
            return args.iters[name]
        full, quick = DEFAULT_ITERS.get(name, FWD_BIG_ITERS)
        return quick if args.quick else full

    step = "fwd+bwd+zero_grad" if args.no_sgd else "fwd+bwd+SGD step+zero_grad"
    cases = [
        Case(
            "train32",
            "train",
            32,
            args.batch_32,
            iters("train32"),
            f"training step ({step}) of sampled subnets, 32 px",
        ),
        Case(
            "train224",
            "train",
            224,
            args.batch_224,
            iters("train224"),
            f"training step ({step}) of sampled subnets, 224 px",
        ),
    ]
    for b in args.fwd_batches:
        name = f"fwd224_b{b}"
        cases.append(
            Case(
                name,
                "forward",
                224,
                b,
                iters(name),
                "eval no_grad forward of the full supernet (max arch), 224 px",
            )
        )
    if args.cases:
        wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
        known = {c.name for c in cases}
        bad = [w for w in wanted if w not in known]
        if bad:
            raise SystemExit(f"error: unknown case(s) {bad}; known: {sorted(known)}")
        cases = [c for c in cases if c.name in wanted]
    unknown_iters = sorted(set(args.iters) - {c.name for c in cases})
    if unknown_iters:
        raise SystemExit(f"error: --iters names unknown case(s) {unknown_iters}")
    for index, case in enumerate(cases):
        if case.kind == "train":
            rng = np.random.default_rng(args.seed * 1000 + index)
            case.archs = [space.sample(rng) for _ in range(case.iters)]
        else:
            case.archs = [space.max_arch()] * case.iters
    return cases


def make_runner(pair: Pair, which: str, case: Case, x, y, args: argparse.Namespace):
    """A function running ``case.iters`` iterations of ``case`` on one network; returns the last
    loss (training) or None."""
    import torch
    import torch.nn.functional as F

    model = pair.model(which)
    set_active = pair.setter(which)
    archs = case.archs
    if case.kind == "forward":
        model.eval()

        def run_forward(times: list[float]):
            with torch.no_grad():
                for arch in archs:
                    t = time.perf_counter()
                    set_active(arch)
                    model(x)
                    times.append(time.perf_counter() - t)
            return None

        return run_forward

    model.train()
    opt = None if args.no_sgd else torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    def run_train(times: list[float]):
        loss = None
        for arch in archs:
            t = time.perf_counter()
            set_active(arch)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if opt is not None:
                opt.step()
                opt.zero_grad(set_to_none=True)
            else:
                model.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t)
        return float(loss.detach())

    return run_train


def run_case(
    pair: Pair, case: Case, args: argparse.Namespace, waiter: IdleWaiter, budget_s: float
) -> dict:
    import torch

    pair.reset()
    gen = torch.Generator().manual_seed(args.seed + 7 + case.px * 1000 + case.batch)
    x = torch.randn(case.batch, 3, case.px, case.px, generator=gen)
    y = torch.randint(0, 1000, (case.batch,), generator=gen)
    runners = {w: make_runner(pair, w, case, x, y, args) for w in ("ofabench", "reference")}
    images = case.iters * case.batch

    log(
        f"[{case.name}] batch {case.batch}, {case.px} px, {case.iters} it/round, "
        f"{args.rounds} rounds; warm-up ..."
    )
    t0 = time.perf_counter()
    for which in ("ofabench", "reference"):
        runners[which]([])  # one untimed pass over the same subnet sequence
    warmup_s = time.perf_counter() - t0

    rounds = []
    losses = {"ofabench": [], "reference": []}
    iter_times = {"ofabench": [], "reference": []}
    case_start = time.perf_counter() - warmup_s
    truncated = False
    for r in range(args.rounds):
        if r >= MIN_ROUNDS and time.perf_counter() - case_start > budget_s:
            truncated = True
            log(f"[{case.name}] over its time share ({budget_s:.0f} s): stopping after {r} rounds")
            break
        order = ("ofabench", "reference") if r % 2 == 0 else ("reference", "ofabench")
        entry = {"round": r, "order": "AB" if r % 2 == 0 else "BA"}
        if args.wait_round_s > 0:
            idle = waiter.wait()
            entry["idle_wait_s"], entry["load_before"] = idle["waited_s"], idle["load_before"]
        for which in order:
            gc.collect()
            times: list[float] = []
            meter = CpuMeter()
            t = time.perf_counter()
            loss = runners[which](times)
            seconds = time.perf_counter() - t
            foreign = meter.foreign_cores()
            if loss is not None:
                losses[which].append(loss)
            iter_times[which].append(times)
            entry[which] = {
                "seconds": round(seconds, 5),
                "images_per_s": round(images / seconds, 3),
                "iter_s": [round(v, 5) for v in times],
                "foreign_load_cores": foreign,
            }
        entry["ratio"] = round(
            entry["ofabench"]["images_per_s"] / entry["reference"]["images_per_s"], 4
        )
        rounds.append(entry)
        loads = "/".join(
            "?"
            if entry[w]["foreign_load_cores"] is None
            else f"{entry[w]['foreign_load_cores']:.2f}"
            for w in ("ofabench", "reference")
        )
        log(
            f"[{case.name}] round {r} {entry['order']}: ofabench {entry['ofabench']['images_per_s']:9.2f} img/s"
            f"  reference {entry['reference']['images_per_s']:9.2f} img/s  ratio {entry['ratio']:.3f}"
            f"  (other load {loads} cores"
            + (f", waited {entry['idle_wait_s']:.0f} s" if entry.get("idle_wait_s") else "")
            + ")"
        )

    def summary(which: str) -> dict:
        vals = [e[which]["images_per_s"] for e in rounds]
        return {
            "images_per_s": vals,
            "median": round(statistics.median(vals), 3),
            "min": min(vals),
            "max": max(vals),
        }

    ours, ref = summary("ofabench"), summary("reference")
    ratios = [e["ratio"] for e in rounds]
    # paired per-iteration ratios: same round, same subnet, same input -> robust to short stalls
    iter_ratios = [
        tr / to
        for ours_round, ref_round in zip(iter_times["ofabench"], iter_times["reference"])
        for to, tr in zip(ours_round, ref_round)
    ]
    foreign = [e[w]["foreign_load_cores"] for e in rounds for w in ("ofabench", "reference")]
    foreign = [v for v in foreign if v is not None]
    loaded_rounds = sum(
        1
        for e in rounds
        if any(
            (e[w]["foreign_load_cores"] or 0) >= args.idle_load for w in ("ofabench", "reference")
        )
    )
    result = {
        "name": case.name,
        "description": case.description,
        "kind": case.kind,
        "px": case.px,
        "batch": case.batch,
        "iters_per_round": case.iters,
        "images_per_round": images,
        "rounds": len(rounds),
        "rounds_requested": args.rounds,
        "truncated_by_time_budget": truncated,
        "warmup": {"iters_per_network": case.iters, "seconds": round(warmup_s, 3)},
        "ofabench": ours,
        "reference": ref,
        "ratio_median": round(statistics.median(ratios), 4),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratio_of_medians": round(ours["median"] / ref["median"], 4),
        "ratio_iter_median": round(statistics.median(iter_ratios), 4),
        "foreign_load_cores_max": max(foreign) if foreign else None,
        "foreign_load_cores_median": round(statistics.median(foreign), 3) if foreign else None,
        "rounds_under_load": loaded_rounds,
        "per_round": rounds,
        "archs": [a.to_dict() for a in case.archs] if case.kind == "train" else "max_arch",
    }
    if case.kind == "train":
        result["final_losses"] = {k: [round(v, 4) for v in vs] for k, vs in losses.items()}
        result["losses_finite"] = all(
            v == v and abs(v) != float("inf") for vs in losses.values() for v in vs
        )
    return result


# -- profiling ------------------------------------------------------------------------------------
def profile(pair: Pair, cases: list[Case], args: argparse.Namespace) -> None:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for case in cases:
        if case.kind != "train":
            continue
        pair.reset()
        gen = torch.Generator().manual_seed(args.seed + 7)
        x = torch.randn(case.batch, 3, case.px, case.px, generator=gen)
        y = torch.randint(0, 1000, (case.batch,), generator=gen)
        for which in ("ofabench", "reference"):
            run = make_runner(pair, which, case, x, y, args)
            run([])  # warm-up
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                run([])
            table = prof.key_averages().table(
                sort_by="self_cpu_time_total", row_limit=args.profile_rows
            )
            print(f"\n=== {case.name} ({case.batch}x{case.px}px, {case.iters} steps): {which} ===")
            print(table)


# -- output ---------------------------------------------------------------------------------------
def human_table(results: dict) -> str:
    head = (
        f"{'case':<11} {'batch':>5} {'px':>4} {'ofabench img/s':>15} {'reference img/s':>16} "
        f"{'ratio':>6} {'min-max':>12} {'iter-ratio':>10} {'other load':>10} {'loaded':>6}"
    )
    lines = [head, "-" * len(head)]
    for c in results["cases"]:
        load = c["foreign_load_cores_median"]
        lines.append(
            f"{c['name']:<11} {c['batch']:>5} {c['px']:>4} {c['ofabench']['median']:>15.2f} "
            f"{c['reference']['median']:>16.2f} {c['ratio_median']:>6.3f} "
            f"{c['ratio_min']:>5.3f}-{c['ratio_max']:<6.3f} {c['ratio_iter_median']:>10.3f} "
            f"{'?' if load is None else f'{load:.2f}':>10} "
            f"{str(c['rounds_under_load']) + '/' + str(c['rounds']):>6}"
        )
    lines += [
        "img/s: median over the interleaved rounds; ratio: median of the per-round ofabench/reference",
        "img/s ratios (> 1: ofabench faster); iter-ratio: median of the paired per-iteration time",
        "ratios reference/ofabench; other load: median CPU cores used by other processes while timing;",
        f"loaded: rounds (of those run) in which others used >= "
        f"{results['settings']['idle_wait']['threshold_cores']} cores "
        f"(idle waiting: {results['idle_waited_s']} s in total).",
        f"threads {results['threads']}, torch {results['torch']}, CPU {results['cpu_model']}, "
        f"{results['duration_s']} s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import_reference()  # fail early and clearly when `ofa` is missing

    import torch

    torch.set_num_threads(args.threads)
    started = _dt.datetime.now(_dt.timezone.utc)
    load_start = load_avg()
    pair = build_pair(args.seed)
    cases = make_cases(args, pair.space)

    if args.profile:
        profile(pair, cases, args)
        return 0

    check = equivalence_check(pair, args.seed)
    log(
        f"equivalence: max |ofabench - reference| over {check['archs']} subnets = "
        f"{check['max_abs_diff']:.3g}"
    )
    if check["max_abs_diff"] > 1e-3:
        log("warning: the two networks disagree; the comparison may not be like for like")

    t0 = time.perf_counter()
    waiter = IdleWaiter(args.idle_load, args.wait_round_s, args.wait_total_s)
    deadline = t0 + args.max_minutes * 60
    case_results = []
    for index, case in enumerate(cases):
        share = max(deadline - time.perf_counter(), 0.0) / (len(cases) - index)
        case_results.append(run_case(pair, case, args, waiter, share))
    results = {
        "schema": SCHEMA,
        "benchmark": "supernet: ofabench OFAMobileNetV3 vs reference ofa OFAMobileNetV3",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "argv": sys.argv[1:] if argv is None else argv,
        "timestamp_utc": started.isoformat(timespec="seconds"),
        "finished_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 1),
        "idle_waited_s": round(waiter.waited_total, 1),
        "quick": args.quick,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "ofa": version_of("ofa"),
        "numpy": version_of("numpy"),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_start": load_start,
        "loadavg_end": load_avg(),
        "git": git_state(),
        "settings": {
            "rounds": args.rounds,
            "max_minutes": args.max_minutes,
            "seed": args.seed,
            "optimizer": None if args.no_sgd else {"name": "SGD", "lr": args.lr, "momentum": 0.9},
            "loss": "cross_entropy on random labels",
            "order": "rounds alternate AB, BA, ... (A = ofabench, B = reference)",
            "warmup": "one untimed pass over each case's subnet sequence per network",
            "ratio_median": "median over rounds of ofabench/reference images/s (headline)",
            "ratio_iter_median": "median over all (round, iteration) pairs of reference/ofabench "
            "iteration time (same subnet, same input)",
            "foreign_load_cores": "CPU cores used by other processes during a timed run "
            "(/proc/stat busy minus own CPU time, per wall second)",
            "idle_wait": {
                "threshold_cores": args.idle_load,
                "max_per_round_s": args.wait_round_s,
                "budget_s": args.wait_total_s,
            },
            "subnets": "same ArchConfig sequence for both; ArchConfig.r is ignored, the case fixes px",
            "weights": "reference init (torch.manual_seed(seed)) loaded into ofabench; reset per case",
        },
        "equivalence": check,
        "cases": case_results,
    }

    out = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)
    if out is not None and not args.no_write:
        write_json_atomic(out, results)
        log(f"wrote {out}")
    elif args.quick:
        log("--quick: no results file written (pass --out PATH to write one)")

    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(human_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Training step of ofabench's OFA-ResNet50 supernet against the reference ``ofa`` one.

Same process, same weights (the reference state dict loaded with ``load_ofa_state_dict``), same
batch and the same subnet sequence (max, min, sampled; ofabench ``ArchConfig`` -> reference
``set_active_subnet(d=, e=, w=)``). A step is forward + cross-entropy + backward + SGD step +
zero_grad. One untimed warm-up round, then ``--rounds`` rounds, each timing both networks on the
whole sequence back to back in alternating order. Reported: the median of the per-round ratios
reference time / ofabench time (> 1.0: ofabench is faster).

    python benchmarks/bench_resnet_step.py --rounds 5 --out benchmarks/results/resnet_step.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch
import torch.nn.functional as F
from ofa.imagenet_classification.elastic_nn.networks import OFAResNets

from ofabench.families import get_family
from ofabench.space import get_space
from ofabench.supernet import build_supernet
from ofabench.supernet.ofa_import import load_ofa_state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="write the result as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ref = OFAResNets(
        depth_list=[0, 1, 2], expand_ratio_list=[0.2, 0.25, 0.35], width_mult_list=[0.65, 0.8, 1.0]
    ).train()
    space = dataclasses.replace(get_space("ofa_resnet50"), resolutions=(args.size,))
    net = load_ofa_state_dict(build_supernet(space), ref.state_dict()).train()
    archs = [space.max_arch(), space.min_arch(), *(space.sample(s) for s in range(4))]
    family = get_family("resnet")
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 1000, (args.batch,))

    def set_ref(arch) -> None:
        ofa = family.to_ofa_dict(space, arch)
        ref.set_active_subnet(d=ofa["d"], e=ofa["e"], w=ofa["w"])

    runners = {
        "reference": (ref, torch.optim.SGD(ref.parameters(), lr=1e-3), set_ref),
        "ofabench": (net, torch.optim.SGD(net.parameters(), lr=1e-3), net.set_active_subnet),
    }

    def run(name: str) -> float:
        model, opt, set_arch = runners[name]
        start = time.perf_counter()
        for arch in archs:
            set_arch(arch)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return time.perf_counter() - start

    run("reference"), run("ofabench")  # warm-up
    ratios = []
    for r in range(args.rounds):
        order = ("reference", "ofabench") if r % 2 == 0 else ("ofabench", "reference")
        took = {name: run(name) for name in order}
        ratios.append(took["reference"] / took["ofabench"])
    result = {
        "case": f"train step, batch {args.batch}, {args.size} px, {len(archs)} subnets/round",
        "threads": args.threads,
        "rounds": args.rounds,
        "ratios_reference_over_ofabench": [round(v, 3) for v in ratios],
        "median_ratio": round(statistics.median(ratios), 3),
    }
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

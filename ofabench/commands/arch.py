"""Commands about the search space and single architectures: spaces, sample, count, export."""

from __future__ import annotations

import argparse
import json
import logging

from ..errors import ConfigError
from ..export import EXPORT_FORMATS
from ..files import check_output
from ..space import get_space, list_spaces
from ._common import (
    add_json,
    add_resolution,
    add_space,
    arch_arg,
    at_least,
    emit,
    input_paths,
    space_arg,
)

log = logging.getLogger("ofabench")


def cmd_spaces(args: argparse.Namespace) -> None:
    from ..latency.counting import supernet_params

    rows = []
    for name in list_spaces():
        space = get_space(name)
        rows.append(
            {
                "name": name,
                "family": space.family,
                "stage_channels": list(space.stage_channels),
                "resolutions": [min(space.resolutions), max(space.resolutions)],
                "n_resolutions": len(space.resolutions),
                "supernet_params": supernet_params(space),
            }
        )
    emit(
        args,
        {"spaces": rows},
        lambda d: "\n".join(
            f"{r['name']:<34} {r['family']:<9} widths {r['stage_channels']}  "
            f"r {r['resolutions'][0]}-{r['resolutions'][1]} "
            f"({r['n_resolutions']})  supernet {r['supernet_params'] / 1e6:.2f}M params"
            for r in d["spaces"]
        ),
    )


def cmd_sample(args: argparse.Namespace) -> None:
    from ..space import as_rng

    space = space_arg(args)
    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    check_output(args.out, input_paths(args.space))
    rng = as_rng(args.seed)
    archs = [space.sample(rng) for _ in range(args.n)]
    text = json.dumps(archs[0].to_dict()) if args.n == 1 else "\n".join(a.to_json() for a in archs)
    if args.out:
        from ..provenance import atomic_open

        with atomic_open(args.out) as handle:
            handle.write(text + "\n")
        log.info("wrote %d arch(s) to %s", args.n, args.out)
    else:
        print(text)


def cmd_count(args: argparse.Namespace) -> None:
    from ..latency.counting import count_macs, count_params

    space = space_arg(args)
    arch = arch_arg(args, space)
    data = {
        "space": space.name,
        "arch": arch.to_dict(),
        "macs": count_macs(space, arch),
        "params": count_params(space, arch),
    }
    emit(
        args,
        data,
        lambda d: f"{d['macs'] / 1e6:.1f}M MACs, {d['params'] / 1e6:.2f}M params at r={arch.r}",
    )


def cmd_export(args: argparse.Namespace) -> None:
    from ..export import RUNTIMES, export_onnx, export_tflite
    from ..supernet import build_supernet
    from ..supernet.checkpoint import load_supernet

    space = space_arg(args)
    at_least("--batch", args.batch, 1)
    check_output(args.out, input_paths(args.arch, args.checkpoint, args.space))
    arch = arch_arg(args, space)
    if args.checkpoint:
        net = load_supernet(args.checkpoint, space)
    else:
        log.warning("no --checkpoint given: exporting randomly initialised weights")
        net = build_supernet(space)
    net.set_active_subnet(arch)
    subnet = net.get_active_subnet().eval()
    shape = (args.batch, space.in_channels, arch.r, arch.r)
    meta = {"space": space.name, "arch": arch.to_dict(), "checkpoint": args.checkpoint}
    check = not args.no_check
    if args.format == "tflite":
        report = export_tflite(subnet, shape, args.out, check=check, metadata=meta)
    else:
        report = export_onnx(subnet, shape, args.out, opset=args.opset, check=check, metadata=meta)
    runtime = RUNTIMES[report.format]
    emit(
        args,
        {**report.to_dict(), "arch": arch.to_dict(), "space": space.name},
        lambda d: (
            f"wrote {d['path']} ({d['size_bytes'] / 1e6:.1f} MB), input {list(d['input_shape'])}"
            f" ({d['input_layout']})"
            + (
                f", {runtime} max abs diff {d['max_abs_diff']:.2e}"
                if d["max_abs_diff"] is not None
                else ""
            )
        ),
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spaces", help="list the search-space presets of every space family")
    add_json(p)
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("sample", help="sample random architectures (JSON, one per line)")
    add_space(p)
    p.add_argument("--n", type=int, default=1, help="how many (default 1)")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("count", help="MACs and parameters of an architecture")
    add_space(p)
    p.add_argument(
        "--arch",
        required=True,
        help="arch JSON file (ofabench or OFA dict, OFA net.config), inline JSON, max or min",
    )
    add_resolution(p)
    add_json(p)
    p.set_defaults(func=cmd_count)

    p = sub.add_parser(
        "export", help="export a subnet to ONNX or TFLite (checked in ONNX Runtime or LiteRT)"
    )
    add_space(p)
    p.add_argument(
        "--arch",
        required=True,
        help="arch JSON file (ofabench or OFA dict, OFA net.config), inline JSON, max or min",
    )
    add_resolution(p)
    p.add_argument(
        "--format",
        choices=list(EXPORT_FORMATS),
        default="onnx",
        help="onnx (NCHW input) or tflite (NHWC input, written by ofabench's TFLite writer); "
        "default onnx",
    )
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--checkpoint", help="supernet weights (ofabench or reference-OFA checkpoint)")
    p.add_argument(
        "--batch", type=int, default=1, help="batch size of the exported input (default 1)"
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; onnx only)")
    p.add_argument(
        "--no-check",
        action="store_true",
        help="skip the comparison with PyTorch in ONNX Runtime or LiteRT",
    )
    add_json(p)
    p.set_defaults(func=cmd_export)

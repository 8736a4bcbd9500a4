"""The timing runner the SSH backend copies to a board and runs with the board's own Python.

Self-contained on purpose: it imports nothing from ofabench, only the standard library, numpy and
the runtime it is asked for (``onnxruntime``, or LiteRT as ``ai_edge_litert`` or
``tflite_runtime``), and keeps to Python 3.7 at run time (annotations are strings) so that an old board image can
run it.

    python ssh_runner.py --probe onnxruntime
    python ssh_runner.py --model model.onnx --runtime onnxruntime --threads 1 \\
        --warmup 10 --repeats 30 [--cpus 2,3]

It writes exactly one JSON line to standard output: the probe's answer (Python, runtime and device
description), or the timed samples in milliseconds with the threads and CPUs actually used. On
failure it writes ``{"error": ..., "kind": ...}`` and exits 3 when the runtime cannot be imported,
2 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

EXIT_FAILED = 2
EXIT_NO_RUNTIME = 3
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def device_name() -> str:
    """The board's model (device tree) or CPU model name, else the machine type."""
    try:
        with open("/proc/device-tree/model") as handle:
            return handle.read().strip("\x00\n ")
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def pin(threads: int, cpus: list[int] | None) -> list[int]:
    """Limit helper thread pools to ``threads`` and the process to ``cpus``; the CPUs in use."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return []


def runtime_version(runtime: str) -> str:
    if runtime == "onnxruntime":
        import onnxruntime

        return str(onnxruntime.__version__)
    litert_interpreter()
    for dist in ("ai-edge-litert", "tflite-runtime"):
        try:
            from importlib import metadata

            return f"{dist} {metadata.version(dist)}"
        except Exception:  # noqa: BLE001 - the next distribution name, or no version at all
            continue
    return "unknown"


def litert_interpreter() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
    return Interpreter


def random_input(shape: list[int], dtype: Any) -> Any:
    import numpy as np

    data = np.random.default_rng(0).standard_normal(shape)
    return data.astype(dtype)


def load_onnxruntime(path: str, threads: int) -> Callable[[], Any]:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in first.shape]
    feed = {first.name: random_input(shape, np.float32)}
    return lambda: session.run(None, feed)


def load_litert(path: str, threads: int) -> Callable[[], Any]:
    interpreter = litert_interpreter()(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], random_input(list(detail["shape"]), detail["dtype"]))
    return interpreter.invoke


LOADERS = {"onnxruntime": load_onnxruntime, "litert": load_litert}


def time_runs(run: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def probe(runtime: str) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "runtime": runtime,
        "runtime_version": runtime_version(runtime),
        "device": device_name(),
        "cpu_count": os.cpu_count(),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else None
    used = pin(args.threads, cpus)
    start = time.perf_counter()
    run = LOADERS[args.runtime](args.model, args.threads)
    load_s = time.perf_counter() - start
    samples = time_runs(run, args.warmup, args.repeats)
    return {"samples_ms": samples, "threads": args.threads, "cpus": used, "load_s": load_s}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", choices=sorted(LOADERS))
    parser.add_argument("--model")
    parser.add_argument("--runtime", choices=sorted(LOADERS), default="onnxruntime")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpus", default="")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        emit(probe(args.probe) if args.probe else measure(args))
    except ImportError as exc:
        emit({"error": f"{type(exc).__name__}: {exc}", "kind": "runtime_missing"})
        return EXIT_NO_RUNTIME
    except Exception as exc:  # noqa: BLE001 - reported to the backend as one JSON line
        emit({"error": f"{type(exc).__name__}: {exc}", "kind": "failed"})
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Issue 3's fidelity and cost figures: every backend that runs here, one after the other (never
# two measurements at once), on a machine doing nothing else. Each run profiles the ImageNet OFA
# space (all 25 resolutions, 7 measured, the rest fitted in H*W), calibrates on 20 subnets and
# validates on 100 others; results in benchmarks/results/latency_<device>.json. A killed run
# resumes from its work dir (its cost is then flagged as not measured in one go).
#
#   bash benchmarks/run_latency_fidelity.sh                 # all four
#   bash benchmarks/run_latency_fidelity.sh cpu-litert      # one
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
run() {
  local device=$1; shift
  echo "== $device: $PY benchmarks/bench_latency_fidelity.py --device $device $*" >&2
  "$PY" benchmarks/bench_latency_fidelity.py --device "$device" "$@"
}
devices=("$@")
[ ${#devices[@]} -gt 0 ] || devices=(cpu-onnxruntime cpu-torch cpu-litert cpu-tvm)
for device in "${devices[@]}"; do
  case "$device" in
    cpu-onnxruntime|cpu-torch) run "$device" --n 100 --passes 2 ;;
    # XNNPACK's 7x7 depthwise makes whole subnets ~14 s each here: one validation pass
    cpu-litert) run "$device" --n 100 --passes 1 ;;
    # untuned TVM: compiling dominates (~0.9 CPU-s per block, ~14 per subnet, in 2 workers):
    # lighter timing, fewer measured resolutions (groups that miss their line are refined),
    # 6 calibration and 30 validation subnets. For an honest compile cost, start from an empty
    # build cache (~/.cache/ofabench/tvm-lib) and work dir (or pass --fresh by hand).
    cpu-tvm) run "$device" --n 30 --passes 1 --calibrate 6 --repeats 10 --warmup 3 \
               --max-rounds 3 --fit-resolutions every:8 ;;
    *) run "$device" --n 100 ;;
  esac
done

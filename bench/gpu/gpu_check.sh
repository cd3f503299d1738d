#!/usr/bin/env bash
# GPU check of the cospec CUDA kernels, on a machine with an NVIDIA GPU, from a fresh clone:
# build (editable, against the installed torch), run the test suite with CUDA visible (the
# tests parametrized over devices then run their CUDA half too), bench/gpu/gpu_check.py
# (correctness against the CPU kernels, a non-default device and a side stream, > 2^31
# elements, then the timing table), compute-sanitizer memcheck, racecheck and initcheck
# on the small cases, and an end-to-end decode run (bench/gpu/gpu_decode.py: spd == generate
# in float32 on the device; tokens/s).
#   bash bench/gpu/gpu_check.sh            # PYTHON=... to pick the interpreter (default: .venv, python3)
#   COSPEC_GPU_STUB=1 bash bench/gpu/gpu_check.sh   # dry run on a machine without a GPU: CUDA stubbed
#       on the CPU (bench/gpu/_gpu_stub.py: "cuda" tensors are CPU tensors, the CPU kernels answer),
#       no build, the issue-23 test files only, shrunk large cases, sanitizers skipped, decode
#       on the CPU at a tiny size: proves the harness runs end to end, checks no CUDA kernel.
# Knobs: TORCH_CUDA_ARCH_LIST (default: the GPU's own arch), MAX_JOBS, SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
STUB="${COSPEC_GPU_STUB:-0}"
RUN=("$PYTHON")
if [[ "$STUB" == "1" ]]; then
  RUN=("$PYTHON" bench/gpu/_gpu_stub.py)
  SKIP_BUILD=1
  echo "== CUDA STUBBED (COSPEC_GPU_STUB=1): a dry run on the CPU; no CUDA kernel is checked"
fi
echo "== python: $PYTHON"
echo "== time estimate on one H100 or H200 (16 cores), not yet measured on one: build ~3.5 min,"
echo "   pytest (CUDA halves) ~0.5 min, gpu_check.py ~1.5 min (incl. three > 2^31-element cases),"
echo "   sanitizers ~1 min, decode ~1.3 min: ~7.8 min in all (SKIP_BUILD=1 saves the build);"
echo "   each step prints its elapsed time"
start=$SECONDS
lap() { echo "   [$1: $((SECONDS - ${2})) s; total $((SECONDS - start)) s]"; }
if [[ "$STUB" != "1" ]]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  if [[ -z "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
    TORCH_CUDA_ARCH_LIST="$("$PYTHON" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')"
    export TORCH_CUDA_ARCH_LIST
  fi
  echo "== TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
fi

if [[ "${SKIP_BUILD:-0}" == "0" ]]; then
  echo "== build"
  t=$SECONDS
  export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
  "$PYTHON" -m pip install --no-build-isolation --no-deps -e . 2>&1 | tail -n 5
  lap build $t
fi

status=0
t=$SECONDS
if [[ "$STUB" == "1" ]]; then
  echo "== pytest (stubbed: the issue-23 files, their 'cuda' cases on the CPU kernels)"
  "${RUN[@]}" -m pytest tests/test_special_rows.py tests/test_edge_cases.py tests/test_commit_tokens.py -q \
    -p no:cacheprovider 2>&1 | tail -n 5 || status=1
else
  echo "== pytest tests -k cuda (the CUDA halves of the device-parametrised op tests and the GPU-only"
  echo "   tests; the CPU halves, test_compile.py and test_tp.py run in make test / CI)"
  "$PYTHON" -m pytest tests -q -p no:cacheprovider --ignore=tests/test_compile.py --ignore=tests/test_tp.py \
    -k "cuda or wrong_device or device_map" 2>&1 | tail -n 15 || status=1
fi
lap pytest $t

echo "== correctness + timing"
t=$SECONDS
"${RUN[@]}" bench/gpu/gpu_check.py || status=1
lap gpu_check.py $t

SAN="$(command -v compute-sanitizer || true)"
if [[ -z "$SAN" ]]; then
  for c in /usr/local/cuda/bin/compute-sanitizer "${CUDA_HOME:-/nonexistent}/bin/compute-sanitizer"; do
    if [[ -x "$c" ]]; then SAN="$c"; break; fi
  done
fi
t=$SECONDS
if [[ "$STUB" == "1" ]]; then
  echo "== compute-sanitizer: skipped (CUDA stubbed); the --small pass without it:"
  "${RUN[@]}" bench/gpu/gpu_check.py --small | tail -n 2 || status=1
elif [[ -n "$SAN" ]]; then
  for tool in memcheck racecheck initcheck; do
    echo "== compute-sanitizer --tool $tool (python bench/gpu/gpu_check.py --small)"
    log="$(mktemp)"
    # No caching allocator: every tensor is its own cudaMalloc, so memcheck sees any
    # access past an allocation (inside a cached segment it would go unnoticed).
    if PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SAN" --tool "$tool" --error-exitcode 99 \
        "$PYTHON" bench/gpu/gpu_check.py --small >"$log" 2>&1; then
      rc=0
    else
      rc=$?
    fi
    grep -E "^(PASS|FAIL)|ERROR SUMMARY|RACECHECK SUMMARY|Hazard|Invalid|========= (Error|Warning)" "$log" | head -n 40 || true
    tail -n 3 "$log"
    if [[ $rc -ne 0 ]]; then
      echo "compute-sanitizer $tool: exit $rc"
      status=1
    fi
    rm -f "$log"
  done
else
  echo "== compute-sanitizer not found: skipped memcheck / racecheck"
fi
lap sanitizers $t
t=$SECONDS
if [[ "$STUB" == "1" ]]; then
  echo "== end-to-end decode on the CPU, tiny models (CUDA stubbed: bench/gpu/gpu_decode.py --device cpu)"
  "$PYTHON" bench/gpu/gpu_decode.py --device cpu --dtype float32 --layers 2 --hidden 64 --vocab 256 --new 8 \
    --reps 1 || status=1
else
  echo "== end-to-end decode (bench/gpu/gpu_decode.py: spd == generate on the GPU, tokens/s table)"
  "$PYTHON" bench/gpu/gpu_decode.py --reps 2 || status=1
fi
lap decode $t
if [[ $((SECONDS - start)) -gt 480 ]]; then
  echo "== over the 8-minute budget: $((SECONDS - start)) s (update the estimate above)"
fi
echo "== gpu_check.sh: $([[ $status -eq 0 ]] && echo OK || echo FAILED) in $((SECONDS - start)) s"
exit "$status"

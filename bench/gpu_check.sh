#!/usr/bin/env bash
# GPU check of the cospec CUDA kernels, on a machine with an NVIDIA GPU, from a fresh clone:
# build (editable, against the installed torch), run the test suite with CUDA visible (the
# tests parametrized over devices then run their CUDA half too), bench/gpu_check.py
# (correctness against the CPU kernels, a non-default device and a side stream, > 2^31
# elements, then the timing table), compute-sanitizer memcheck, racecheck and initcheck
# on the small cases, and an end-to-end decode run (bench/gpu_decode.py: spd == generate
# in float32 on the device; tokens/s).
#   bash bench/gpu_check.sh            # PYTHON=... to pick the interpreter (default: .venv, python3)
# Knobs: TORCH_CUDA_ARCH_LIST (default: the GPU's own arch), MAX_JOBS, SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
echo "== python: $PYTHON"
echo "== time estimate on one H200 (16 cores): build ~4 min, pytest ~1.5 min, gpu_check.py ~1 min,"
echo "   sanitizers ~1 min, decode ~0.5 min eager + ~1 min capturing the compiled path's CUDA graphs:"
echo "   ~8-9 min in all (SKIP_BUILD=1 saves the build)"
start=$SECONDS
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

if [[ -z "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
  TORCH_CUDA_ARCH_LIST="$("$PYTHON" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')"
  export TORCH_CUDA_ARCH_LIST
fi
echo "== TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"

if [[ "${SKIP_BUILD:-0}" == "0" ]]; then
  echo "== build"
  export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
  "$PYTHON" -m pip install --no-build-isolation --no-deps -e . 2>&1 | tail -n 5
fi

status=0
echo "== pytest tests (CUDA visible: the CUDA cases of every op test run too; test_compile.py and"
echo "   test_tp.py are CPU-only and already run in CI: skipped here for time)"
"$PYTHON" -m pytest tests -q -p no:cacheprovider --ignore=tests/test_compile.py --ignore=tests/test_tp.py \
  2>&1 | tail -n 15 || status=1

echo "== correctness + timing"
"$PYTHON" bench/gpu_check.py || status=1

SAN="$(command -v compute-sanitizer || true)"
if [[ -z "$SAN" ]]; then
  for c in /usr/local/cuda/bin/compute-sanitizer "${CUDA_HOME:-/nonexistent}/bin/compute-sanitizer"; do
    if [[ -x "$c" ]]; then SAN="$c"; break; fi
  done
fi
if [[ -n "$SAN" ]]; then
  for tool in memcheck racecheck initcheck; do
    echo "== compute-sanitizer --tool $tool (python bench/gpu_check.py --small)"
    log="$(mktemp)"
    # No caching allocator: every tensor is its own cudaMalloc, so memcheck sees any
    # access past an allocation (inside a cached segment it would go unnoticed).
    if PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SAN" --tool "$tool" --error-exitcode 99 \
        "$PYTHON" bench/gpu_check.py --small >"$log" 2>&1; then
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
echo "== end-to-end decode (bench/gpu_decode.py: spd == generate on the GPU, tokens/s table)"
"$PYTHON" bench/gpu_decode.py || status=1
echo "== gpu_check.sh: $([[ $status -eq 0 ]] && echo OK || echo FAILED) in $((SECONDS - start)) s"
exit "$status"

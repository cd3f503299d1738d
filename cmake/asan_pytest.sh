#!/usr/bin/env bash
# The CPU kernels under AddressSanitizer + UndefinedBehaviorSanitizer, driven from Python:
# builds a sanitized CPU-only copy of the extension into build-asan/ (COSPEC_SANITIZE=1),
# stages it beside links to the package's sources, and runs the op tests against it with
# the sanitizer runtimes preloaded into the interpreter.
#   bash cmake/asan_pytest.sh          # PYTHON (default .venv/bin/python), MAX_JOBS
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
OUT=build-asan
start=$SECONDS
COSPEC_SANITIZE=1 MAX_JOBS="${MAX_JOBS:-2}" "$PYTHON" setup.py -q build_ext --build-lib "$OUT/lib" \
  --build-temp "$OUT/tmp" >"$OUT.log" 2>&1 || { tail -n 30 "$OUT.log"; exit 1; }
built=$SECONDS
rm -rf "$OUT/pkg"
mkdir -p "$OUT/pkg/cospec_ext"
for f in cospec_ext/*; do
  case "$f" in *.so) ;; *) ln -s "$PWD/$f" "$OUT/pkg/cospec_ext/" ;; esac
done
cp "$OUT"/lib/cospec_ext/_C*.so "$OUT/pkg/cospec_ext/"
CC="${CC:-gcc}"
export LD_PRELOAD="$("$CC" -print-file-name=libasan.so) $("$CC" -print-file-name=libubsan.so)"
# libtorch is not instrumented: its allocations at exit and its new/delete pairs are not ours.
export ASAN_OPTIONS="detect_leaks=0:alloc_dealloc_mismatch=0:new_delete_type_mismatch=0:detect_odr_violation=0:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$PWD/$OUT/pkg${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONSAFEPATH=1  # no cwd on sys.path: the repo's own cospec_ext/ would shadow the staged one
"$PYTHON" -c 'import cospec_ext._C as c, sys; assert "build-asan" in c.__file__, c.__file__; print("sanitized extension:", c.__file__)'
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_logit_stats.py tests/test_verify_tree.py \
  tests/test_verify_sampling.py tests/test_kv_rollback.py tests/test_arbiter_score.py \
  tests/test_node_features.py tests/test_edge_cases.py tests/test_bad_inputs.py \
  tests/test_commit_tokens.py tests/test_tree_mask.py tests/test_linear_rows.py tests/test_linear_packed.py \
  tests/test_linear_auto.py tests/test_tree_attention.py \
  -k "not test_under_compile and not test_instruction_sets and not test_native_linear and not test_native_core \
and not test_one_graph and not test_carried_prefill and not test_compiled_forward"
echo "cmake/asan_pytest.sh: build $((built - start))s, tests $((SECONDS - built))s"

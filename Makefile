# One-command entry points; each works on a fresh clone with no manual step.
#   make test    venv + pinned deps + build (CPU and, with nvcc, CUDA kernels) + pytest + ctest, and
#                ctest again with the CPU kernels under ASan + UBSan (make sanitize)
#   make bench   microbenchmarks (pytest-benchmark) and a summary table; compiled vs eager decoding
#                on the demo pair and on SmolLM2-135M-Instruct (installs requirements-bench.txt);
#                bench/out/RESULTS.md is bench/RESULTS.md with its generated tables refreshed
#   make demo    the embedded task: every method's accuracy/speed table and a plot (`cospec demo`)
#   make arbiter retrain the shipped arbiter from scratch (`cospec train --stage all`: labels, imitation,
#                RL, validation; ~25 min on 2 cores)
#   make models  retrain the shipped target and draft models (`cospec task train-models`; the
#                target alone ~29 min on 2 cores)
# Knobs: PYTHON (interpreter for the venv), MAX_JOBS, TORCH_CUDA_ARCH_LIST, COSPEC_CPU_ONLY;
# for bench: COSPEC_BENCH_QUICK=1 (smallest shapes), COSPEC_BENCH_TIME (s per benchmark),
# COSPEC_BENCH_THREADS.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-installed
export MAX_JOBS ?= 2

.PHONY: setup build test pytest ctest sanitize bench demo arbiter models clean

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): requirements.txt | $(VPY)
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install -r requirements.txt
	touch $@

setup: $(DEPS_STAMP)

# The editable install rebuilds every kernel (pip builds in a fresh temporary directory), so
# it runs only when a C++/CUDA source or the build script changed; Python files are live.
BUILD_STAMP := $(VENV)/.built
KERNEL_SRCS := $(shell find csrc -type f) setup.py pyproject.toml

$(BUILD_STAMP): $(DEPS_STAMP) $(KERNEL_SRCS)
	$(VPY) -m pip install --no-build-isolation --no-deps -e .
	touch $@

build: $(BUILD_STAMP)

pytest: build
	$(VPY) -m pytest tests -q

ctest: build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PYTHON=$(CURDIR)/$(VPY) bash cmake/ctest.sh

# The CPU kernels under AddressSanitizer + UndefinedBehaviorSanitizer: the C++ op tests, then
# the Python op tests against a sanitized CPU-only build of the extension.
sanitize: build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PYTHON=$(CURDIR)/$(VPY) BUILD_DIR=build-cmake-asan \
		bash cmake/ctest.sh -DCOSPEC_SANITIZE=ON -DCOSPEC_WITH_CUDA=OFF
	PYTHON=$(CURDIR)/$(VPY) bash cmake/asan_pytest.sh

test: pytest ctest sanitize

BENCH_STAMP := $(VENV)/.bench-deps

$(BENCH_STAMP): requirements-bench.txt $(DEPS_STAMP)
	$(VPY) -m pip install --no-deps -r requirements-bench.txt
	touch $@

bench: build $(BENCH_STAMP)
	mkdir -p bench/out
	$(VPY) -m pytest bench -q --benchmark-quiet --benchmark-json=bench/out/bench.json
	$(VPY) bench/ops/summary.py bench/out/bench.json
	$(VPY) bench/decode/decode_summary.py bench/out/bench.json
	$(VPY) bench/decode/decode_summary.py --markdown -o bench/out/RESULTS_decode.md bench/out/bench.json
	$(VPY) bench/results_tables.py --allow-quick -o bench/out/RESULTS.md bench/out/bench.json
	$(VPY) bench/decode/compile_speed.py --repeats 5 | tee bench/out/compile_speed.txt
	$(VPY) bench/decode/pair_compile.py --repeats 5 | tee bench/out/pair_compile.txt
	$(VPY) bench/decode/engine_overhead.py | tee bench/out/engine_overhead.txt
	$(VPY) bench/ops/round_ops_speed.py | tee bench/out/round_ops_speed.txt
	$(VPY) bench/decode/smollm2_speed.py --repeats 3 | tee bench/out/smollm2_speed.txt
	$(VPY) bench/ops/gemv_speed.py | tee bench/out/gemv_speed.txt
	$(VPY) bench/ops/linear_packed_speed.py | tee bench/out/linear_packed_speed.txt
	$(VPY) bench/ops/attention_speed.py | tee bench/out/attention_speed.txt
	$(VPY) bench/ops/forward_buckets.py | tee bench/out/forward_buckets.txt
	$(VPY) bench/decode/smollm2_prompts.py | tee bench/out/smollm2_prompts.txt
	$(VPY) bench/ops/bf16_forward.py | tee bench/out/bf16_forward.txt

demo: build
	$(VPY) -m cospec_ext.cli demo --seeds 0 --n 300 --repeats 3 --timing-n 16 --json demo_out/demo.json --plot demo_out/cospec_accuracy_vs_speedup.png

arbiter: build
	rm -rf runs/arbiter
	$(VPY) -m cospec_ext.cli train --stage all --threads 2 --updates 40 --train-problems 20000 --out runs/arbiter --export cospec_ext/assets/arbiter

models: build
	$(VPY) -m cospec_ext.cli task train-models

clean:
	rm -rf build build-cmake build-cmake-asan build-asan build-asan.log *.egg-info cospec_ext/*.so bench/out demo_out

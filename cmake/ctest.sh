#!/usr/bin/env bash
# Configure, build and run the C++ op tests of CMakeLists.txt in build-cmake/.
#
#   bash cmake/ctest.sh                      # from the repo root, with the venv's python on PATH
#   PYTHON=.venv/bin/python MAX_JOBS=2 bash cmake/ctest.sh -DCOSPEC_WITH_CUDA=ON
#
# Environment: PYTHON (default: python) is asked for torch.utils.cmake_prefix_path;
# MAX_JOBS (default 2) parallel compile jobs; BUILD_DIR (default build-cmake).
# Extra arguments go to the cmake configure step. Uses Ninja when one is found
# (PATH, or the ninja pip package next to $PYTHON), else Unix Makefiles.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python}"
BUILD_DIR="${BUILD_DIR:-build-cmake}"
JOBS="${MAX_JOBS:-2}"

TORCH_PREFIX="$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
PYTHON_EXE="$("$PYTHON" -c 'import sys; print(sys.executable)')"

GENERATOR=()
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then  # the generator of an existing build dir stays
  NINJA="$(command -v ninja || true)"
  if [ -z "$NINJA" ] && [ -x "$(dirname "$PYTHON_EXE")/ninja" ]; then
    NINJA="$(dirname "$PYTHON_EXE")/ninja"
  fi
  if [ -n "$NINJA" ]; then
    GENERATOR=(-G Ninja -DCMAKE_MAKE_PROGRAM="$NINJA")
  else
    GENERATOR=(-G "Unix Makefiles")
  fi
fi

start=$SECONDS
cmake -S . -B "$BUILD_DIR" "${GENERATOR[@]}" \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" "$@"
configured=$SECONDS
cmake --build "$BUILD_DIR" -j "$JOBS"
built=$SECONDS
ctest --test-dir "$BUILD_DIR" --output-on-failure
echo "cmake/ctest.sh: configure $((configured - start))s, build $((built - configured))s," \
     "test $((SECONDS - built))s"

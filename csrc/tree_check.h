// Host-side validation of a batch of trees (the tree convention of README.md; parents
// [B, N], or [1, N] for one tree shared by candidates' B rows):
// parents[b, 0] == -1 and 0 <= parents[b, i] < i for i >= 1; optionally every
// candidate token in [0, V). Used by the CPU kernels, which own their inputs'
// memory; the CUDA path validates in the Python wrapper (one host sync) and the
// kernels themselves never index out of bounds whatever the input.
#pragma once

#include <ATen/core/Tensor.h>

#include "common.h"

namespace cospec {

inline void check_tree_cpu(const char* op, const at::Tensor& parents, const at::Tensor* candidates,
                           int64_t V) {
  const int64_t B = parents.size(0), N = parents.size(1);
  const auto P = parents.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    COSPEC_CHECK(op, P[b][0] == -1, "`parents`[", b, ", 0] must be -1 (node 0 is the root), got ",
                 P[b][0]);
    for (int64_t i = 1; i < N; ++i) {
      COSPEC_CHECK(op, P[b][i] >= 0 && P[b][i] < i, "`parents`[", b, ", ", i,
                   "] must be in [0, ", i, ") (a parent comes before its child), got ", P[b][i]);
    }
  }
  if (candidates != nullptr) {
    const auto C = candidates->accessor<int64_t, 2>();  // its own rows: parents may be one shared [1, N] tree
    for (int64_t b = 0; b < candidates->size(0); ++b) {
      for (int64_t i = 0; i < N; ++i) {
        COSPEC_CHECK(op, C[b][i] >= 0 && C[b][i] < V, "`candidates`[", b, ", ", i,
                     "] must be a token id in [0, ", V, "), got ", C[b][i]);
      }
    }
  }
}

// Checks candidates [B, N] and parents [B, N] (int64, on `device`) against each other.
inline void check_tree_shapes(const char* op, const at::Tensor& candidates,
                              const at::Tensor& parents, c10::Device device) {
  COSPEC_CHECK_DTYPE(op, candidates, at::kLong);
  COSPEC_CHECK_DTYPE(op, parents, at::kLong);
  COSPEC_CHECK_DIM(op, candidates, 2);
  COSPEC_CHECK_DIM(op, parents, 2);
  COSPEC_CHECK(op, candidates.sizes() == parents.sizes(),
               "`candidates` and `parents` must have the same shape [B, N], got ",
               candidates.sizes(), " and ", parents.sizes());
  COSPEC_CHECK_DEVICE(op, candidates, device);
  COSPEC_CHECK_DEVICE(op, parents, device);
}

}  // namespace cospec

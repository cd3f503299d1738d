// Argument checks of cospec::logit_stats, shared by the CPU and CUDA launchers
// (shapes, dtypes, devices; tree values are checked in tree_check.h / Python).
#pragma once

#include <ATen/core/Tensor.h>

#include "../common.h"
#include "../tree_check.h"

namespace cospec {

struct StatsArgs {
  at::Tensor logits;              // [B, N, V], rows contiguous (strided rows allowed)
  at::Tensor candidates, parents; // int64 [B, N] contiguous, or both undefined
  int64_t B = 0, N = 0, V = 0;
};

inline StatsArgs check_stats_args(const at::Tensor& logits, const std::optional<at::Tensor>& candidates,
                                  const std::optional<at::Tensor>& parents) {
  constexpr const char* op = "logit_stats";
  COSPEC_CHECK_DIM(op, logits, 3);
  COSPEC_CHECK_FLOAT_LIKE(op, logits);
  StatsArgs a;
  a.B = logits.size(0);
  a.N = logits.size(1);
  a.V = logits.size(2);
  COSPEC_CHECK(op, a.V > 0, "`logits` must have a non-empty vocabulary dim, got shape ",
               logits.sizes());
  COSPEC_CHECK(op, candidates.has_value() == parents.has_value(),
               "`candidates` and `parents` must be given together");
  a.logits = logits.stride(2) == 1 ? logits : logits.contiguous();
  if (candidates) {
    check_tree_shapes(op, *candidates, *parents, logits.device());
    COSPEC_CHECK(op, candidates->size(0) == a.B && candidates->size(1) == a.N,
                 "`candidates` must be [B, N] = [", a.B, ", ", a.N, "] like `logits`, got ",
                 candidates->sizes());
    a.candidates = candidates->contiguous();
    a.parents = parents->contiguous();
  }
  return a;
}

}  // namespace cospec

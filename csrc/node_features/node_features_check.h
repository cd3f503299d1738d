// Argument checks of cospec::node_features, shared by the CPU and CUDA launchers
// (shapes, dtypes, devices; tree values are checked in tree_check.h / Python).
#pragma once

#include <ATen/core/Tensor.h>

#include "../common.h"
#include "../tree_check.h"

namespace cospec {

struct FeatureArgs {
  at::Tensor logits, draft_logits;             // [B, N, V] each, same dtype, rows contiguous
  at::Tensor candidates;                       // int64 [B, N] contiguous
  at::Tensor parents, depth, rank;             // int64 [B or 1, N] contiguous
  at::Tensor n_generated;                      // int64 [B] contiguous
  int64_t B = 0, N = 0, V = 0;
  int64_t parents_row = 0, depth_row = 0, rank_row = 0;  // row strides: N, or 0 for [1, N]
};

inline FeatureArgs check_feature_args(const at::Tensor& target_logits, const at::Tensor& candidates,
                                      const at::Tensor& parents, const at::Tensor& depth,
                                      const at::Tensor& rank, const at::Tensor& n_generated,
                                      const at::Tensor& draft_parent_logits, int64_t levels) {
  constexpr const char* op = "node_features";
  COSPEC_CHECK_DIM(op, target_logits, 3);
  COSPEC_CHECK_FLOAT_LIKE(op, target_logits);
  FeatureArgs a;
  a.B = target_logits.size(0);
  a.N = target_logits.size(1);
  a.V = target_logits.size(2);
  COSPEC_CHECK(op, a.V > 0, "`target_logits` must have a non-empty vocabulary dim, got shape ",
               target_logits.sizes());
  COSPEC_CHECK(op, a.N > 0, "trees need at least the root node (N >= 1), got `target_logits` shape ",
               target_logits.sizes());
  COSPEC_CHECK(op, draft_parent_logits.sizes() == target_logits.sizes(),
               "`draft_parent_logits` must be [B, N, V] like `target_logits` ", target_logits.sizes(),
               ", got ", draft_parent_logits.sizes());
  COSPEC_CHECK(op, draft_parent_logits.scalar_type() == target_logits.scalar_type(),
               "`draft_parent_logits` must have the dtype of `target_logits` (",
               target_logits.scalar_type(), "), got ", draft_parent_logits.scalar_type());
  COSPEC_CHECK_DEVICE(op, draft_parent_logits, target_logits.device());
  COSPEC_CHECK(op, levels >= 0, "`levels` must be >= 0, got ", levels);
  COSPEC_CHECK_DTYPE(op, candidates, at::kLong);
  COSPEC_CHECK_DIM(op, candidates, 2);
  COSPEC_CHECK_DEVICE(op, candidates, target_logits.device());
  COSPEC_CHECK(op, candidates.size(0) == a.B && candidates.size(1) == a.N,
               "`candidates` must be [B, N] = [", a.B, ", ", a.N, "] like `target_logits`, got ",
               candidates.sizes());
  // parents, depth, rank: [B, N], or [1, N] for one tree shared by every row (read at row stride 0)
  for (const at::Tensor* t : {&parents, &depth, &rank}) {
    const char* name = t == &parents ? "parents" : t == &depth ? "depth" : "rank";
    COSPEC_CHECK(op, t->scalar_type() == at::kLong, "`", name, "` must be int64, got ", t->scalar_type());
    COSPEC_CHECK(op, t->dim() == 2 && (t->size(0) == a.B || t->size(0) == 1) && t->size(1) == a.N, "`", name,
                 "` must be [B, N] or [1, N] with B = ", a.B, ", N = ", a.N, ", got ", t->sizes());
    COSPEC_CHECK_DEVICE(op, (*t), target_logits.device());
  }
  COSPEC_CHECK_DTYPE(op, n_generated, at::kLong);
  COSPEC_CHECK(op, n_generated.dim() == 1 && n_generated.size(0) == a.B,
               "`n_generated` must be [B] = [", a.B, "], got ", n_generated.sizes());
  COSPEC_CHECK_DEVICE(op, n_generated, target_logits.device());
  a.logits = target_logits.stride(2) == 1 ? target_logits : target_logits.contiguous();
  a.draft_logits = draft_parent_logits.stride(2) == 1 ? draft_parent_logits : draft_parent_logits.contiguous();
  a.candidates = candidates.contiguous();
  a.parents = parents.contiguous();
  a.depth = depth.contiguous();
  a.rank = rank.contiguous();
  const auto row = [&](const at::Tensor& t) { return t.size(0) == 1 ? int64_t{0} : a.N; };
  a.parents_row = row(a.parents);
  a.depth_row = row(a.depth);
  a.rank_row = row(a.rank);
  a.n_generated = n_generated.contiguous();
  return a;
}

}  // namespace cospec

// Argument checks of cospec::kv_rollback, shared by the CPU and CUDA launchers.
#pragma once

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>

#include "../common.h"
#include "kv_rollback.h"

namespace cospec {

struct RollbackShapes {
  int64_t L, B, H, S, D, N;  // L: product of the leading dims
  int64_t sB, sH, sS;        // strides in elements
  LeadIndexer lead;
};

inline RollbackShapes check_rollback_args(const at::Tensor& cache, const at::Tensor& base_len,
                                          const at::Tensor& path) {
  constexpr const char* op = "kv_rollback";
  RollbackShapes sh{};
  COSPEC_CHECK(op, cache.dim() >= 4, "`cache` must be [..., B, H, S, D] (>= 4 dims), got shape ",
               cache.sizes());
  COSPEC_CHECK(op, cache.dim() - 4 <= LeadIndexer::kMaxLead, "`cache` has more than ",
               LeadIndexer::kMaxLead, " leading dims");
  COSPEC_CHECK(op, cache.stride(-1) == 1 || cache.size(-1) == 1,
               "`cache` rows (the last dim, D) must be contiguous, got strides ", cache.strides());
  // Several slots sharing memory (a stride-0 expanded dim) would make work items write the
  // same bytes: refuse it.
  COSPEC_CHECK(op, at::has_internal_overlap(cache) != at::MemOverlap::Yes,
               "`cache` has internal overlap (some elements share memory, e.g. an expanded dim with "
               "stride 0; strides ", cache.strides(), "): compact it into its own memory first");
  COSPEC_CHECK_DTYPE(op, base_len, at::kLong);
  COSPEC_CHECK_DTYPE(op, path, at::kLong);
  COSPEC_CHECK_DIM(op, base_len, 1);
  COSPEC_CHECK_DIM(op, path, 2);
  COSPEC_CHECK_DEVICE(op, base_len, cache.device());
  COSPEC_CHECK_DEVICE(op, path, cache.device());
  const int64_t d = cache.dim();
  sh.B = cache.size(d - 4);
  sh.H = cache.size(d - 3);
  sh.S = cache.size(d - 2);
  sh.D = cache.size(d - 1);
  sh.N = path.size(1);
  COSPEC_CHECK(op, base_len.size(0) == sh.B && path.size(0) == sh.B,
               "batch sizes differ: `cache` has B = ", sh.B, ", `base_len` ", base_len.size(0),
               ", `path` ", path.size(0));
  COSPEC_CHECK(op, sh.N <= sh.S, "`path` has N = ", sh.N, " entries but `cache` only S = ", sh.S,
               " slots");
  sh.sB = cache.stride(d - 4);
  sh.sH = cache.stride(d - 3);
  sh.sS = cache.stride(d - 2);
  sh.L = 1;
  sh.lead.n = static_cast<int>(d - 4);
  for (int64_t i = 0; i < d - 4; ++i) {
    sh.lead.size[i] = cache.size(i);
    sh.lead.stride[i] = cache.stride(i);
    sh.L *= cache.size(i);
  }
  return sh;
}

}  // namespace cospec

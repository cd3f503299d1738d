// Argument checks of cospec::commit_tokens, shared by the CPU and CUDA launchers.
#pragma once

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>

#include "../common.h"

namespace cospec {

struct CommitShapes {
  int64_t B, S, N, E;
};

inline CommitShapes check_commit_args(const at::Tensor& seq, const at::Tensor& total,
                                      const at::Tensor& candidates, const at::Tensor& path,
                                      const at::Tensor& accept_len, const at::Tensor& next_token,
                                      const at::Tensor& eos_ids) {
  constexpr const char* op = "commit_tokens";
  COSPEC_CHECK_DTYPE(op, seq, at::kLong);
  COSPEC_CHECK_DTYPE(op, total, at::kLong);
  COSPEC_CHECK_DTYPE(op, candidates, at::kLong);
  COSPEC_CHECK_DTYPE(op, path, at::kLong);
  COSPEC_CHECK_DTYPE(op, accept_len, at::kLong);
  COSPEC_CHECK_DTYPE(op, next_token, at::kLong);
  COSPEC_CHECK_DTYPE(op, eos_ids, at::kLong);
  COSPEC_CHECK_DIM(op, seq, 2);
  COSPEC_CHECK_DIM(op, total, 1);
  COSPEC_CHECK_DIM(op, candidates, 2);
  COSPEC_CHECK_DIM(op, path, 2);
  COSPEC_CHECK_DIM(op, accept_len, 1);
  COSPEC_CHECK_DIM(op, next_token, 1);
  COSPEC_CHECK_DIM(op, eos_ids, 1);
  const auto dev = seq.device();
  COSPEC_CHECK_DEVICE(op, total, dev);
  COSPEC_CHECK_DEVICE(op, candidates, dev);
  COSPEC_CHECK_DEVICE(op, path, dev);
  COSPEC_CHECK_DEVICE(op, accept_len, dev);
  COSPEC_CHECK_DEVICE(op, next_token, dev);
  COSPEC_CHECK_DEVICE(op, eos_ids, dev);
  CommitShapes sh{seq.size(0), seq.size(1), path.size(1), eos_ids.size(0)};
  COSPEC_CHECK(op, total.size(0) == sh.B && candidates.size(0) == sh.B && path.size(0) == sh.B &&
                   accept_len.size(0) == sh.B && next_token.size(0) == sh.B,
               "batch sizes differ: `seq` has B = ", sh.B, ", `total` ", total.size(0),
               ", `candidates` ", candidates.size(0), ", `path` ", path.size(0), ", `accept_len` ",
               accept_len.size(0), ", `next_token` ", next_token.size(0));
  COSPEC_CHECK(op, candidates.size(1) == sh.N, "`candidates` must be [B, N] like `path` (N = ",
               sh.N, "), got shape ", candidates.sizes());
  for (const at::Tensor* t : {&seq, &total}) {  // written in place: no element may repeat
    COSPEC_CHECK(op, at::has_internal_overlap(*t) != at::MemOverlap::Yes, "`",
                 t == &seq ? "seq" : "total", "` has internal overlap (strides ", t->strides(),
                 "): give it its own memory");
  }
  COSPEC_CHECK(op, sh.N >= 1, "trees need at least the root node (N >= 1), got N = 0");
  return sh;
}

}  // namespace cospec

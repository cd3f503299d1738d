// Argument checks of cospec::tree_mask, shared by the CPU and CUDA launchers.
#pragma once

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>

#include "../common.h"

namespace cospec {

struct MaskShapes {
  int64_t B, Q, S, n, anc_sB;  // anc_sB: anc's batch stride (0 when one tree serves every row)
};

inline MaskShapes check_tree_mask_args(const at::Tensor& out, const at::Tensor& pad,
                                       const at::Tensor& root_slot, const at::Tensor& anc) {
  constexpr const char* op = "tree_mask";
  COSPEC_CHECK_DTYPE(op, out, at::kBool);
  COSPEC_CHECK_DTYPE(op, anc, at::kBool);
  COSPEC_CHECK_DTYPE(op, pad, at::kLong);
  COSPEC_CHECK_DTYPE(op, root_slot, at::kLong);
  COSPEC_CHECK_DIM(op, out, 4);
  COSPEC_CHECK_DIM(op, anc, 3);
  COSPEC_CHECK_DIM(op, pad, 1);
  COSPEC_CHECK_DIM(op, root_slot, 1);
  const auto dev = out.device();
  COSPEC_CHECK_DEVICE(op, anc, dev);
  COSPEC_CHECK_DEVICE(op, pad, dev);
  COSPEC_CHECK_DEVICE(op, root_slot, dev);
  MaskShapes sh{out.size(0), out.size(2), out.size(3), anc.size(2), anc.stride(0)};
  COSPEC_CHECK(op, out.size(1) == 1, "`out` must be [B, 1, nq, S], got shape ", out.sizes());
  COSPEC_CHECK(op, pad.size(0) == sh.B && root_slot.size(0) == sh.B,
               "batch sizes differ: `out` has B = ", sh.B, ", `pad` ", pad.size(0), ", `root_slot` ",
               root_slot.size(0));
  COSPEC_CHECK(op, (anc.size(0) == sh.B || anc.size(0) == 1) && anc.size(1) == sh.Q,
               "`anc` must be [B or 1, nq, n] with B = ", sh.B, ", nq = ", sh.Q, ", got shape ",
               anc.sizes());
  if (anc.size(0) == 1) sh.anc_sB = 0;
  COSPEC_CHECK(op, sh.n <= sh.S, "`anc` covers n = ", sh.n, " nodes but `out` only S = ", sh.S,
               " slots");
  COSPEC_CHECK(op, at::has_internal_overlap(out) != at::MemOverlap::Yes,
               "`out` has internal overlap (strides ", out.strides(), "): give it its own memory");
  return sh;
}

}  // namespace cospec

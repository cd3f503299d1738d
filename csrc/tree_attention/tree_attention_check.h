// Argument checks of cospec::tree_attention, shared by the CPU and CUDA launchers.
#pragma once

#include <ATen/core/Tensor.h>

#include "../common.h"
#include "tree_attention.h"

namespace cospec {

struct AttnShapes {
  int64_t B, Hq, Hk, n, S, D;
};

inline AttnShapes check_tree_attention_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                            const at::Tensor& mask) {
  constexpr const char* op = "tree_attention";
  COSPEC_CHECK_DTYPE(op, q, at::kFloat);
  COSPEC_CHECK_DTYPE(op, k, at::kFloat);
  COSPEC_CHECK_DTYPE(op, v, at::kFloat);
  COSPEC_CHECK_DTYPE(op, mask, at::kBool);
  COSPEC_CHECK_DIM(op, q, 4);
  COSPEC_CHECK_DIM(op, k, 4);
  COSPEC_CHECK_DIM(op, v, 4);
  COSPEC_CHECK_DIM(op, mask, 4);
  COSPEC_CHECK_DEVICE(op, k, q.device());
  COSPEC_CHECK_DEVICE(op, v, q.device());
  COSPEC_CHECK_DEVICE(op, mask, q.device());
  const AttnShapes sh{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3)};
  COSPEC_CHECK(op, k.sizes() == v.sizes(), "`k` and `v` must have one shape [B, Hk, S, D], got ", k.sizes(),
               " and ", v.sizes());
  COSPEC_CHECK(op, k.size(0) == sh.B && k.size(3) == sh.D, "`k` must be [B, Hk, S, D] with B = ", sh.B,
               " and D = ", sh.D, " (q [B, Hq, n, D]), got ", k.sizes());
  COSPEC_CHECK(op, sh.Hk >= 1 && sh.Hq % sh.Hk == 0, "`q`'s heads (", sh.Hq,
               ") must be a multiple of `k`'s (", sh.Hk, ")");
  COSPEC_CHECK(op, mask.size(0) == sh.B && mask.size(1) == 1 && mask.size(2) == sh.n && mask.size(3) == sh.S,
               "`mask` must be [B, 1, n, S] = [", sh.B, ", 1, ", sh.n, ", ", sh.S, "], got ", mask.sizes());
  COSPEC_CHECK(op, sh.D == 0 || (q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1),
               "`q`, `k` and `v` must have a unit stride along D");
  return sh;
}

// The kernels' view of checked tensors (q, k, v, mask as check_tree_attention_args took them;
// o [B, Hq, n, D] contiguous), shared by the CPU and CUDA launchers.
inline cpu::TreeAttnArgs tree_attention_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                             const at::Tensor& mask, at::Tensor& o, const AttnShapes& sh,
                                             double scale) {
  return {q.const_data_ptr<float>(), q.stride(0), q.stride(1), q.stride(2),
          k.const_data_ptr<float>(), k.stride(0), k.stride(1), k.stride(2),
          v.const_data_ptr<float>(), v.stride(0), v.stride(1), v.stride(2),
          mask.const_data_ptr<bool>(), mask.stride(0), mask.stride(2), mask.stride(3),
          o.data_ptr<float>(), sh.B, sh.Hq, sh.Hk, sh.n, sh.S, sh.D, static_cast<float>(scale)};
}

}  // namespace cospec

// Argument checks of cospec::linear_rows, shared by the CPU and CUDA launchers.
#pragma once

#include <ATen/core/Tensor.h>

#include "../common.h"

namespace cospec {

struct LinearShapes {
  int64_t M, K, N;
};

inline LinearShapes check_linear_rows_args(const at::Tensor& x, const at::Tensor& weight,
                                           const std::optional<at::Tensor>& bias) {
  constexpr const char* op = "linear_rows";
  COSPEC_CHECK_FLOAT_LIKE(op, x);
  COSPEC_CHECK_DTYPE(op, weight, x.scalar_type());
  COSPEC_CHECK_DIM(op, x, 2);
  COSPEC_CHECK_DIM(op, weight, 2);
  COSPEC_CHECK_DEVICE(op, weight, x.device());
  const LinearShapes sh{x.size(0), x.size(1), weight.size(0)};
  COSPEC_CHECK(op, weight.size(1) == sh.K, "`weight` must be [N, K] with K = ", sh.K,
               " (x's last dim), got shape ", weight.sizes());
  if (bias.has_value()) {
    const at::Tensor& b = *bias;
    COSPEC_CHECK_DTYPE(op, b, x.scalar_type());
    COSPEC_CHECK_DEVICE(op, b, x.device());
    COSPEC_CHECK(op, b.dim() == 1 && b.size(0) == sh.N, "`bias` must be [N] with N = ", sh.N,
                 ", got shape ", b.sizes());
  }
  return sh;
}

}  // namespace cospec

// Argument checks of cospec::linear_packed, shared by the CPU and CUDA launchers.
#pragma once

#include <ATen/core/Tensor.h>

#include "../common.h"
#include "linear_packed.h"

namespace cospec {

struct PackedShapes {
  int64_t M, K, N, P;
};

inline PackedShapes check_linear_packed_args(const at::Tensor& x, const at::Tensor& packed, int64_t n,
                                             const std::optional<at::Tensor>& bias) {
  constexpr const char* op = "linear_packed";
  COSPEC_CHECK_DTYPE(op, x, at::kFloat);
  COSPEC_CHECK_DTYPE(op, packed, at::kFloat);
  COSPEC_CHECK_DIM(op, x, 2);
  COSPEC_CHECK_DIM(op, packed, 3);
  COSPEC_CHECK_DEVICE(op, packed, x.device());
  COSPEC_CHECK_CONTIGUOUS(op, packed);
  const PackedShapes sh{x.size(0), x.size(1), n, packed.size(0)};
  COSPEC_CHECK(op, n >= 1, "`n` (W's rows) must be >= 1, got ", n);
  COSPEC_CHECK(op, packed.size(1) == sh.K && packed.size(2) == cpu::kPanel,
               "`packed` must be [P, K, ", cpu::kPanel, "] with K = ", sh.K,
               " (x's last dim), got shape ", packed.sizes());
  COSPEC_CHECK(op, sh.P == (n + cpu::kPanel - 1) / cpu::kPanel, "`packed` holds ", sh.P,
               " panels of ", cpu::kPanel, " columns, but `n` = ", n, " needs ",
               (n + cpu::kPanel - 1) / cpu::kPanel);
  if (bias.has_value()) {
    const at::Tensor& b = *bias;
    COSPEC_CHECK_DTYPE(op, b, at::kFloat);
    COSPEC_CHECK_DEVICE(op, b, x.device());
    COSPEC_CHECK(op, b.dim() == 1 && b.size(0) == n, "`bias` must be [n] with n = ", n,
                 ", got shape ", b.sizes());
  }
  return sh;
}

}  // namespace cospec

// CPU launcher of cospec::linear_packed: checks, a unit-stride view of x, and threads over
// contiguous ranges of panels once the packed weight is large enough that reading it dominates.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>

#include "../common.h"
#include "linear_packed.h"
#include "linear_packed_check.h"

namespace cospec {
namespace {

using at::Tensor;

// The panels are split over torch's threads from 256 KiB of them (as linear_rows) or from
// 2 MFLOP (2 M N K; ~10 us of one core): below both, a fork/join would cost as much.
constexpr int64_t kParallelBytes = int64_t{256} << 10;
constexpr int64_t kParallelFlops = int64_t{2} << 20;

Tensor linear_packed_cpu(const Tensor& x_in, const Tensor& packed, int64_t n,
                         const std::optional<Tensor>& bias) {
  const PackedShapes sh = check_linear_packed_args(x_in, packed, n, bias);
  const int64_t M = sh.M, K = sh.K, N = sh.N, P = sh.P;
  const Tensor x = K <= 1 || x_in.stride(1) == 1 ? x_in : x_in.contiguous();
  Tensor y = at::empty({M, N}, x_in.options());  // [M, N]
  if (M == 0) return y;
  if (K == 0) return bias.has_value() ? y.copy_(bias->expand({M, N})) : y.zero_();
  const float* xp = x.const_data_ptr<float>();
  const int64_t ldx = M > 1 ? x.stride(0) : K;
  const float* wp = packed.const_data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const cpu::LinearPackedFn fn = cpu::linear_packed_kernels().f32;
  const int64_t bytes = packed.numel() * static_cast<int64_t>(sizeof(float));
  const bool big = bytes >= kParallelBytes || 2 * M * N * K >= kParallelFlops;
  if (!big || at::get_num_threads() <= 1 || at::in_parallel_region()) {
    fn(xp, ldx, M, K, wp, N, 0, P, yp, N);
  } else {
    at::parallel_for(0, P, 1, [&](int64_t p0, int64_t p1) { fn(xp, ldx, M, K, wp, N, p0, p1, yp, N); });
  }
  if (bias.has_value()) y.add_(*bias);
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CPU, m) { m.impl("linear_packed", &linear_packed_cpu); }

}  // namespace cospec

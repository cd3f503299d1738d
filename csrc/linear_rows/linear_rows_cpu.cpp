// CPU launcher of cospec::linear_rows: checks, float views of x and bias, dtype dispatch of
// the weight, and threads over contiguous ranges of W rows once W is large enough that
// reading it dominates (each thread then streams its own part of W).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>

#include "../common.h"
#include "linear_rows.h"
#include "linear_rows_check.h"

namespace cospec {
namespace {

using at::Tensor;

// Weight bytes from which the W rows are split over torch's threads: below, a matrix is
// read in a few microseconds and a parallel region's fork/join would cost as much
// (bench/ops/gemv_speed.py, bench/ops/forward_buckets.py).
constexpr int64_t kParallelBytes = int64_t{256} << 10;

template <typename T>
cpu::LinearRowsFn<T> kernel_for(const cpu::LinearRowsKernels& k);
template <>
cpu::LinearRowsFn<float> kernel_for<float>(const cpu::LinearRowsKernels& k) { return k.f32; }
template <>
cpu::LinearRowsFn<c10::BFloat16> kernel_for<c10::BFloat16>(const cpu::LinearRowsKernels& k) {
  return k.bf16;
}
template <>
cpu::LinearRowsFn<c10::Half> kernel_for<c10::Half>(const cpu::LinearRowsKernels& k) {
  return k.f16;
}

Tensor linear_rows_cpu(const Tensor& x_in, const Tensor& weight_in,
                       const std::optional<Tensor>& bias_in) {
  const LinearShapes sh = check_linear_rows_args(x_in, weight_in, bias_in);
  const int64_t M = sh.M, K = sh.K, N = sh.N;
  // x as float rows with unit stride along K ([M, K], row stride ldx): as is when it already is
  const bool x_float = x_in.scalar_type() == at::kFloat;
  const Tensor x = x_float && (K <= 1 || x_in.stride(1) == 1) ? x_in
                                                               : x_in.to(at::kFloat).contiguous();
  const Tensor w = K <= 1 || weight_in.stride(1) == 1 ? weight_in : weight_in.contiguous();
  Tensor bias;
  if (bias_in.has_value()) bias = bias_in->to(at::kFloat).contiguous();
  Tensor y = at::empty({M, N}, x_in.options().dtype(at::kFloat));  // [M, N]
  if (M == 0 || N == 0) return x_float ? y : y.to(x_in.scalar_type());
  const float* xp = x.const_data_ptr<float>();
  const int64_t ldx = M > 1 ? x.stride(0) : K;
  const float* bp = bias.defined() ? bias.const_data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const int64_t ldw = N > 1 ? w.stride(0) : K;
  const cpu::LinearRowsKernels& kern = cpu::linear_rows_kernels();

  COSPEC_DISPATCH_FLOAT_LIKE(w.scalar_type(), "linear_rows_cpu", [&] {
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const cpu::LinearRowsFn<scalar_t> fn = kernel_for<scalar_t>(kern);
    const int64_t bytes = N * K * static_cast<int64_t>(sizeof(scalar_t));
    const int64_t threads = bytes >= kParallelBytes ? at::get_num_threads() : 1;
    if (threads <= 1 || at::in_parallel_region()) {
      fn(xp, ldx, M, K, wp, ldw, bp, 0, N, yp, N);
      return;
    }
    // one contiguous range of W rows per thread, a multiple of 8 rows except the last
    const int64_t per = ((N + threads - 1) / threads + 7) / 8 * 8;
    const int64_t chunks = (N + per - 1) / per;
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c)
        fn(xp, ldx, M, K, wp, ldw, bp, c * per, std::min(N, (c + 1) * per), yp, N);
    });
  });
  return x_float ? y : y.to(x_in.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CPU, m) { m.impl("linear_rows", &linear_rows_cpu); }

}  // namespace cospec

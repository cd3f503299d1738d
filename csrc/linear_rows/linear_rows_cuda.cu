// CUDA implementation of cospec::linear_rows: a documented cuBLAS fallback. On a GPU a
// projection over a handful of rows is already bound by reading W once (cuBLAS's GEMV and
// small-M GEMM kernels stream W at the memory bandwidth), and the native forward keeps
// cuBLAS inside CUDA graphs there; the op exists on CUDA so that the same graph and the same
// tests run on both devices.
#include <ATen/ops/linear.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "linear_rows_check.h"

namespace cospec {
namespace {

at::Tensor linear_rows_cuda(const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias) {
  check_linear_rows_args(x, weight, bias);
  const c10::cuda::CUDAGuard guard(x.device());
  return at::linear(x, weight, bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CUDA, m) { m.impl("linear_rows", &linear_rows_cuda); }

}  // namespace cospec

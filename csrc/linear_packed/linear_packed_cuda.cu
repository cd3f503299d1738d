// CUDA implementation of cospec::linear_packed: a documented cuBLAS fallback. The packed
// layout is a CPU layout (panels the CPU kernel streams); the native forward packs weights on
// the CPU only. The op exists on CUDA so that the same graphs and tests run on both devices:
// W [n, K] is rebuilt from the panels and passed to cuBLAS (`at::linear`).
#include <ATen/ops/linear.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "linear_packed_check.h"

namespace cospec {
namespace {

at::Tensor linear_packed_cuda(const at::Tensor& x, const at::Tensor& packed, int64_t n,
                              const std::optional<at::Tensor>& bias) {
  const PackedShapes sh = check_linear_packed_args(x, packed, n, bias);
  const c10::cuda::CUDAGuard guard(x.device());
  // W[p * kPanel + c, k] = packed[p, k, c]
  const at::Tensor w = packed.transpose(1, 2).reshape({sh.P * cpu::kPanel, sh.K}).narrow(0, 0, n);
  return at::linear(x, w, bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CUDA, m) { m.impl("linear_packed", &linear_packed_cuda); }

}  // namespace cospec

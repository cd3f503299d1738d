// CUDA kernel of cospec::tree_mask: a grid-stride loop over every (row, query, slot).
//
// Values are not validated here (no sync): a row whose root_slot + n is outside [0, S]
// gets the formula anyway, which reads anc only at j in [0, n) and writes only inside `out`.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "../common.h"
#include "tree_mask.h"
#include "tree_mask_check.h"

namespace cospec {
namespace {

using at::Tensor;

constexpr int kThreads = 256;

struct MaskArgs {
  bool* out;
  const bool* anc;
  const int64_t *pad, *root;
  int64_t B, Q, S, n, total;
  int64_t oB, oQ, oS, aB, aQ, aJ;
};

__global__ void __launch_bounds__(kThreads) tree_mask_kernel(const MaskArgs a) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < a.total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t s = i % a.S, q = (i / a.S) % a.Q, b = i / (a.S * a.Q);
    a.out[b * a.oB + q * a.oQ + s * a.oS] =
        tree_mask_value(s, a.pad[b], a.root[b], a.anc + b * a.aB + q * a.aQ, a.aJ, a.n);
  }
}

void tree_mask_cuda(Tensor& out, const Tensor& pad_in, const Tensor& root_in, const Tensor& anc) {
  const MaskShapes sh = check_tree_mask_args(out, pad_in, root_in, anc);
  const c10::cuda::CUDAGuard guard(out.device());
  if (out.numel() == 0) return;
  const Tensor pad = pad_in.contiguous(), root = root_in.contiguous();
  MaskArgs a{};
  a.out = out.data_ptr<bool>();
  a.anc = anc.const_data_ptr<bool>();
  a.pad = pad.const_data_ptr<int64_t>();
  a.root = root.const_data_ptr<int64_t>();
  a.B = sh.B;
  a.Q = sh.Q;
  a.S = sh.S;
  a.n = sh.n;
  a.total = sh.B * sh.Q * sh.S;
  a.oB = out.stride(0);
  a.oQ = out.stride(2);
  a.oS = out.stride(3);
  a.aB = sh.anc_sB;
  a.aQ = anc.stride(1);
  a.aJ = anc.stride(2);
  const int64_t blocks = std::clamp<int64_t>((a.total + kThreads - 1) / kThreads, 1, 4096);
  tree_mask_kernel<<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CUDA, m) { m.impl("tree_mask", &tree_mask_cuda); }

}  // namespace cospec

// CUDA kernel of cospec::arbiter_score: the whole MLP in one fused kernel.
//
// Parallel decomposition: a block scores R consecutive feature rows (R = 8, or 1
// when shared memory is short). The rows are staged in shared memory as float
// (unless F is too large, then they are read from global memory), and so are the
// hidden activations h1 [R, H1] and h2 [R, H2]. In each dense layer thread j
// computes unit j (and j + blockDim, ...) for all R rows at once, so every weight
// it loads is used R times while the activations are shared-memory broadcasts.
// The output dot product w_out . h is one warp per row (lanes over units, then a
// shuffle reduction). Weights are float32 and accumulate in float32 in the
// CPU kernel's order (b[j] + sum over k in increasing k).
//
// Shared memory (floats): [R * F if staged] [R * H1] [R * H2 if two layers].
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "../common.h"
#include "../cuda_utils.cuh"
#include "arbiter_score.h"
#include "arbiter_score_check.h"

namespace cospec {
namespace {

using at::Tensor;

constexpr int kMaxThreads = 1024;                 // >= kArbiterMaxHidden / 1 unit per thread
constexpr int64_t kSmemBudget = 48 * 1024;         // no opt-in needed
static_assert(kArbiterMaxHidden <= kMaxThreads, "one unit per thread at most");

struct ArbiterArgs {
  int64_t M, F, H1, H2, ldx;  // H2 == 0: one hidden layer; ldx: row stride of x (elements)
  const float *W1, *B1, *W2, *B2, *Wo, *Bo;
  Activation act;
  bool stage_x;   // x rows staged in shared memory
  bool w1_vec4;   // W1 rows can be read as float4
  bool w2_vec4;
  float* out;     // [M]
};

// out[r, j] = act(b[j] + sum_k W[j, k] in[r, k]) for the block's rows r < R, j < n_out.
// `in` rows are `ld` apart; rows >= nvalid read row nvalid - 1 (their results are unused).
template <int R, typename TIn>
__device__ __forceinline__ void dense_layer(const TIn* __restrict__ in, int64_t ld, int nvalid,
                                            int64_t n_in, const float* __restrict__ W,
                                            const float* __restrict__ b, int64_t n_out,
                                            Activation act, bool vec4, float* __restrict__ out) {
  const TIn* rows[R];
#pragma unroll
  for (int r = 0; r < R; ++r) rows[r] = in + static_cast<int64_t>(min(r, nvalid - 1)) * ld;
  for (int64_t j = threadIdx.x; j < n_out; j += blockDim.x) {
    const float* w = W + j * n_in;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = __ldg(b + j);
    int64_t k = 0;
    if (vec4) {
      for (; k + 4 <= n_in; k += 4) {
        const float4 w4 = __ldg(reinterpret_cast<const float4*>(w + k));
#pragma unroll
        for (int r = 0; r < R; ++r) {
          acc[r] = fmaf(w4.x, static_cast<float>(rows[r][k]), acc[r]);
          acc[r] = fmaf(w4.y, static_cast<float>(rows[r][k + 1]), acc[r]);
          acc[r] = fmaf(w4.z, static_cast<float>(rows[r][k + 2]), acc[r]);
          acc[r] = fmaf(w4.w, static_cast<float>(rows[r][k + 3]), acc[r]);
        }
      }
    }
    for (; k < n_in; ++k) {
      const float wk = __ldg(w + k);
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] = fmaf(wk, static_cast<float>(rows[r][k]), acc[r]);
    }
#pragma unroll
    for (int r = 0; r < R; ++r) out[r * n_out + j] = activate(acc[r], act);
  }
}

// Grid: ceil(M / R) blocks; block: a multiple of 32 threads, <= 1024.
template <typename T, int R>
__global__ void __launch_bounds__(kMaxThreads) arbiter_kernel(const T* __restrict__ x,
                                                              const ArbiterArgs a) {
  extern __shared__ float smem[];
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * R;
  const int nvalid = static_cast<int>(min(static_cast<int64_t>(R), a.M - r0));
  float* xs = smem;                              // [R, F] when staged
  float* h1 = xs + (a.stage_x ? R * a.F : 0);    // [R, H1]
  float* h2 = h1 + R * a.H1;                     // [R, H2]
  const T* xg = x + r0 * a.ldx;                  // the block's first row in global memory
  if (a.stage_x) {
    for (int64_t e = threadIdx.x; e < R * a.F; e += blockDim.x) {
      const int64_t r = e / a.F, k = e % a.F;
      xs[e] = r < nvalid ? static_cast<float>(xg[r * a.ldx + k]) : 0.f;
    }
    __syncthreads();
    dense_layer<R>(xs, a.F, nvalid, a.F, a.W1, a.B1, a.H1, a.act, a.w1_vec4, h1);
  } else {
    dense_layer<R>(xg, a.ldx, nvalid, a.F, a.W1, a.B1, a.H1, a.act, a.w1_vec4, h1);
  }
  __syncthreads();
  const float* h = h1;
  int64_t H = a.H1;
  if (a.H2 > 0) {
    dense_layer<R>(static_cast<const float*>(h1), a.H1, nvalid, a.H1, a.W2, a.B2, a.H2, a.act,
                   a.w2_vec4, h2);
    __syncthreads();
    h = h2;
    H = a.H2;
  }
  // logit[r] = b_out + w_out . h[r]: warp w takes rows w, w + nwarps, ...
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  for (int r = warp; r < nvalid; r += nwarps) {
    float acc = 0.f;
    for (int64_t k = lane; k < H; k += 32) acc = fmaf(__ldg(a.Wo + k), h[r * H + k], acc);
    acc = warp_sum(acc);
    if (lane == 0) a.out[r0 + r] = __ldg(a.Bo) + acc;
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

Tensor arbiter_score_cuda(const Tensor& features, const Tensor& w1, const Tensor& b1,
                          const std::optional<Tensor>& w2, const std::optional<Tensor>& b2,
                          const Tensor& w_out, const Tensor& b_out, c10::string_view activation) {
  const ArbiterShapes sh =
      check_arbiter_args(features, w1, b1, w2, b2, w_out, b_out, activation);
  const c10::cuda::CUDAGuard guard(features.device());
  const Tensor x = features.stride(1) == 1 ? features : features.contiguous();
  Tensor out = at::empty({sh.M}, x.options().dtype(at::kFloat));
  if (sh.M == 0) return out;

  ArbiterArgs a{};
  a.M = sh.M;
  a.F = sh.F;
  a.H1 = sh.H1;
  a.H2 = sh.H2;
  a.ldx = x.stride(0);
  a.W1 = w1.const_data_ptr<float>();
  a.B1 = b1.const_data_ptr<float>();
  a.W2 = sh.H2 > 0 ? w2->const_data_ptr<float>() : nullptr;
  a.B2 = sh.H2 > 0 ? b2->const_data_ptr<float>() : nullptr;
  a.Wo = w_out.const_data_ptr<float>();
  a.Bo = b_out.const_data_ptr<float>();  // read on the device: no host sync
  a.act = sh.act;
  a.w1_vec4 = sh.F % 4 == 0 && aligned16(a.W1);
  a.w2_vec4 = sh.H2 > 0 && sh.H1 % 4 == 0 && aligned16(a.W2);
  a.out = out.data_ptr<float>();

  // The most rows per block (8, else 1), staging x when it fits in the budget.
  auto smem_bytes = [&](int64_t R, bool stage) {
    return R * ((stage ? sh.F : 0) + sh.H1 + sh.H2) * static_cast<int64_t>(sizeof(float));
  };
  int R = 8;
  a.stage_x = smem_bytes(8, true) <= kSmemBudget;
  if (!a.stage_x && smem_bytes(8, false) > kSmemBudget) {
    R = 1;
    a.stage_x = smem_bytes(1, true) <= kSmemBudget;
  }
  // <= kSmemBudget, except R = 1 unstaged: (H1 + H2) floats <= 8 KiB.
  const auto smem = static_cast<size_t>(smem_bytes(R, a.stage_x));
  const int64_t widest = std::max<int64_t>(std::max(sh.H1, sh.H2), 32);
  const int threads = static_cast<int>(std::min<int64_t>((widest + 31) / 32 * 32, kMaxThreads));
  const int64_t nblocks = (sh.M + R - 1) / R;
  COSPEC_CHECK("arbiter_score", nblocks <= INT32_MAX, "too many rows: M = ", sh.M);
  const auto blocks = static_cast<unsigned>(nblocks);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  COSPEC_DISPATCH_FLOAT_LIKE(x.scalar_type(), "arbiter_score_cuda", [&] {
    const scalar_t* X = x.const_data_ptr<scalar_t>();
    if (R == 8) {
      arbiter_kernel<scalar_t, 8><<<blocks, threads, smem, stream>>>(X, a);
    } else {
      arbiter_kernel<scalar_t, 1><<<blocks, threads, smem, stream>>>(X, a);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CUDA, m) { m.impl("arbiter_score", &arbiter_score_cuda); }

}  // namespace cospec

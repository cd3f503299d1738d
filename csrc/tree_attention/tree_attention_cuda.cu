// CUDA kernel of cospec::tree_attention (see tree_attention.h for the contract): one block of
// kThreads threads per query row (b, h, i). Pass 1: each thread scores the slots s = tid,
// tid + kThreads, ... (q . k_s over D from q in shared memory; -inf where masked), keeping a
// running max and sum of exp, merged over the block. Pass 2: slots in tiles of kThreads, each
// thread writes its slot's weight exp(s - m) / sum to shared memory, then the threads sum the
// tile's weighted V rows along D (thread t owns columns t, t + kThreads, ...). Scores are
// recomputed in pass 2 instead of stored, so shared memory does not grow with S. A row whose
// mask is all false gets zeros. On a GPU the engine keeps SDPA (flash kernels); the op exists
// there so that its graphs and tests run on both devices.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cmath>

#include "../common.h"
#include "../cuda_utils.cuh"
#include "tree_attention_check.h"

namespace cospec {
namespace {

constexpr int kThreads = 128;

using Args = cpu::TreeAttnArgs;  // (tree_attention.h)

__device__ __forceinline__ float score(const Args& a, const float* qs, const float* kb, int64_t s) {
  const float* kr = kb + s * a.k_ss;
  float acc = 0.f;
  for (int64_t d = 0; d < a.D; ++d) acc = fmaf(qs[d], kr[d], acc);
  return acc * a.scale;
}

// grid: (n, Hq, B); dynamic shared memory: D + kThreads floats
__global__ void tree_attention_kernel(Args a) {
  extern __shared__ float smem[];
  float* qs = smem;          // [D]
  float* wt = smem + a.D;    // [kThreads] one tile's weights
  __shared__ float red[32];
  const int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (a.Hq / a.Hk);
  const int tid = threadIdx.x;
  const float* qr = a.q + b * a.q_sb + h * a.q_sh + i * a.q_si;
  for (int64_t d = tid; d < a.D; d += kThreads) qs[d] = qr[d];
  __syncthreads();
  const float* kb = a.k + b * a.k_sb + hk * a.k_sh;
  const float* vb = a.v + b * a.v_sb + hk * a.v_sh;
  const bool* mr = a.mask + b * a.m_sb + i * a.m_si;
  // pass 1: max and sum of exp over the open slots
  float m = -INFINITY, l = 0.f;
  for (int64_t s = tid; s < a.S; s += kThreads) {
    if (!mr[s * a.m_ss]) continue;
    const float x = score(a, qs, kb, s);
    const float m2 = fmaxf(m, x);
    l = l * __expf(m - m2) + __expf(x - m2);
    m = m2;
  }
  const float M = block_allreduce(m, [](float x, float y) { return fmaxf(x, y); }, -INFINITY, red);
  const float part = M == -INFINITY || m == -INFINITY ? 0.f : l * __expf(m - M);
  const float sum = block_allreduce(part, [](float x, float y) { return x + y; }, 0.f, red);
  float* orow = a.o + ((b * a.Hq + h) * a.n + i) * a.D;
  if (M == -INFINITY) {  // nothing open to this query
    for (int64_t d = tid; d < a.D; d += kThreads) orow[d] = 0.f;
    return;
  }
  const float inv = 1.f / sum;
  // pass 2: the weighted sum of V, one tile of slots at a time; columns d = tid + j kThreads
  constexpr int kCols = 4;  // D <= kCols * kThreads (checked by the launcher)
  float acc[kCols] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t s0 = 0; s0 < a.S; s0 += kThreads) {
    const int64_t s = s0 + tid;
    wt[tid] = s < a.S && mr[s * a.m_ss] ? __expf(score(a, qs, kb, s) - M) * inv : 0.f;
    __syncthreads();
    const int64_t tile = min(static_cast<int64_t>(kThreads), a.S - s0);
    for (int64_t t = 0; t < tile; ++t) {
      const float w = wt[t];
      if (w == 0.f) continue;
      const float* vr = vb + (s0 + t) * a.v_ss;
#pragma unroll
      for (int j = 0; j < kCols; ++j) {
        const int64_t d = tid + j * kThreads;
        if (d < a.D) acc[j] = fmaf(w, vr[d], acc[j]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    const int64_t d = tid + j * kThreads;
    if (d < a.D) orow[d] = acc[j];
  }
}

at::Tensor tree_attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& mask, double scale) {
  const AttnShapes sh = check_tree_attention_args(q, k, v, mask);
  COSPEC_CHECK("tree_attention", sh.D <= 4 * kThreads, "head dim D must be <= ", 4 * kThreads, " on CUDA, got ",
               sh.D);
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor o = at::empty({sh.B, sh.Hq, sh.n, sh.D}, q.options());  // [B, Hq, n, D]
  if (o.numel() == 0) return o;
  COSPEC_CHECK("tree_attention", sh.n <= 65535 && sh.B <= 65535 && sh.Hq <= 65535,
               "B, Hq and n must each be <= 65535 on CUDA");
  const Args a = tree_attention_args(q, k, v, mask, o, sh, scale);
  const dim3 grid(static_cast<unsigned>(sh.n), static_cast<unsigned>(sh.Hq), static_cast<unsigned>(sh.B));
  const size_t shmem = static_cast<size_t>(sh.D + kThreads) * sizeof(float);
  tree_attention_kernel<<<grid, kThreads, shmem, c10::cuda::getCurrentCUDAStream()>>>(a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return o;
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CUDA, m) { m.impl("tree_attention", &tree_attention_cuda); }

}  // namespace cospec

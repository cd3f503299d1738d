// CUDA kernels of cospec::logit_stats.
//
// Parallel decomposition:
//   row_stats_kernel: one block of kThreads per (row [b, n], split s); a row of V
//     logits is cut into `splits` chunks of whole 64-element groups so that small
//     B * N still fills the GPU (splits == 1 when there are enough rows). Threads
//     stride over the chunk with coalesced 16-byte loads (kUnroll in flight; a
//     scalar head up to the first 16-byte boundary and a scalar tail), each thread
//     keeping an online-softmax state; the block merges the states with warp
//     shuffles + shared memory (softmax_state_merge). With one split thread 0
//     writes the row's statistics (softmax_state_finish); otherwise it writes the
//     partial state to a workspace [rows, splits].
//   finish_kernel: one block per sequence b (launched when splits > 1 or the
//     candidates are given): merges the partial states of rows [b, :] in split
//     order and writes their statistics, then (after __syncthreads, so the block
//     sees its own logsumexp writes) cand_logprob[b, i] = x[b, par[b, i],
//     cand[b, i]] - lse[b, par[b, i]] for i >= 1, 0 at the root and everywhere when
//     no tree is given, NaN for an out-of-range entry (the Python wrapper validates).
//
// Per element a thread does: top1/top2 (max/min), the sum s += 2^d2 and
// u2 += 2^d2 * d2 with d2 = (x - m) * log2(e) clamped at -125 (as the CPU kernel
// clamps x - m at -87), the running shift m being the running max (rescaled once
// per 16-byte group when it rises). u = u2 * ln 2 at the end.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

#include "../common.h"
#include "../cuda_utils.cuh"
#include "../tree_check.h"
#include "logit_stats.h"
#include "logit_stats_check.h"

namespace cospec {

// A state of lane (lane ^ off), field by field. In namespace cospec, beside SoftmaxState, so
// that block_reduce (cuda_utils.cuh) finds it by argument-dependent lookup.
static __device__ __forceinline__ SoftmaxState shfl_xor(const SoftmaxState& a, int off) {
  SoftmaxState b;
  b.m = shfl_xor(a.m, off);
  b.s = shfl_xor(a.s, off);
  b.u = shfl_xor(a.u, off);
  b.top1 = shfl_xor(a.top1, off);
  b.top2 = shfl_xor(a.top2, off);
  b.idx1 = shfl_xor(a.idx1, off);
  return b;
}

namespace {

using at::Tensor;
constexpr const char* kOp = "logit_stats";
constexpr int kThreads = 256;
constexpr int kUnroll = 4;          // 16-byte loads in flight per thread
constexpr int64_t kMinChunk = 4096; // fewest elements per block when a row is split
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

// One thread's online-softmax state; m (the shift) is the running max top1.
struct ThreadState {
  float t1 = -INFINITY, t2 = -INFINITY, s = 0.f, u2 = 0.f;
  int64_t idx = INT64_MAX;

  template <int C>
  __device__ __forceinline__ void add(const float (&v)[C], int64_t j) {
#pragma unroll
    for (int e = 0; e < C; ++e) {
      if (v[e] != v[e]) s = NAN;  // a NaN logit: the row's sum is NaN (special_row_stats)
    }
    const float old = t1;
#pragma unroll
    for (int e = 0; e < C; ++e) {
      t2 = fmaxf(t2, fminf(t1, v[e]));
      t1 = fmaxf(t1, v[e]);
    }
    if (t1 > old) {  // the max rose: its first index, and rescale (s, u2) to the new shift
#pragma unroll
      for (int e = C - 1; e >= 0; --e) {
        if (v[e] == t1) idx = j + e;
      }
      if (s > 0.f) {
        const float d2 = (old - t1) * kLog2e;
        const float w = exp2f(d2);
        // not w * (u2 + d2 * s): d2 * s overflows to -inf when the max rises from a finite
        // value to a huge one, and 0 * -inf = NaN (softmax_rescaled_u, logit_stats.h)
        u2 = w > 0.f ? fmaf(w * d2, s, w * u2) : 0.f;
        s *= w;
      }
    }
    if (t1 == -INFINITY) return;  // everything so far is -inf
#pragma unroll
    for (int e = 0; e < C; ++e) {
      // (x - max) first, so logits near FLT_MAX do not overflow; a NaN stays NaN (not
      // fmaxf, which would drop it) and makes the sum NaN, which special_row_stats sees.
      float d2 = (v[e] - t1) * kLog2e;
      d2 = d2 < -125.f ? -125.f : d2;
      const float w = exp2f(d2);
      s += w;
      u2 = fmaf(w, d2, u2);
    }
  }

  __device__ SoftmaxState state() const {
    return SoftmaxState{t1, s, u2 * kLn2, t1, t2, idx};
  }
};

struct MergeStates {  // op of block_reduce (cuda_utils.cuh)
  __device__ SoftmaxState operator()(const SoftmaxState& a, const SoftmaxState& b) const {
    return softmax_state_merge(a, b);
  }
};

struct StatsOut {
  int64_t* argmax;  // [B, N] each
  float *max_logit, *lse, *entropy, *margin, *cand_logprob;
};

// x: the row's logits (read again only for a NaN / +inf / all -inf row: special_row_stats).
template <typename T>
__device__ __forceinline__ void write_row(const StatsOut& o, int64_t r, const SoftmaxState& st, const T* x,
                                          int64_t V) {
  const RowStats rs = special_row_stats(x, V, softmax_state_finish(st));
  o.argmax[r] = rs.argmax;
  o.max_logit[r] = rs.max_logit;
  o.lse[r] = rs.logsumexp;
  o.entropy[r] = rs.entropy;
  o.margin[r] = rs.margin;
}

// Grid: rows * splits blocks (block -> row = blk / splits, split = blk % splits).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    row_stats_kernel(const T* __restrict__ x, int64_t sb, int64_t sn, int64_t N, int64_t V,
                     int64_t splits, int64_t chunk, SoftmaxState* __restrict__ partial,
                     const StatsOut o, bool no_tree) {
  const int64_t blk = blockIdx.x, row = blk / splits, split = blk % splits;
  const int64_t c0 = split * chunk, len = min(chunk, V - c0);
  const T* xr = x + (row / N) * sb + (row % N) * sn + c0;
  __shared__ SoftmaxState scratch[32];
  ThreadState ts;
  row_foreach<kUnroll>(xr, len, [&](const auto& v, int64_t j) { ts.add(v, c0 + j); });
  const SoftmaxState st = block_reduce(ts.state(), MergeStates{}, softmax_state_init(), scratch);
  if (threadIdx.x == 0) {
    if (splits == 1) {
      write_row(o, row, st, xr, V);
      if (no_tree) o.cand_logprob[row] = 0.f;
    } else {
      partial[blk] = st;
    }
  }
}

// Grid: B blocks. cand/par: [B, N] or null.
template <typename T>
__global__ void finish_kernel(const T* __restrict__ x, int64_t sb, int64_t sn, int64_t N,
                              int64_t V, int64_t splits, const SoftmaxState* __restrict__ partial,
                              const StatsOut o, const int64_t* __restrict__ cand,
                              const int64_t* __restrict__ par) {
  const int64_t b = blockIdx.x;
  if (splits > 1) {
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
      const int64_t r = b * N + n;
      SoftmaxState st = partial[r * splits];
      for (int64_t k = 1; k < splits; ++k) st = softmax_state_merge(st, partial[r * splits + k]);
      write_row(o, r, st, x + b * sb + n * sn, V);
    }
  }
  __syncthreads();  // this block's lse writes are visible below
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    float lp = 0.f;  // the root, and every node when no tree is given
    if (cand != nullptr && i > 0) {
      const int64_t p = par[b * N + i], c = cand[b * N + i];
      lp = p >= 0 && p < N && c >= 0 && c < V
               ? static_cast<float>(x[b * sb + p * sn + c]) - o.lse[b * N + p]
               : NAN;  // an invalid tree entry (the Python wrapper validates trees)
    }
    o.cand_logprob[b * N + i] = lp;
  }
}

int sm_count(int device) {
  static std::atomic<int> cache[64];
  if (device < 0 || device >= 64) return 132;
  int n = cache[device].load(std::memory_order_relaxed);
  if (n == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    cache[device].store(n, std::memory_order_relaxed);
  }
  return n;
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> logit_stats_cuda(
    const Tensor& logits_in, const std::optional<Tensor>& candidates_in,
    const std::optional<Tensor>& parents_in) {
  const StatsArgs a = check_stats_args(logits_in, candidates_in, parents_in);
  const c10::cuda::CUDAGuard guard(logits_in.device());
  // Tree values are validated by the Python wrapper; the kernels only guard their reads.
  const Tensor &logits = a.logits, &candidates = a.candidates, &parents = a.parents;
  const int64_t B = a.B, N = a.N, V = a.V;

  const auto fopts = logits.options().dtype(at::kFloat);
  Tensor argmax = at::empty({B, N}, logits.options().dtype(at::kLong));
  Tensor max_logit = at::empty({B, N}, fopts), lse = at::empty({B, N}, fopts);
  Tensor entropy = at::empty({B, N}, fopts), margin = at::empty({B, N}, fopts);
  Tensor cand_logprob = at::empty({B, N}, fopts);
  const int64_t rows = B * N;
  if (rows == 0) return {argmax, max_logit, lse, entropy, margin, cand_logprob};

  // Split rows when there are too few to fill ~4 blocks per SM.
  const int64_t target = 4 * static_cast<int64_t>(sm_count(logits.get_device()));
  int64_t splits = 1;
  if (rows < target) {
    splits = std::clamp<int64_t>((target + rows - 1) / rows, 1, (V + kMinChunk - 1) / kMinChunk);
  }
  int64_t chunk = (V + splits - 1) / splits;
  chunk = (chunk + 63) / 64 * 64;
  splits = (V + chunk - 1) / chunk;
  COSPEC_CHECK(kOp, rows * splits <= INT32_MAX, "too many rows: B * N = ", rows);
  Tensor workspace;
  if (splits > 1) {
    workspace = at::empty({rows * splits * static_cast<int64_t>(sizeof(SoftmaxState))},
                          logits.options().dtype(at::kByte));
  }
  SoftmaxState* partial =
      splits > 1 ? reinterpret_cast<SoftmaxState*>(workspace.data_ptr()) : nullptr;
  const StatsOut o{argmax.data_ptr<int64_t>(),  max_logit.data_ptr<float>(),
                   lse.data_ptr<float>(),       entropy.data_ptr<float>(),
                   margin.data_ptr<float>(),    cand_logprob.data_ptr<float>()};
  const int64_t* C = candidates.defined() ? candidates.const_data_ptr<int64_t>() : nullptr;
  const int64_t* P = parents.defined() ? parents.const_data_ptr<int64_t>() : nullptr;
  const int64_t sb = logits.stride(0), sn = logits.stride(1);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  COSPEC_DISPATCH_FLOAT_LIKE(logits.scalar_type(), "logit_stats_cuda", [&] {
    using T = scalar_t;
    const T* x = logits.const_data_ptr<T>();
    row_stats_kernel<T><<<static_cast<unsigned>(rows * splits), kThreads, 0, stream>>>(
        x, sb, sn, N, V, splits, chunk, partial, o, splits == 1 && C == nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (splits > 1 || C != nullptr) {
      const int threads = static_cast<int>(std::min<int64_t>((N + 31) / 32 * 32, 256));
      finish_kernel<T><<<static_cast<unsigned>(B), threads, 0, stream>>>(x, sb, sn, N, V, splits,
                                                                         partial, o, C, P);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {argmax, max_logit, lse, entropy, margin, cand_logprob};
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CUDA, m) { m.impl("logit_stats", &logit_stats_cuda); }

}  // namespace cospec

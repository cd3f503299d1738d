// CUDA kernels of cospec::verify_tree.
//
// Parallel decomposition:
//   walk_argmax_kernel (greedy with `target_argmax`): one thread per sequence b
//     walks its tree with greedy_step / arbiter_step; no logits are read.
//   walk_kernel<T, kSample>: one block of kThreads per sequence b. The block
//     stages cand/par [N] in shared memory (when N <= kMaxStagedN), initialises
//     its output rows, then loops: every thread reduces its share of the current
//     node's logits row (coalesced 16-byte loads), a block reduction combines
//     them (greedy: argmax, ties to the lowest index; sampling: M = max x and
//     Z = sum exp((x - M) / T)), thread 0 takes the step of verify_tree.h
//     (greedy_step / sample_step with p(v) = exp((x[v] - M) / T) / Z, then
//     arbiter_step) and broadcasts the next node through shared memory. When
//     sampling rejects every child (and the arbiter accepts none) the block draws
//     the residual: chunks of blockDim * kItems tokens in token order, child
//     tokens masked through a shared flag array, a block-wide exclusive prefix sum
//     (double) of q and the first token whose running CDF exceeds u[0] * mass
//     (fallbacks as in the CPU kernel: last token with mass, else the likeliest).
//
// Values are not validated here (the Python wrapper does it): the walk only
// visits nodes in (cur, N), token ids outside [0, V) have probability 0 and are
// never read, so no input makes a kernel read or write out of bounds.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>

#include "../common.h"
#include "../cuda_utils.cuh"
#include "../tree_check.h"
#include "verify_tree.h"
#include "verify_tree_check.h"

namespace cospec {
namespace {

using at::Tensor;
constexpr const char* kOp = "verify_tree";
constexpr int kThreads = 512;
constexpr int kUnroll = 4;                  // 16-byte loads in flight per thread
constexpr int kItems = 4;                   // residual draw: tokens per thread per chunk
constexpr int64_t kMaxStagedN = 2048;       // cand/par staged in shared memory up to this N
enum : int { kContinue = 0, kDone = 1, kResidual = 2 };

struct WalkOut {
  int64_t *path, *accept_len, *next_token;  // [B, N], [B], [B]
  bool *consulted, *arb;                    // [B, N]
};

struct ArgMax {
  float v;
  int64_t i;  // INT64_MAX: none
};
struct MaxSum {
  float m, s;  // max of x and sum exp((x - m) / T); s = NaN once a NaN logit was seen
};

// For block_allreduce (cuda_utils.cuh). These hide cospec::shfl_xor (float, int64_t) from
// unqualified lookup in this namespace, hence the qualified calls.
__device__ __forceinline__ ArgMax shfl_xor(const ArgMax& a, int off) {
  return ArgMax{cospec::shfl_xor(a.v, off), cospec::shfl_xor(a.i, off)};
}
__device__ __forceinline__ MaxSum shfl_xor(const MaxSum& a, int off) {
  return MaxSum{cospec::shfl_xor(a.m, off), cospec::shfl_xor(a.s, off)};
}

struct BetterArg {  // larger value, ties: lower index
  __device__ ArgMax operator()(const ArgMax& a, const ArgMax& b) const {
    return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
  }
};
struct GreedyArg {  // torch.argmax's order: NaN above everything; ties: lower index
  __device__ ArgMax operator()(const ArgMax& a, const ArgMax& b) const {
    const bool an = a.v != a.v, bn = b.v != b.v;
    if (an || bn) return (an && bn) ? (b.i < a.i ? b : a) : (an ? a : b);
    return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
  }
};
struct CombineMaxSum {
  float inv_t;
  // A NaN partial sum propagates (before issue 23 `a.s > 0.f` dropped it, and CUDA sampled
  // from a finite distribution where the CPU kernel and the reference reject every child).
  __device__ MaxSum operator()(const MaxSum& a, const MaxSum& b) const {
    const float m = fmaxf(a.m, b.m);
    if (a.s != a.s || b.s != b.s) return MaxSum{m, NAN};
    float s = 0.f;
    if (a.s > 0.f) s += a.s * expf((a.m - m) * inv_t);
    if (b.s > 0.f) s += b.s * expf((b.m - m) * inv_t);
    return MaxSum{m, s};
  }
};
struct MinI64 {
  __device__ int64_t operator()(int64_t a, int64_t b) const { return a < b ? a : b; }
};
struct MaxI64 {
  __device__ int64_t operator()(int64_t a, int64_t b) const { return a > b ? a : b; }
};

// Exclusive prefix sum of x over threads in order; *total = the block's sum.
__device__ double block_exclusive_scan(double x, double* total, unsigned char* scratch) {
  double* sc = reinterpret_cast<double*>(scratch);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  double inc = x;
#pragma unroll
  for (int off = 1; off < 32; off *= 2) {
    const double y = __shfl_up_sync(kFullMask, inc, off);
    if (lane >= off) inc += y;
  }
  if (lane == 31) sc[warp] = inc;
  __syncthreads();
  if (warp == 0) {
    double w = lane < nw ? sc[lane] : 0.0;
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
      const double y = __shfl_up_sync(kFullMask, w, off);
      if (lane >= off) w += y;
    }
    if (lane < nw) sc[lane] = w;  // inclusive warp totals
  }
  __syncthreads();
  double excl = __shfl_up_sync(kFullMask, inc, 1);
  if (lane == 0) excl = 0.0;
  excl += warp > 0 ? sc[warp - 1] : 0.0;
  *total = sc[nw - 1];
  __syncthreads();
  return excl;
}

// Residual draw at node cur (every child rejected): the first token v, in id order and
// skipping cur's children's tokens, whose CDF of q(v) = exp((x[v] - shift) / T) * inv_z exceeds
// target (and q(v) > 0); else the last token with q > 0; else (no token with mass: NaN,
// x / T overflowing) the largest non-NaN logit among the non-excluded tokens, else among
// all, else 0 (fallback_token in verify_tree.h): always a token in [0, V).
template <typename T>
__device__ int64_t residual_sample(const T* __restrict__ row, int64_t V, const int64_t* cand,
                                   const int64_t* par, int64_t N, int64_t cur, float inv_t,
                                   float shift, float inv_z, float target, unsigned char* scratch) {
  __shared__ int flags[kThreads * kItems];  // 1: a child's token (excluded)
  const int tid = threadIdx.x;
  const int64_t C = static_cast<int64_t>(blockDim.x) * kItems;
  double carry = 0.0;
  int64_t last = -1;
  ArgMax best{-INFINITY, INT64_MAX};
  for (int64_t c0 = 0; c0 < V; c0 += C) {
#pragma unroll
    for (int k = 0; k < kItems; ++k) flags[tid * kItems + k] = 0;
    __syncthreads();
    for (int64_t i = cur + 1 + tid; i < N; i += blockDim.x) {
      if (par[i] == cur) {
        const int64_t e = cand[i] - c0;
        if (e >= 0 && e < C) atomicExch(&flags[e], 1);  // siblings may share a token
      }
    }
    __syncthreads();
    const int64_t v0 = c0 + static_cast<int64_t>(tid) * kItems;
    float q[kItems];
    bool ok[kItems];
    double tsum = 0.0;
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      ok[k] = v0 + k < V && flags[tid * kItems + k] == 0;
      q[k] = ok[k] ? expf((static_cast<float>(row[v0 + k]) - shift) * inv_t) * inv_z : 0.f;
      if (ok[k]) {  // best: the largest non-NaN logit among the non-excluded tokens
        const float xv = static_cast<float>(row[v0 + k]);
        if (xv == xv && (best.i == INT64_MAX || xv > best.v)) best = ArgMax{xv, v0 + k};
        if (q[k] > 0.f) last = v0 + k;
      }
      tsum += q[k];
    }
    double total;
    double cum = carry + block_exclusive_scan(tsum, &total, scratch);
    int64_t found = INT64_MAX;
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      cum += q[k];
      if (found == INT64_MAX && ok[k] && cum > target && q[k] > 0.f) found = v0 + k;
    }
    found = block_allreduce(found, MinI64{}, INT64_MAX, scratch);
    if (found != INT64_MAX) return found;  // uniform across the block
    carry += total;
  }
  last = block_allreduce(last, MaxI64{}, int64_t{-1}, scratch);
  best = block_allreduce(best, BetterArg{}, ArgMax{-INFINITY, INT64_MAX}, scratch);
  if (last >= 0) return last;
  if (best.i != INT64_MAX) return best.i;
  // Every token excluded, or every logit NaN: the largest non-NaN logit (fallback_token in
  // verify_tree.h), else 0.
  ArgMax raw{-INFINITY, INT64_MAX};
  for (int64_t v = tid; v < V; v += blockDim.x) {
    const float xv = static_cast<float>(row[v]);
    if (xv == xv && (xv > raw.v || (xv == raw.v && v < raw.i))) raw = ArgMax{xv, v};
  }
  raw = block_allreduce(raw, BetterArg{}, ArgMax{-INFINITY, INT64_MAX}, scratch);
  return raw.i == INT64_MAX ? 0 : raw.i;
}

// Grid: B blocks of kThreads; dynamic shared memory 2 * N int64 when `stage`.
template <typename T, bool kSample>
__global__ void __launch_bounds__(kThreads)
    walk_kernel(const T* __restrict__ logits, int64_t sb, int64_t sn, int64_t V,
                const int64_t* cand_g, const int64_t* par_g, int64_t N, bool stage,
                const bool* accept_g, float temperature, const float* unif_g, const WalkOut o) {
  extern __shared__ int64_t tree[];  // cand [N], par [N]
  __shared__ alignas(16) unsigned char scratch[32 * sizeof(ArgMax)];
  __shared__ int64_t s_next;
  __shared__ int s_state;
  __shared__ float s_mass, s_shift, s_inv_z;
  const int tid = threadIdx.x;
  const int64_t b = blockIdx.x;
  const int64_t* cand = cand_g + b * N;
  const int64_t* par = par_g + b * N;
  int64_t* path = o.path + b * N;
  bool* consulted = o.consulted + b * N;
  bool* arb = o.arb + b * N;
  const bool* accept = accept_g != nullptr ? accept_g + b * N : nullptr;
  const float* unif = unif_g != nullptr ? unif_g + b * N : nullptr;
  for (int64_t i = tid; i < N; i += blockDim.x) {
    path[i] = -1;
    consulted[i] = false;
    arb[i] = false;
    if (stage) {
      tree[i] = cand[i];
      tree[N + i] = par[i];
    }
  }
  __syncthreads();
  if (stage) {
    cand = tree;
    par = tree + N;
  }
  const T* xb = logits + b * sb;
  const float inv_t = kSample ? 1.f / temperature : 0.f;
  int64_t cur = 0, depth = 0;  // depth: maintained by thread 0
  if (tid == 0) path[0] = 0;
  int state;
  while (true) {
    const T* row = xb + cur * sn;  // [V]
    if constexpr (!kSample) {
      ArgMax am{-INFINITY, INT64_MAX};
      row_foreach<kUnroll>(row, V, [&](const auto& v, int64_t j) {
#pragma unroll
        for (int e = 0; e < static_cast<int>(sizeof(v) / sizeof(float)); ++e) {
          // the first NaN wins and stays (torch.argmax; the CPU's special_row_stats)
          if (v[e] > am.v || (v[e] != v[e] && am.v == am.v)) am = ArgMax{v[e], j + e};
        }
      });
      am = block_allreduce(am, GreedyArg{}, ArgMax{-INFINITY, INT64_MAX}, scratch);
      if (tid == 0) {
        const int64_t t = am.i == INT64_MAX ? 0 : am.i;  // all -inf: token 0, like the CPU
        int64_t nxt = greedy_step(cand, par, N, cur, t);
        if (nxt == -2) nxt = arbiter_step(par, N, cur, accept, consulted, arb);
        if (nxt < 0) {
          o.next_token[b] = t;
          o.accept_len[b] = depth;
          s_state = kDone;
        } else {
          path[++depth] = nxt;
          s_next = nxt;
          s_state = kContinue;
        }
      }
    } else {
      // M = max x, Z = sum exp((x - M) / T): the max is subtracted before scaling by 1/T,
      // so a finite logit with |x| / T > FLT_MAX keeps p = 1 (issue 23). A NaN logit makes
      // the thread's sum NaN for good (even in a thread that holds only -inf otherwise).
      MaxSum ms{-INFINITY, 0.f};
      row_foreach<kUnroll>(row, V, [&](const auto& v, int64_t) {
        constexpr int C = sizeof(v) / sizeof(float);
        float gm = -INFINITY;
        bool nan = false;
#pragma unroll
        for (int e = 0; e < C; ++e) {
          nan = nan || v[e] != v[e];
          gm = fmaxf(gm, v[e]);
        }
        if (nan) ms.s = NAN;
        if (gm > ms.m) {
          if (ms.s > 0.f) ms.s *= expf((ms.m - gm) * inv_t);
          ms.m = gm;
        }
        if (ms.m == -INFINITY) return;
#pragma unroll
        for (int e = 0; e < C; ++e) ms.s += expf((v[e] - ms.m) * inv_t);
      });
      ms = block_allreduce(ms, CombineMaxSum{inv_t}, MaxSum{-INFINITY, 0.f}, scratch);
      if (tid == 0) {
        const float inv_z = 1.f / ms.s;
        const auto prob = [&](int64_t v) {
          return v >= 0 && v < V ? expf((static_cast<float>(row[v]) - ms.m) * inv_t) * inv_z : 0.f;
        };
        float mass = 1.f;
        int64_t nxt = sample_step(cand, par, N, cur, unif, prob, mass);
        if (nxt == -2) nxt = arbiter_step(par, N, cur, accept, consulted, arb);
        if (nxt < 0) {
          s_mass = mass;
          s_shift = ms.m;
          s_inv_z = inv_z;
          s_state = kResidual;
        } else {
          path[++depth] = nxt;
          s_next = nxt;
          s_state = kContinue;
        }
      }
    }
    __syncthreads();
    state = s_state;
    if (state != kContinue) break;
    cur = s_next;
  }
  if constexpr (kSample) {
    if (state == kResidual) {  // uniform: read after the barrier
      const int64_t tok = residual_sample(xb + cur * sn, V, cand, par, N, cur, inv_t, s_shift,
                                          s_inv_z, unif[0] * s_mass, scratch);
      if (tid == 0) {
        o.next_token[b] = tok;
        o.accept_len[b] = depth;
      }
    }
  }
}

// Grid: ceil(B / 128) blocks of 128 threads, one sequence per thread.
__global__ void walk_argmax_kernel(const int64_t* cand_g, const int64_t* par_g, int64_t B,
                                   int64_t N, const int64_t* argmax_g, const bool* accept_g,
                                   const WalkOut o) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const int64_t *cand = cand_g + b * N, *par = par_g + b * N, *am = argmax_g + b * N;
  const bool* accept = accept_g != nullptr ? accept_g + b * N : nullptr;
  int64_t* path = o.path + b * N;
  bool *consulted = o.consulted + b * N, *arb = o.arb + b * N;
  for (int64_t i = 0; i < N; ++i) {
    path[i] = -1;
    consulted[i] = false;
    arb[i] = false;
  }
  int64_t cur = 0, depth = 0;
  path[0] = 0;
  while (true) {
    const int64_t t = am[cur];
    int64_t nxt = greedy_step(cand, par, N, cur, t);
    if (nxt == -2) nxt = arbiter_step(par, N, cur, accept, consulted, arb);
    if (nxt < 0) {
      o.next_token[b] = t;
      break;
    }
    path[++depth] = nxt;
    cur = nxt;
  }
  o.accept_len[b] = depth;
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> verify_tree_cuda(
    const Tensor& candidates_in, const Tensor& parents_in,
    const std::optional<Tensor>& target_logits, const std::optional<Tensor>& target_argmax,
    const std::optional<Tensor>& accept_draft, double temperature,
    const std::optional<Tensor>& uniforms) {
  const VerifyArgs va = check_verify_args(candidates_in, parents_in, target_logits, target_argmax,
                                          accept_draft, temperature, uniforms);
  const c10::cuda::CUDAGuard guard(candidates_in.device());
  const Tensor &candidates = va.candidates, &parents = va.parents;
  const Tensor &logits = va.logits, &argmax = va.argmax, &accept = va.accept, &unif = va.uniforms;
  const int64_t B = va.B, N = va.N, V = va.V;
  const bool greedy = va.greedy;
  // Tree values (parents, token ids) are validated by the Python wrapper, not here.

  // Every output element is written by the kernels.
  const auto lopts = candidates.options();
  Tensor path = at::empty({B, N}, lopts);
  Tensor accept_len = at::empty({B}, lopts), next_token = at::empty({B}, lopts);
  Tensor consulted = at::empty({B, N}, lopts.dtype(at::kBool));
  Tensor arb = at::empty({B, N}, lopts.dtype(at::kBool));
  if (B == 0) return {path, accept_len, next_token, consulted, arb};
  COSPEC_CHECK(kOp, B <= INT32_MAX, "too many sequences: B = ", B);

  const WalkOut o{path.data_ptr<int64_t>(), accept_len.data_ptr<int64_t>(),
                  next_token.data_ptr<int64_t>(), consulted.data_ptr<bool>(),
                  arb.data_ptr<bool>()};
  const int64_t* C = candidates.const_data_ptr<int64_t>();
  const int64_t* P = parents.const_data_ptr<int64_t>();
  const bool* A = accept.defined() ? accept.const_data_ptr<bool>() : nullptr;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  if (argmax.defined()) {  // greedy from the given argmax: no logits read
    const unsigned blocks = static_cast<unsigned>((B + 127) / 128);
    walk_argmax_kernel<<<blocks, 128, 0, stream>>>(C, P, B, N, argmax.const_data_ptr<int64_t>(),
                                                    A, o);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {path, accept_len, next_token, consulted, arb};
  }

  const bool stage = N <= kMaxStagedN;
  const size_t smem = stage ? 2 * N * sizeof(int64_t) : 0;
  const int64_t sb = logits.stride(0), sn = logits.stride(1);
  const float T = static_cast<float>(temperature);
  const float* U = unif.defined() ? unif.const_data_ptr<float>() : nullptr;
  COSPEC_DISPATCH_FLOAT_LIKE(logits.scalar_type(), "verify_tree_cuda", [&] {
    const scalar_t* x = logits.const_data_ptr<scalar_t>();
    if (greedy) {
      walk_kernel<scalar_t, false><<<static_cast<unsigned>(B), kThreads, smem, stream>>>(
          x, sb, sn, V, C, P, N, stage, A, T, U, o);
    } else {
      walk_kernel<scalar_t, true><<<static_cast<unsigned>(B), kThreads, smem, stream>>>(
          x, sb, sn, V, C, P, N, stage, A, T, U, o);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {path, accept_len, next_token, consulted, arb};
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CUDA, m) { m.impl("verify_tree", &verify_tree_cuda); }

}  // namespace cospec

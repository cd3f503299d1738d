// CUDA kernels of cospec::node_features.
//
// Parallel decomposition:
//   scratch_kernel: one block of kThreads per node (b, i). The block reduces the target
//     row x_i to its online-softmax state (block_allreduce of SoftmaxState), then, for
//     i >= 1, the parent row x_p and the draft row d the same way, then one more pass over
//     V for KL(softmax d || softmax x_p) and #{v : x_p[v] > x_p[c]} (float sums). Thread
//     0 writes the node's NodeScratch and argmax.
//   assemble_kernel: one thread per node: assemble_node (node_features.h) over its
//     sequence's scratch, written by the first kernel (stream order).
// Tree values are validated by the Python wrapper (one host sync; skipped by the engine,
// which builds its trees itself); the kernels never read out of bounds whatever the
// values: a node with an invalid parent or candidate gets a NaN row.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <type_traits>

#include "../common.h"
#include "../cuda_utils.cuh"
#include "../logit_stats/logit_stats.h"
#include "node_features.h"
#include "node_features_check.h"

namespace cospec {

// A SoftmaxState of lane (lane ^ off), field by field (for block_reduce, found by ADL).
static __device__ __forceinline__ SoftmaxState shfl_xor(const SoftmaxState& a, int off) {
  SoftmaxState b;
  b.m = cospec::shfl_xor(a.m, off);
  b.s = cospec::shfl_xor(a.s, off);
  b.u = cospec::shfl_xor(a.u, off);
  b.top1 = cospec::shfl_xor(a.top1, off);
  b.top2 = cospec::shfl_xor(a.top2, off);
  b.idx1 = cospec::shfl_xor(a.idx1, off);
  return b;
}

namespace {

using at::Tensor;
constexpr const char* kOp = "node_features";
constexpr int kThreads = 128;
constexpr int kUnroll = 2;

struct MergeStates {
  __device__ SoftmaxState operator()(const SoftmaxState& a, const SoftmaxState& b) const {
    return softmax_state_merge(a, b);
  }
};
struct Sum {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// The statistics of row x[0..V), in every thread of the block.
template <typename T>
__device__ RowStats block_row_stats(const T* __restrict__ x, int64_t V, void* smem) {
  SoftmaxState st = softmax_state_init();
  row_foreach<kUnroll>(x, V, [&](const auto& v, int64_t j) {
    constexpr int C = static_cast<int>(std::extent_v<std::remove_reference_t<decltype(v)>>);
#pragma unroll
    for (int e = 0; e < C; ++e) softmax_state_add(st, v[e], j + e);
  });
  // NaN / +inf / all -inf rows: the semantics of logit_stats (a serial scan, such rows only)
  return special_row_stats(x, V, softmax_state_finish(block_allreduce(st, MergeStates{}, softmax_state_init(), smem)));
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    scratch_kernel(const T* __restrict__ x, int64_t sb, int64_t sn, const T* __restrict__ d, int64_t db,
                   int64_t dn, const int64_t* __restrict__ par, int64_t sp, const int64_t* __restrict__ cand, int64_t N,
                   int64_t V, NodeScratch* __restrict__ scratch, int64_t* __restrict__ argmax) {
  __shared__ __align__(16) unsigned char smem[32 * sizeof(SoftmaxState)];
  const int64_t node = blockIdx.x, b = node / N, i = node % N;
  const T* xb = x + b * sb;
  const RowStats ti = block_row_stats(xb + i * sn, V, smem);
  NodeScratch s = node_scratch_self(ti);
  if (i > 0) {
    const int64_t p = par[b * sp + i], c = cand[node];
    if (p < 0 || p >= i || c < 0 || c >= V) {  // an invalid tree (the wrapper validates)
      s.cand_lp = s.above = s.kl = s.d_lp_cand = s.d_top = s.d_ent = s.d_margin = NAN;
    } else {
      const T* xp = xb + p * sn;
      const T* dr = d + b * db + i * dn;
      const RowStats ps = block_row_stats(xp, V, smem);
      const RowStats ds = block_row_stats(dr, V, smem);
      const float xc = static_cast<float>(xp[c]);
      float kl = 0.f, above = 0.f;
      for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        kl_rank_add(static_cast<float>(xp[v]), static_cast<float>(dr[v]), xc, ds.logsumexp, ps.logsumexp, kl, above);
      }
      kl = block_allreduce(kl, Sum{}, 0.f, smem);
      above = block_allreduce(above, Sum{}, 0.f, smem);
      node_scratch_parent(s, ps, ds, xc, static_cast<float>(dr[c]), kl, above);
    }
  }
  if (threadIdx.x == 0) {
    scratch[node] = s;
    argmax[node] = ti.argmax;
  }
}

// par, depth, rank: rows at strides sp, sd, sr (0: one tree for every sequence).
__global__ void assemble_kernel(const int64_t* __restrict__ par, int64_t sp, const int64_t* __restrict__ cand,
                                const int64_t* __restrict__ argmax, const int64_t* __restrict__ depth, int64_t sd,
                                const int64_t* __restrict__ rank, int64_t sr, const int64_t* __restrict__ ngen,
                                const NodeScratch* __restrict__ scratch, int64_t B, int64_t N, int64_t V,
                                int64_t levels, float* __restrict__ out) {
  const int64_t node = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (node >= B * N) return;
  const int64_t b = node / N, i = node % N;
  const int64_t* pb = par + b * sp;
  bool ok = pb[0] == -1;  // the whole tree of this sequence: the walk may go anywhere in it
  for (int64_t j = 1; j < N && ok; ++j) ok = pb[j] >= 0 && pb[j] < j && cand[b * N + j] >= 0 && cand[b * N + j] < V;
  float* o = out + node * kNodeFeatures;
  if (!ok) {
    for (int k = 0; k < kNodeFeatures; ++k) o[k] = NAN;
    return;
  }
  assemble_node(i, N, pb, cand + b * N, argmax + b * N, depth + b * sd, rank + b * sr, scratch + b * N, ngen[b],
                levels, o);
}

Tensor node_features_cuda(const Tensor& target_logits, const Tensor& candidates_in, const Tensor& parents_in,
                          const Tensor& depth_in, const Tensor& rank_in, const Tensor& n_generated_in,
                          const Tensor& draft_parent_logits, int64_t levels) {
  const FeatureArgs a = check_feature_args(target_logits, candidates_in, parents_in, depth_in, rank_in,
                                           n_generated_in, draft_parent_logits, levels);
  const c10::cuda::CUDAGuard guard(target_logits.device());
  const int64_t B = a.B, N = a.N, V = a.V, nodes = B * N;
  Tensor out = at::empty({B, N, kNodeFeatures}, a.logits.options().dtype(at::kFloat));
  if (nodes == 0) return out;
  COSPEC_CHECK(kOp, nodes <= INT32_MAX, "too many nodes: B * N = ", nodes);
  Tensor work = at::empty({nodes * static_cast<int64_t>(sizeof(NodeScratch))}, a.logits.options().dtype(at::kByte));
  Tensor argmax = at::empty({nodes}, a.logits.options().dtype(at::kLong));
  NodeScratch* scratch = reinterpret_cast<NodeScratch*>(work.data_ptr());
  const int64_t *par = a.parents.const_data_ptr<int64_t>(), *cand = a.candidates.const_data_ptr<int64_t>();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  COSPEC_DISPATCH_FLOAT_LIKE(a.logits.scalar_type(), "node_features_cuda", [&] {
    scratch_kernel<scalar_t><<<static_cast<unsigned>(nodes), kThreads, 0, stream>>>(
        a.logits.const_data_ptr<scalar_t>(), a.logits.stride(0), a.logits.stride(1),
        a.draft_logits.const_data_ptr<scalar_t>(), a.draft_logits.stride(0), a.draft_logits.stride(1), par,
        a.parents_row, cand,
        N, V, scratch, argmax.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  constexpr int kAssembleThreads = 128;
  assemble_kernel<<<static_cast<unsigned>((nodes + kAssembleThreads - 1) / kAssembleThreads), kAssembleThreads, 0,
                    stream>>>(par, a.parents_row, cand, argmax.const_data_ptr<int64_t>(),
                              a.depth.const_data_ptr<int64_t>(), a.depth_row, a.rank.const_data_ptr<int64_t>(),
                              a.rank_row, a.n_generated.const_data_ptr<int64_t>(), scratch, B,
                              N, V, levels, out.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CUDA, m) { m.impl("node_features", &node_features_cuda); }

}  // namespace cospec

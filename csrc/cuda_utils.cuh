// Torch-free device helpers shared by the CUDA kernels (csrc/*/*_cuda.cu); nvcc only.
//
//   Pack<T>          16 bytes of T: the unit of a vectorised (16-byte) load
//   row_foreach      a block's pass over one contiguous row as float: scalar head,
//                    16-byte vectors (kUnroll in flight per thread), scalar tail
//   shfl_xor         butterfly shuffles of float and int64_t; structs add their own
//                    overload (see below)
//   warp_allreduce   op over the 32 lanes of a warp, result in every lane
//   warp_sum         float sum over the 32 lanes of a warp, result in every lane
//   block_reduce     op over every thread of the block, result in warp 0 (thread 0)
//   block_allreduce  block_reduce, then broadcast to every thread
//
// Reduction order (fixed, so results are deterministic and match across callers): a
// warp combines v = op(v, shfl_xor(v, off)) for off = 16, 8, 4, 2, 1; a block reduces
// each warp, then warp 0 reduces the per-warp results the same way (lane w holds warp
// w's, lanes past the last warp hold `identity`). Warp and block helpers need every
// lane of the warp / every thread of the block to call them (full mask, barriers).
//
// A struct V reduced by these helpers needs `shfl_xor(const V&, int off)` findable by
// argument-dependent lookup: declared in V's own namespace (an overload in an unnamed
// namespace nested in it is not found for a V declared outside it). Such an overload
// declared in a nested namespace hides the float / int64_t ones below from unqualified
// calls made there: call cospec::shfl_xor for the fields.
#pragma once

#if !defined(__CUDACC__)
#error "cuda_utils.cuh holds device code: include it from .cu files only"
#endif

#include <cstdint>

namespace cospec {

constexpr unsigned kFullMask = 0xffffffffu;  // every lane of a warp

// 16 bytes of T (16 / sizeof(T) elements), 16-byte aligned.
template <typename T>
struct alignas(16) Pack {
  T v[16 / sizeof(T)];
};

// Calls f(vals, j) over this thread's share of the row x[0..n) converted to float, with
// vals a `const float (&)[C]` of C consecutive elements starting at index j (C = 1 or
// 16 / sizeof(T)); one thread sees increasing j. Threads of the block take turns (thread
// threadIdx.x of blockDim.x): a scalar head up to the first 16-byte boundary of x, then
// Pack<T> vectors (coalesced; kUnroll loads in flight per thread, then one at a time),
// then a scalar tail. x: any alignment of T. No barrier, but the threads split the row
// between them, so each thread of the block must call it for the whole row to be seen.
template <int kUnroll, typename T, typename F>
__device__ __forceinline__ void row_foreach(const T* __restrict__ x, int64_t n, F&& f) {
  constexpr int kVec = 16 / sizeof(T);
  const int tid = threadIdx.x, nt = blockDim.x;
  const int64_t mis = (reinterpret_cast<uintptr_t>(x) % 16) / sizeof(T);
  const int64_t head = min(n, mis == 0 ? int64_t{0} : kVec - mis);
  if (tid < head) {
    const float v[1] = {static_cast<float>(x[tid])};
    f(v, int64_t{tid});
  }
  const int64_t nvec = (n - head) / kVec;
  const Pack<T>* xv = reinterpret_cast<const Pack<T>*>(x + head);
  int64_t i = tid;
  for (; i + (kUnroll - 1) * nt < nvec; i += kUnroll * nt) {
    Pack<T> p[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) p[k] = xv[i + k * nt];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      float v[kVec];
#pragma unroll
      for (int e = 0; e < kVec; ++e) v[e] = static_cast<float>(p[k].v[e]);
      f(v, head + (i + k * nt) * kVec);
    }
  }
  for (; i < nvec; i += nt) {
    const Pack<T> p = xv[i];
    float v[kVec];
#pragma unroll
    for (int e = 0; e < kVec; ++e) v[e] = static_cast<float>(p.v[e]);
    f(v, head + i * kVec);
  }
  for (int64_t j = head + nvec * kVec + tid; j < n; j += nt) {
    const float v[1] = {static_cast<float>(x[j])};
    f(v, j);
  }
}

// a of lane (lane ^ off) of the warp; every lane of the warp must call it.
__device__ __forceinline__ float shfl_xor(float a, int off) {
  return __shfl_xor_sync(kFullMask, a, off);
}
__device__ __forceinline__ int64_t shfl_xor(int64_t a, int off) {
  return __shfl_xor_sync(kFullMask, static_cast<long long>(a), off);
}

// op over the v of the warp's 32 lanes (xor butterfly, v = op(v, other)), in every lane.
template <typename V, typename Op>
__device__ __forceinline__ V warp_allreduce(V v, Op op) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v = op(v, shfl_xor(v, off));
  return v;
}

// The sum of v over the warp's 32 lanes, in every lane.
__device__ __forceinline__ float warp_sum(float v) {
  return warp_allreduce(v, [](float a, float b) { return a + b; });
}

// op over every thread's v: each warp reduces its own, then warp 0 the per-warp results
// (identity past the last warp). The result is valid in warp 0 only (so in thread 0);
// other warps get their own warp's result. scratch: shared memory, >= 32 * sizeof(V)
// bytes aligned for V. No barrier at the end: __syncthreads() before reusing scratch.
// blockDim.x: a multiple of 32.
template <typename V, typename Op>
__device__ V block_reduce(V v, Op op, V identity, void* scratch) {
  V* sc = static_cast<V*>(scratch);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  v = warp_allreduce(v, op);
  if (lane == 0) sc[warp] = v;
  __syncthreads();
  if (warp == 0) v = warp_allreduce(lane < nw ? sc[lane] : identity, op);
  return v;
}

// block_reduce's result (thread 0's), returned to every thread. Same scratch and blockDim
// rules; ends with __syncthreads(), so scratch can be reused at once.
template <typename V, typename Op>
__device__ V block_allreduce(V v, Op op, V identity, void* scratch) {
  V* sc = static_cast<V*>(scratch);
  v = block_reduce(v, op, identity, scratch);
  if (threadIdx.x == 0) sc[0] = v;
  __syncthreads();
  v = sc[0];
  __syncthreads();
  return v;
}

}  // namespace cospec

// CUDA kernel of cospec::kv_rollback.
//
// Parallel decomposition: a work item is one (leading index l, b, h) row set
// [S, D] of the cache. A block of kThreads threads owns kThreads / tpi items;
// the tpi threads of an item own disjoint column slices of D, moved as W-byte
// vectors (W = 16, 8, 4, 2 or 1: the largest the pointer, the row size and every
// stride allow), whatever the dtype. Each thread walks the path in increasing j
// in batches of kBatch entries: it loads the batch's sources, then stores them.
// That is race-free and gives the sequential result: for a valid (strictly
// increasing) path a source slot base+path[j] is only ever a destination at a
// larger index path[j] >= j, i.e. in the same or a later batch, so every source
// is read before it is overwritten (see kv_rollback.h); columns are never shared.
// Block 0 also writes new_len[b] = base_len[b] + |path[b]|.
//
// Values are not validated here (the Python wrapper does it, without a sync in
// this kernel's path): rows whose base_len is outside [0, S - N] are left alone,
// path entries >= N are skipped and the first negative entry ends the path, so
// no input can make the kernel touch memory outside the cache.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "../common.h"
#include "kv_rollback.h"
#include "kv_rollback_check.h"

namespace cospec {
namespace {

using at::Tensor;

constexpr int kThreads = 256;
constexpr int kBatch = 8;  // path entries whose loads are in flight together

struct RollbackArgs {
  char* cache;          // first byte of cache[0, ..., 0]
  LeadIndexer lead;     // leading dims, strides in BYTES
  int64_t B, H, S, N;
  int64_t sB, sH, sS;   // strides in bytes
  int64_t nvec;         // vectors per row (row bytes / W)
  int tpi;              // threads per item (divides kThreads)
  int64_t items;        // L * B * H
  const int64_t* path;      // [B, N]
  const int64_t* base_len;  // [B]
  int64_t* new_len;         // [B]
};

// VecT: the W-byte unit each thread moves (uint4, uint2, uint32_t, uint16_t, uint8_t).
template <typename VecT>
__global__ void __launch_bounds__(kThreads) kv_rollback_kernel(const RollbackArgs a) {
  const int tid = threadIdx.x;
  if (blockIdx.x == 0) {
    for (int64_t b = tid; b < a.B; b += blockDim.x) {
      a.new_len[b] = a.base_len[b] + path_length(a.path + b * a.N, a.N);
    }
  }
  const int ipb = blockDim.x / a.tpi;
  const int sub = tid / a.tpi, col0 = tid % a.tpi;
  for (int64_t it = static_cast<int64_t>(blockIdx.x) * ipb + sub; it < a.items;
       it += static_cast<int64_t>(gridDim.x) * ipb) {
    const int64_t h = it % a.H, b = (it / a.H) % a.B, l = it / (a.H * a.B);
    const int64_t bl = a.base_len[b];
    if (bl < 0 || bl > a.S - a.N) continue;  // out of range: leave the rows alone
    char* rows = a.cache + a.lead.offset(l) + b * a.sB + h * a.sH + bl * a.sS;  // slot base_len
    const int64_t* p = a.path + b * a.N;
    for (int64_t j0 = 0; j0 < a.N; j0 += kBatch) {
      int64_t src[kBatch];
      bool end = false;
#pragma unroll
      for (int t = 0; t < kBatch; ++t) {
        const int64_t j = j0 + t;
        int64_t pj = -1;
        if (!end && j < a.N) pj = p[j];
        if (pj < 0) end = true;              // the valid prefix ends here
        src[t] = (pj < 0 || pj >= a.N || pj == j) ? -1 : pj;  // -1: nothing to move
      }
      for (int64_t c = col0; c < a.nvec; c += a.tpi) {
        VecT v[kBatch];
#pragma unroll
        for (int t = 0; t < kBatch; ++t) {
          if (src[t] >= 0) v[t] = reinterpret_cast<const VecT*>(rows + src[t] * a.sS)[c];
        }
#pragma unroll
        for (int t = 0; t < kBatch; ++t) {
          if (src[t] >= 0) reinterpret_cast<VecT*>(rows + (j0 + t) * a.sS)[c] = v[t];
        }
      }
      if (end) break;
    }
  }
}

Tensor kv_rollback_cuda(Tensor& cache, const Tensor& base_len_in, const Tensor& path_in) {
  const RollbackShapes sh = check_rollback_args(cache, base_len_in, path_in);
  const c10::cuda::CUDAGuard guard(cache.device());
  const Tensor base_len = base_len_in.contiguous(), path = path_in.contiguous();
  Tensor new_len = at::empty({sh.B}, base_len.options());
  if (sh.B == 0) return new_len;

  const int64_t elt = cache.element_size();
  RollbackArgs a{};
  a.cache = static_cast<char*>(cache.data_ptr());
  a.lead = sh.lead;
  for (int i = 0; i < a.lead.n; ++i) a.lead.stride[i] *= elt;
  a.B = sh.B;
  a.H = sh.H;
  a.S = sh.S;
  a.N = sh.N;
  a.sB = sh.sB * elt;
  a.sH = sh.sH * elt;
  a.sS = sh.sS * elt;
  a.items = cache.numel() == 0 ? 0 : sh.L * sh.B * sh.H;
  a.path = path.const_data_ptr<int64_t>();
  a.base_len = base_len.const_data_ptr<int64_t>();
  a.new_len = new_len.data_ptr<int64_t>();

  // The widest unit W dividing the address, the row's bytes and every stride in use.
  const int64_t row_bytes = sh.D * elt;
  auto fits = [&](int64_t w) {
    if (reinterpret_cast<uintptr_t>(a.cache) % w != 0 || row_bytes % w != 0) return false;
    for (int i = 0; i < a.lead.n; ++i) {
      if (a.lead.size[i] > 1 && a.lead.stride[i] % w != 0) return false;
    }
    return (sh.B <= 1 || a.sB % w == 0) && (sh.H <= 1 || a.sH % w == 0) &&
           (sh.S <= 1 || a.sS % w == 0);
  };
  int64_t w = 16;
  while (w > 1 && !fits(w)) w /= 2;
  a.nvec = row_bytes / w;
  int tpi = 1;
  while (tpi < a.nvec && tpi < kThreads) tpi *= 2;
  a.tpi = tpi;
  const int64_t ipb = kThreads / tpi;
  const int64_t blocks = std::clamp<int64_t>((a.items + ipb - 1) / ipb, 1, int64_t{1} << 20);

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  switch (w) {
    case 16: kv_rollback_kernel<uint4><<<blocks, kThreads, 0, stream>>>(a); break;
    case 8: kv_rollback_kernel<uint2><<<blocks, kThreads, 0, stream>>>(a); break;
    case 4: kv_rollback_kernel<uint32_t><<<blocks, kThreads, 0, stream>>>(a); break;
    case 2: kv_rollback_kernel<uint16_t><<<blocks, kThreads, 0, stream>>>(a); break;
    default: kv_rollback_kernel<uint8_t><<<blocks, kThreads, 0, stream>>>(a); break;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return new_len;
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CUDA, m) { m.impl("kv_rollback", &kv_rollback_cuda); }

}  // namespace cospec

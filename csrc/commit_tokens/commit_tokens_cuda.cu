// CUDA kernel of cospec::commit_tokens: one block whose threads take rows in turn (a round
// commits a few tokens per row; this replaces a dozen small launches of the eager bookkeeping).
//
// Values are not validated on the host (the Python wrapper does it under validate=True, with
// one sync). The block checks every row (commit_row_valid) before any thread writes: when a
// row fails, nothing is written and every row is reported kept 0, finished 1 (all or
// nothing, like the CPU kernel, which raises instead; commit_tokens.h), so no input can make
// the kernel write outside `seq` or read outside `candidates`.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "../common.h"
#include "commit_tokens.h"
#include "commit_tokens_check.h"

namespace cospec {
namespace {

using at::Tensor;

constexpr int kThreads = 256;  // one block: rows b, b + 256, ... per thread

struct CommitArgs {
  int64_t* seq;
  int64_t* total;
  const int64_t *cand, *path, *accept_len, *next_token, *eos;
  int64_t* counts;  // [3, B]
  int64_t B, S, N, E, limit;
  int64_t sQ0, sQ1, sT, sK0, sK1, sP0, sP1;
};

__global__ void __launch_bounds__(kThreads) commit_tokens_kernel(const CommitArgs a) {
  bool bad = false;
  for (int64_t b = threadIdx.x; b < a.B; b += blockDim.x) {
    a.counts[2 * a.B + b] = a.accept_len[b];
    bad = bad || !commit_row_valid(a.S, a.total[b * a.sT], a.path + b * a.sP0, a.sP1, a.N,
                                   a.accept_len[b], a.limit);
  }
  if (__syncthreads_or(bad)) {  // a bad row anywhere: write nothing
    for (int64_t b = threadIdx.x; b < a.B; b += blockDim.x) {
      a.counts[b] = 0;
      a.counts[a.B + b] = 1;
    }
    return;
  }
  for (int64_t b = threadIdx.x; b < a.B; b += blockDim.x) {
    const int64_t acc = a.accept_len[b], t = a.total[b * a.sT];
    const CommitResult r = commit_row(a.seq + b * a.sQ0, a.sQ1, t, a.cand + b * a.sK0, a.sK1,
                                      a.path + b * a.sP0, a.sP1, acc, a.next_token[b], a.eos, a.E,
                                      a.limit);
    a.total[b * a.sT] = t + r.kept;
    a.counts[b] = r.kept;
    a.counts[a.B + b] = r.finished;
  }
}

Tensor commit_tokens_cuda(Tensor& seq, Tensor& total, const Tensor& candidates, const Tensor& path,
                          const Tensor& accept_len_in, const Tensor& next_token_in,
                          const Tensor& eos_in, int64_t limit) {
  const CommitShapes sh = check_commit_args(seq, total, candidates, path, accept_len_in,
                                            next_token_in, eos_in);
  const c10::cuda::CUDAGuard guard(seq.device());
  const Tensor acc = accept_len_in.contiguous(), nxt = next_token_in.contiguous();
  const Tensor eos = eos_in.contiguous();
  Tensor counts = at::empty({3, sh.B}, acc.options());
  if (sh.B == 0) return counts;
  CommitArgs a{};
  a.seq = seq.data_ptr<int64_t>();
  a.total = total.data_ptr<int64_t>();
  a.cand = candidates.const_data_ptr<int64_t>();
  a.path = path.const_data_ptr<int64_t>();
  a.accept_len = acc.const_data_ptr<int64_t>();
  a.next_token = nxt.const_data_ptr<int64_t>();
  a.eos = eos.const_data_ptr<int64_t>();
  a.counts = counts.data_ptr<int64_t>();
  a.B = sh.B;
  a.S = sh.S;
  a.N = sh.N;
  a.E = sh.E;
  a.limit = limit;
  a.sQ0 = seq.stride(0);
  a.sQ1 = seq.stride(1);
  a.sT = total.stride(0);
  a.sK0 = candidates.stride(0);
  a.sK1 = candidates.stride(1);
  a.sP0 = path.stride(0);
  a.sP1 = path.stride(1);
  commit_tokens_kernel<<<1, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return counts;
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CUDA, m) { m.impl("commit_tokens", &commit_tokens_cuda); }

}  // namespace cospec

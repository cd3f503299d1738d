// CPU kernel of cospec::commit_tokens: rows in turn (a round commits a few tokens per row),
// all of them checked before any is written (all or nothing, like the CUDA kernel).
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../common.h"
#include "commit_tokens.h"
#include "commit_tokens_check.h"

namespace cospec {
namespace {

using at::Tensor;
constexpr const char* kOp = "commit_tokens";

Tensor commit_tokens_cpu(Tensor& seq, Tensor& total, const Tensor& candidates, const Tensor& path,
                         const Tensor& accept_len_in, const Tensor& next_token_in,
                         const Tensor& eos_in, int64_t limit) {
  const CommitShapes sh = check_commit_args(seq, total, candidates, path, accept_len_in,
                                            next_token_in, eos_in);
  const Tensor acc = accept_len_in.contiguous(), nxt = next_token_in.contiguous();
  const Tensor eos = eos_in.contiguous();
  Tensor counts = at::empty({3, sh.B}, acc.options());  // kept, finished, accept_len
  int64_t* C = counts.data_ptr<int64_t>();
  int64_t* Q = seq.data_ptr<int64_t>();
  int64_t* T = total.data_ptr<int64_t>();
  const int64_t *A = acc.const_data_ptr<int64_t>(), *X = nxt.const_data_ptr<int64_t>();
  const int64_t *K = candidates.const_data_ptr<int64_t>(), *P = path.const_data_ptr<int64_t>();
  const int64_t sQ = seq.stride(0), sT = total.stride(0);
  // Every row is checked before any is written: a call with a bad row raises and leaves
  // seq and total as they were (before issue 23 rows 0..b-1 were committed, then row b
  // raised). The CUDA kernel does the same all-or-nothing check (commit_tokens.h).
  for (int64_t b = 0; b < sh.B; ++b) {
    const int64_t a = A[b], t = T[b * sT];
    const int64_t* p = P + b * path.stride(0);
    COSPEC_CHECK(kOp, a >= 0 && a < sh.N, "`accept_len`[", b, "] = ", a, " must be in [0, N = ",
                 sh.N, ")");
    COSPEC_CHECK(kOp, t >= 0 && t <= sh.S, "`total`[", b, "] = ", t, " must be in [0, S = ", sh.S,
                 "]");
    COSPEC_CHECK(kOp, commit_row_valid(sh.S, t, p, path.stride(1), sh.N, a, limit), "row ", b,
                 ": `path`[", b, ", 1..accept_len] must be node ids in [0, N = ", sh.N,
                 ") and `seq` must have room for the kept tokens (total = ", t, ", accept_len = ", a,
                 ", limit = ", limit, ", S = ", sh.S, ")");
  }
  for (int64_t b = 0; b < sh.B; ++b) {
    const int64_t a = A[b], t = T[b * sT];
    const int64_t* p = P + b * path.stride(0);
    const CommitResult r = commit_row(Q + b * sQ, seq.stride(1), t,
                                      K + b * candidates.stride(0), candidates.stride(1), p,
                                      path.stride(1), a, X[b], eos.const_data_ptr<int64_t>(),
                                      sh.E, limit);
    T[b * sT] = t + r.kept;
    C[b] = r.kept;
    C[sh.B + b] = r.finished;
    C[2 * sh.B + b] = a;
  }
  return counts;
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CPU, m) { m.impl("commit_tokens", &commit_tokens_cpu); }

}  // namespace cospec

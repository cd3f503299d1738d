// Torch-free core of cospec::commit_tokens, shared by the CPU and CUDA kernels.
//
// One row b of a verification round: the accepted path's tokens, then the bonus /
// correction token, appended to the row's sequence at its current length and cut at
// the first EOS and at `limit` (the row's last allowed length):
//   count = accept_len + 1
//   t_j   = candidates[path[j + 1]] (j < accept_len),  t_accept_len = next_token
//   e     = first j < count with t_j in eos_ids (count when none)
//   room  = limit - total,  kept = max(min(e + 1, count, room), 0)
//   seq[total + j] = t_j (j < kept);  total += kept
//   finished = (an EOS was kept) or kept >= room
#pragma once

#include <cstdint>

#include "../macros.h"

namespace cospec {

struct CommitResult {
  int64_t kept;
  bool finished;
};

// The row's values are valid: 0 <= accept_len < N, path[1..accept_len] in [0, N),
// 0 <= total, total + min(count, room) <= S (callers check, or skip a row that fails
// commit_row_valid).
COSPEC_HD CommitResult commit_row(int64_t* seq, int64_t seq_stride, int64_t total,
                                  const int64_t* cand, int64_t cand_stride, const int64_t* path,
                                  int64_t path_stride, int64_t accept_len, int64_t next_token,
                                  const int64_t* eos, int64_t E, int64_t limit) {
  const int64_t count = accept_len + 1, room = limit - total;
  const int64_t upto = count < room ? count : room;  // tokens that may be kept
  int64_t kept = upto > 0 ? upto : 0;
  bool hit = false;
  for (int64_t j = 0; j < upto; ++j) {
    const int64_t t = j < accept_len ? cand[path[(j + 1) * path_stride] * cand_stride] : next_token;
    seq[(total + j) * seq_stride] = t;
    for (int64_t e = 0; e < E; ++e) hit |= t == eos[e];
    if (hit) {
      kept = j + 1;
      break;
    }
  }
  return {kept, hit || kept >= room};
}

// The checks commit_row relies on. One behaviour on both backends (issue 23): a call in
// which any row fails them writes nothing at all (no row of seq or total changes). The CPU
// kernel then raises, naming the first bad row; the CUDA kernel cannot raise without a
// host sync, so it reports every row kept 0, finished 1 (and accept_len as given). The
// Python wrapper (validate=True) raises a ValueError before either kernel runs.
COSPEC_HD bool commit_row_valid(int64_t S, int64_t total, const int64_t* path,
                                int64_t path_stride, int64_t N, int64_t accept_len,
                                int64_t limit) {
  if (accept_len < 0 || accept_len >= N || total < 0 || total > S) return false;
  const int64_t count = accept_len + 1, room = limit - total;
  const int64_t upto = count < room ? count : room;
  if (total + (upto > 0 ? upto : 0) > S) return false;
  for (int64_t k = 1; k <= accept_len && k <= upto; ++k) {  // the entries commit_row reads
    const int64_t p = path[k * path_stride];
    if (p < 0 || p >= N) return false;
  }
  return true;
}

}  // namespace cospec

// CPU kernel of cospec::kv_rollback: threads over (leading index, b, h) rows of
// the cache; each moves its accepted slots with memcpy in increasing order.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstring>

#include "../common.h"
#include "kv_rollback.h"
#include "kv_rollback_check.h"

namespace cospec {
namespace {

using at::Tensor;
constexpr const char* kOp = "kv_rollback";

Tensor kv_rollback_cpu(Tensor& cache, const Tensor& base_len_in, const Tensor& path_in) {
  const RollbackShapes sh = check_rollback_args(cache, base_len_in, path_in);
  const Tensor base_len = base_len_in.contiguous(), path = path_in.contiguous();
  const int64_t* P = path.const_data_ptr<int64_t>();
  const int64_t* BL = base_len.const_data_ptr<int64_t>();
  Tensor new_len = at::empty({sh.B}, base_len.options());
  int64_t* NL = new_len.data_ptr<int64_t>();
  for (int64_t b = 0; b < sh.B; ++b) {
    const int64_t* p = P + b * sh.N;
    COSPEC_CHECK(kOp, BL[b] >= 0 && BL[b] + sh.N <= sh.S, "`base_len`[", b, "] + N = ", BL[b],
                 " + ", sh.N, " must be within the cache's S = ", sh.S, " slots");
    const int64_t n = path_length(p, sh.N);
    for (int64_t j = 0; j < sh.N; ++j) {
      if (j < n) {
        COSPEC_CHECK(kOp, p[j] < sh.N, "`path`[", b, ", ", j, "] = ", p[j],
                     " is past the tree's N = ", sh.N, " nodes");
        COSPEC_CHECK(kOp, j == 0 || p[j] > p[j - 1], "`path`[", b,
                     "] must be strictly increasing (a root-to-node path), got ", p[j - 1],
                     " then ", p[j]);
      } else {
        COSPEC_CHECK(kOp, p[j] == -1, "`path`[", b, ", ", j,
                     "] must be -1 (padding after the valid prefix), got ", p[j]);
      }
    }
    NL[b] = BL[b] + n;
  }
  if (cache.numel() == 0) return new_len;
  const int64_t elt = cache.element_size(), row_bytes = sh.D * elt;
  char* base = static_cast<char*>(cache.data_ptr());
  const int64_t items = sh.L * sh.B * sh.H;
  at::parallel_for(0, items, 16, [&](int64_t i0, int64_t i1) {
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t h = it % sh.H, b = (it / sh.H) % sh.B, l = it / (sh.H * sh.B);
      char* rows = base + (sh.lead.offset(l) + b * sh.sB + h * sh.sH + BL[b] * sh.sS) * elt;
      const int64_t* p = P + b * sh.N;
      for (int64_t j = 0; j < sh.N && p[j] >= 0; ++j) {
        if (p[j] != j) std::memcpy(rows + j * sh.sS * elt, rows + p[j] * sh.sS * elt, row_bytes);
      }
    }
  });
  return new_len;
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CPU, m) { m.impl("kv_rollback", &kv_rollback_cpu); }

}  // namespace cospec

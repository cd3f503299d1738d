// Torch-free core of cospec::kv_rollback, shared by the CPU and CUDA kernels.
//
// cache is [..., B, H, S, D] (rows of D elements contiguous); the tree's node i
// was written at slot base_len[b] + i. For every valid path entry j
// (path[b, j] >= 0; valid entries are a strictly increasing prefix):
//   slot base_len[b] + j  <-  slot base_len[b] + path[b, j]   (values before the call)
// Because path is strictly increasing, path[b, j] >= j: a source slot is only
// ever another entry's destination at a larger j, so copying in increasing j
// (per column) reads every source before it is overwritten. The kernels keep
// that order per column and never let two threads touch the same column.
#pragma once

#include <cstdint>

#include "../macros.h"

namespace cospec {

// Byte offset of leading index l (flattened over the dims before B) given the
// leading dims' sizes and strides (in elements), innermost last.
struct LeadIndexer {
  static constexpr int kMaxLead = 8;
  int n = 0;
  int64_t size[kMaxLead];
  int64_t stride[kMaxLead];
  COSPEC_HD int64_t offset(int64_t l) const {
    int64_t off = 0;
    for (int d = n - 1; d >= 0; --d) {
      off += (l % size[d]) * stride[d];
      l /= size[d];
    }
    return off;
  }
};

// Number of valid (non-negative) entries of one path row.
COSPEC_HD int64_t path_length(const int64_t* path, int64_t N) {
  int64_t n = 0;
  while (n < N && path[n] >= 0) ++n;
  return n;
}

}  // namespace cospec

// Torch-free core of cospec::tree_mask, shared by the CPU and CUDA kernels.
//
// The boolean attention mask of a forward over draft-tree nodes (True = attend): the query
// of node q of row b sees the committed prefix, slots [pad[b], root[b]), and the slots of
// its ancestors-or-self among the tree's first n nodes, root[b] + j for anc[b, q, j]:
//   out[b, 0, q, s] = (pad[b] <= s < root[b]) || (0 <= s - root[b] < n && anc[b, q, s - root[b]])
#pragma once

#include <cstdint>

#include "../macros.h"

namespace cospec {

COSPEC_HD bool tree_mask_value(int64_t s, int64_t pad, int64_t root, const bool* anc_row,
                               int64_t anc_stride, int64_t n) {
  const int64_t j = s - root;
  if (j >= 0 && j < n) return anc_row[j * anc_stride];
  return s >= pad && s < root;
}

}  // namespace cospec

// CPU kernel of cospec::tree_mask: per (row, query) three runs of slots (before the
// prefix, the prefix, after it) set with memset, then the tree's n slots.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

#include "../common.h"
#include "tree_mask.h"
#include "tree_mask_check.h"

namespace cospec {
namespace {

using at::Tensor;
constexpr const char* kOp = "tree_mask";

void tree_mask_cpu(Tensor& out, const Tensor& pad_in, const Tensor& root_in, const Tensor& anc) {
  const MaskShapes sh = check_tree_mask_args(out, pad_in, root_in, anc);
  const Tensor pad = pad_in.contiguous(), root = root_in.contiguous();
  const int64_t *PD = pad.const_data_ptr<int64_t>(), *R = root.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < sh.B; ++b) {
    COSPEC_CHECK(kOp, R[b] >= 0 && R[b] + sh.n <= sh.S, "`root_slot`[", b, "] + n = ", R[b], " + ",
                 sh.n, " must be within the mask's S = ", sh.S, " slots");
  }
  if (out.numel() == 0) return;
  bool* O = out.data_ptr<bool>();
  const bool* A = anc.const_data_ptr<bool>();
  const int64_t oB = out.stride(0), oQ = out.stride(2), oS = out.stride(3);
  const int64_t aQ = anc.stride(1), aJ = anc.stride(2);
  at::parallel_for(0, sh.B * sh.Q, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t b = it / sh.Q, q = it % sh.Q;
      bool* row = O + b * oB + q * oQ;
      const bool* arow = A + b * sh.anc_sB + q * aQ;
      if (oS != 1) {  // a strided slot dim: one element at a time
        for (int64_t s = 0; s < sh.S; ++s) row[s * oS] = tree_mask_value(s, PD[b], R[b], arow, aJ, sh.n);
        continue;
      }
      const int64_t lo = std::clamp<int64_t>(PD[b], 0, R[b]);  // the prefix [lo, root)
      std::memset(row, 0, lo);
      std::memset(row + lo, 1, R[b] - lo);
      for (int64_t j = 0; j < sh.n; ++j) row[R[b] + j] = arow[j * aJ];
      std::memset(row + R[b] + sh.n, 0, sh.S - R[b] - sh.n);
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CPU, m) { m.impl("tree_mask", &tree_mask_cpu); }

}  // namespace cospec

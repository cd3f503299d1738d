// CPU launcher of cospec::tree_attention: checks, the kernel of this CPU's instruction set,
// and threads over (row, K/V head) pairs once the work is large enough to pay a fork/join.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common.h"
#include "tree_attention.h"
#include "tree_attention_check.h"

namespace cospec {
namespace {

using at::Tensor;

// Multiply-adds (queries x slots x D, both products) from which the pairs are split over
// torch's threads: below, one core takes a few microseconds and a fork/join would cost as much.
constexpr int64_t kParallelWork = int64_t{1} << 18;

Tensor tree_attention_cpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                          double scale) {
  const AttnShapes sh = check_tree_attention_args(q, k, v, mask);
  Tensor o = at::empty({sh.B, sh.Hq, sh.n, sh.D}, q.options());  // [B, Hq, n, D]
  if (o.numel() == 0) return o;
  const cpu::TreeAttnArgs a = tree_attention_args(q, k, v, mask, o, sh, scale);  // mask: any strides
  const cpu::TreeAttnFn fn = cpu::tree_attention_kernels().f32;
  const int64_t pairs = sh.B * sh.Hk;
  const int64_t work = 2 * sh.B * sh.Hq * sh.n * sh.S * std::max<int64_t>(sh.D, 1);
  const int64_t grain = work >= kParallelWork ? 1 : pairs;
  at::parallel_for(0, pairs, grain, [&](int64_t p0, int64_t p1) {
    // per-thread scratch kept between calls (a decode step calls this once per layer)
    thread_local std::vector<int32_t> live;
    thread_local std::vector<float> scratch;
    const auto need = static_cast<size_t>(cpu::tree_attention_scratch(sh.S, sh.D));
    if (live.size() < static_cast<size_t>(sh.S)) live.resize(static_cast<size_t>(sh.S));
    if (scratch.size() < need) scratch.resize(need);
    fn(a, p0, p1, live.data(), scratch.data());
  });
  return o;
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CPU, m) { m.impl("tree_attention", &tree_attention_cpu); }

}  // namespace cospec

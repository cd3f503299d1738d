// CPU launcher of cospec::logit_stats: checks, dtype dispatch, threads over rows.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../common.h"
#include "../tree_check.h"
#include "logit_stats.h"
#include "logit_stats_check.h"

namespace cospec {
namespace {

using at::Tensor;
constexpr const char* kOp = "logit_stats";

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> logit_stats_cpu(
    const Tensor& logits_in, const std::optional<Tensor>& candidates_in,
    const std::optional<Tensor>& parents_in) {
  const StatsArgs a = check_stats_args(logits_in, candidates_in, parents_in);
  const Tensor& logits = a.logits;
  const int64_t B = a.B, N = a.N, V = a.V;
  const bool has_tree = a.candidates.defined();
  if (has_tree) check_tree_cpu(kOp, a.parents, &a.candidates, V);

  const auto fopts = logits.options().dtype(at::kFloat);
  Tensor argmax = at::empty({B, N}, logits.options().dtype(at::kLong));
  Tensor max_logit = at::empty({B, N}, fopts), lse = at::empty({B, N}, fopts);
  Tensor entropy = at::empty({B, N}, fopts), margin = at::empty({B, N}, fopts);
  Tensor cand_logprob = at::empty({B, N}, fopts);
  const int64_t sb = logits.stride(0), sn = logits.stride(1);

  COSPEC_DISPATCH_FLOAT_LIKE(logits.scalar_type(), "logit_stats_cpu",
                                  [&] {
    const scalar_t* x = logits.const_data_ptr<scalar_t>();
    int64_t* am = argmax.data_ptr<int64_t>();
    float *mx = max_logit.data_ptr<float>(), *ls = lse.data_ptr<float>();
    float *en = entropy.data_ptr<float>(), *mg = margin.data_ptr<float>();
    at::parallel_for(0, B * N, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const RowStats st = cpu::logit_row_stats(x + (r / N) * sb + (r % N) * sn, V);
        am[r] = st.argmax;
        mx[r] = st.max_logit;
        ls[r] = st.logsumexp;
        en[r] = st.entropy;
        mg[r] = st.margin;
      }
    });
    // log p_parent(candidate) = x[parent, candidate] - logsumexp[parent]; 0 at the root.
    float* cl = cand_logprob.data_ptr<float>();
    if (!has_tree) {
      std::fill(cl, cl + B * N, 0.f);
      return;
    }
    const auto C = a.candidates.accessor<int64_t, 2>();
    const auto P = a.parents.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; ++b) {
      cl[b * N] = 0.f;
      for (int64_t i = 1; i < N; ++i) {
        const int64_t p = P[b][i];
        cl[b * N + i] = static_cast<float>(x[b * sb + p * sn + C[b][i]]) - ls[b * N + p];
      }
    }
  });
  return {argmax, max_logit, lse, entropy, margin, cand_logprob};
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CPU, m) { m.impl("logit_stats", &logit_stats_cpu); }

}  // namespace cospec

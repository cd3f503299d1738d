// CPU launcher of cospec::node_features: checks, dtype dispatch, threads over sequences.
// Per sequence b: phase 1 (NodeScratch of every node: the vectorised row statistics of
// logit_stats for the target row, the parent row and the draft row, and one scalar pass
// for KL and the rank), then phase 2 (assemble_node) per node.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <vector>

#include "../common.h"
#include "../logit_stats/logit_stats.h"
#include "../tree_check.h"
#include "node_features.h"
#include "node_features_check.h"

namespace cospec {
namespace {

using at::Tensor;
constexpr const char* kOp = "node_features";

// Scratch of node i (p: its parent, the root its own; ps: the parent row's statistics).
template <typename T>
NodeScratch node_scratch(const T* xp, const T* d, int64_t V, int64_t c, bool root,
                         const RowStats& ti, const RowStats& ps) {
  NodeScratch s = node_scratch_self(ti);
  if (root) return s;  // the root's parent columns are unused (its feature row is zero)
  const RowStats ds = cpu::logit_row_stats(d, V);
  const float xc = static_cast<float>(xp[c]);
  float kl = 0.f, above = 0.f;
  for (int64_t v = 0; v < V; ++v) {
    kl_rank_add(static_cast<float>(xp[v]), static_cast<float>(d[v]), xc, ds.logsumexp, ps.logsumexp, kl, above);
  }
  node_scratch_parent(s, ps, ds, xc, static_cast<float>(d[c]), kl, above);
  return s;
}

Tensor node_features_cpu(const Tensor& target_logits, const Tensor& candidates_in, const Tensor& parents_in,
                         const Tensor& depth_in, const Tensor& rank_in, const Tensor& n_generated_in,
                         const Tensor& draft_parent_logits, int64_t levels) {
  const FeatureArgs a = check_feature_args(target_logits, candidates_in, parents_in, depth_in, rank_in,
                                           n_generated_in, draft_parent_logits, levels);
  const int64_t B = a.B, N = a.N, V = a.V;
  check_tree_cpu(kOp, a.parents, &a.candidates, V);
  Tensor out = at::empty({B, N, kNodeFeatures}, a.logits.options().dtype(at::kFloat));
  const int64_t sb = a.logits.stride(0), sn = a.logits.stride(1);
  const int64_t db = a.draft_logits.stride(0), dn = a.draft_logits.stride(1);
  // parents / depth / rank rows: stride 0 when one tree serves every row ([1, N])
  const int64_t sp = a.parents_row, sd = a.depth_row, sr = a.rank_row;
  const int64_t *par = a.parents.const_data_ptr<int64_t>(), *cand = a.candidates.const_data_ptr<int64_t>();
  const int64_t *dep = a.depth.const_data_ptr<int64_t>(), *rnk = a.rank.const_data_ptr<int64_t>();
  const int64_t* ngen = a.n_generated.const_data_ptr<int64_t>();
  float* o = out.data_ptr<float>();

  COSPEC_DISPATCH_FLOAT_LIKE(a.logits.scalar_type(), "node_features_cpu", [&] {
    const scalar_t* x = a.logits.const_data_ptr<scalar_t>();
    const scalar_t* dl = a.draft_logits.const_data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<RowStats> rows(N);
      std::vector<NodeScratch> scratch(N);
      std::vector<int64_t> argmax(N);
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* xb = x + b * sb;
        for (int64_t i = 0; i < N; ++i) {
          rows[i] = cpu::logit_row_stats(xb + i * sn, V);
          argmax[i] = rows[i].argmax;
        }
        for (int64_t i = 0; i < N; ++i) {
          const int64_t p = i == 0 ? 0 : par[b * sp + i];
          scratch[i] = node_scratch(xb + p * sn, dl + b * db + i * dn, V, cand[b * N + i], i == 0,
                                    rows[i], rows[p]);
        }
        for (int64_t i = 0; i < N; ++i) {
          assemble_node(i, N, par + b * sp, cand + b * N, argmax.data(), dep + b * sd, rnk + b * sr,
                        scratch.data(), ngen[b], levels, o + (b * N + i) * kNodeFeatures);
        }
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CPU, m) { m.impl("node_features", &node_features_cpu); }

}  // namespace cospec

// Torch-free core of cospec::node_features, shared by the CPU and CUDA kernels.
//
// Phase 1 (per node, a reduction over the vocabulary; the launchers do it their own way)
// fills a NodeScratch for node i of sequence b, with p = parents[b, i] (the root: p = 0),
// c = candidates[b, i], x = target_logits[b], d = draft_parent_logits[b, i]:
//   t_top, t_ent, t_margin    max x_i - lse(x_i), entropy(softmax x_i), top1 - top2 of x_i
//   cand_lp                   x_p[c] - lse(x_p)                      (0 at the root)
//   above                     #{v : x_p[v] > x_p[c]}
//   kl                        sum_v q_v (log q_v - log p_v), q = softmax(d), p = softmax(x_p)
//   d_lp_cand, d_top, d_ent, d_margin   d[c] - lse(d), max d - lse(d), entropy, top1 - top2
// and argmax[i] (lowest index of max x_i). Phase 2 (assemble_node, below) turns the
// scratch of one sequence into each node's feature row: the parent's statistics are read
// from the parent's scratch, and the look-ahead walks first children (the smallest child
// index: the draft's preferred continuation).
#pragma once

#include <cmath>
#include <cstdint>

#include "../logit_stats/logit_stats.h"
#include "../macros.h"

namespace cospec {

constexpr int kNodeFeatures = 20;  // the columns of FEATURE_NAMES (cospec_ext/engine/features.py)
constexpr float kMarginCap = 1e4f; // margins are clamped here (+inf when V == 1)

// min(x, cap) and max(x, 0) that keep a NaN (fminf / fmaxf would drop it), like torch.clamp.
COSPEC_HD float clamp_max(float x, float cap) { return x > cap ? cap : x; }
COSPEC_HD float clamp_min0(float x) { return x < 0.f ? 0.f : x; }

struct NodeScratch {
  float t_top, t_ent, t_margin;  // at the node itself
  float cand_lp, above, kl;      // of the node's candidate / parent
  float d_lp_cand, d_top, d_ent, d_margin;
};

// Vocabulary entry v's share of `kl` and `above` (header) for a node with candidate logit
// xc = x_p[c]: xv = x_p[v], dv = d[v]; d_lse, p_lse the logsumexps of d and x_p.
COSPEC_HD void kl_rank_add(float xv, float dv, float xc, float d_lse, float p_lse, float& kl, float& above) {
  above += xv > xc ? 1.f : 0.f;
  const float lq = dv - d_lse;
  const float q = expf(lq);
  if (q > 0.f) kl += q * (lq - (xv - p_lse));
}

// The scratch of a node from its own row's statistics (the parent columns zero).
COSPEC_HD NodeScratch node_scratch_self(const RowStats& ti) {
  NodeScratch s{};
  s.t_top = ti.max_logit - ti.logsumexp;
  s.t_ent = ti.entropy;
  s.t_margin = ti.margin;
  return s;
}

// The parent columns: ps, ds the statistics of x_p and d; xc = x_p[c], dc = d[c]; kl and
// above summed over the vocabulary with kl_rank_add.
COSPEC_HD void node_scratch_parent(NodeScratch& s, const RowStats& ps, const RowStats& ds, float xc, float dc,
                                   float kl, float above) {
  s.cand_lp = xc - ps.logsumexp;
  s.above = above;
  s.kl = kl;
  s.d_lp_cand = dc - ds.logsumexp;
  s.d_top = ds.max_logit - ds.logsumexp;
  s.d_ent = ds.entropy;
  s.d_margin = ds.margin;
}

// The first child of node i (smallest j > i with parents[j] == i), or -1.
COSPEC_HD int64_t first_child(const int64_t* par, int64_t N, int64_t i) {
  for (int64_t j = i + 1; j < N; ++j) {
    if (par[j] == i) return j;
  }
  return -1;
}

// Feature row of node i >= 1 of one sequence (row 0, the root's, is all zeros).
//   par, cand, argmax, depth, rank: this sequence's [N] rows; s: its [N] scratch;
//   n_generated: tokens generated before this round; levels: the tree's depth (the
//   look-ahead walks at most that many nodes); out: kNodeFeatures floats.
COSPEC_HD void assemble_node(int64_t i, int64_t N, const int64_t* par, const int64_t* cand,
                             const int64_t* argmax, const int64_t* depth, const int64_t* rank,
                             const NodeScratch* s, int64_t n_generated, int64_t levels, float* out) {
  if (i == 0) {
    for (int k = 0; k < kNodeFeatures; ++k) out[k] = 0.f;
    return;
  }
  const NodeScratch& me = s[i];
  const NodeScratch& pa = s[par[i]];
  const float dep = static_cast<float>(depth[i]);
  out[0] = me.cand_lp;                    // t_logp_cand
  out[1] = pa.t_top;                      // t_logp_top   (at the parent)
  out[2] = pa.t_ent;                      // t_entropy
  out[3] = clamp_max(pa.t_margin, kMarginCap);// t_margin
  out[4] = log1pf(me.above);              // t_rank
  out[5] = me.d_lp_cand;                  // d_logp_cand
  out[6] = me.d_top;                      // d_logp_top
  out[7] = me.d_ent;                      // d_entropy
  out[8] = clamp_max(me.d_margin, kMarginCap);// d_margin
  out[9] = clamp_min0(me.kl);             // kl_dt
  out[10] = dep;                          // depth
  out[11] = static_cast<float>(rank[i]);  // sibling_rank
  out[12] = static_cast<float>(n_generated) + dep;  // position
  out[13] = me.t_top;                     // tc_logp_top  (at the node itself)
  out[14] = me.t_ent;                     // tc_entropy
  out[15] = clamp_max(me.t_margin, kMarginCap);  // tc_margin
  // look-ahead along first children: length, accepted run, first log-prob, mean log-prob
  float n = 0.f, acc = 0.f, next = 0.f, sum = 0.f;
  bool run = true;
  int64_t node = i;
  for (int64_t step = 0; step < levels; ++step) {
    const int64_t c = first_child(par, N, node);
    if (c < 0) break;
    const float lp = s[c].cand_lp;
    if (step == 0) next = lp;
    n += 1.f;
    sum += lp;
    run = run && argmax[node] == cand[c];
    acc += run ? 1.f : 0.f;
    node = c;
  }
  out[16] = n;                            // la_len
  out[17] = acc;                          // la_accept
  out[18] = next;                         // la_logp_next
  out[19] = sum / fmaxf(n, 1.f);          // la_logp_mean
}

}  // namespace cospec

// Torch-free core of cospec::logit_stats, shared by the CPU and CUDA kernels.
//
// For one row of logits x[0..V) we keep the online-softmax state
//   m    = running shift (>= every x seen; the max once the row is done)
//   s    = sum_j exp(x_j - m)
//   u    = sum_j exp(x_j - m) * (x_j - m)
//   top1 = max_j x_j,  idx1 = lowest j with x_j == top1,  top2 = second largest x (duplicates count)
// and finish with
//   logsumexp = m + log s
//   entropy   = -sum_j p_j log p_j = log s - u / s        (p = softmax(x))
//   margin    = top1 - top2                                (+inf when V == 1)
// States of disjoint parts of a row merge exactly (up to rounding) with merge().
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "../macros.h"

namespace cospec {

struct SoftmaxState {
  float m, s, u, top1, top2;
  int64_t idx1;
};

struct RowStats {
  int64_t argmax;
  float max_logit, logsumexp, entropy, margin;
};

COSPEC_HD SoftmaxState softmax_state_init() {
  const float ninf = -INFINITY;
  return SoftmaxState{ninf, 0.f, 0.f, ninf, ninf, INT64_MAX};
}

// u of a state rescaled by e = exp(d) to a shift larger by -d: e * (u + d * s), written
// e * u + (e * d) * s so that d * s (which overflows to -inf when the max rises from a
// finite value to a huge one: d = -1e34, s = 70000) is never formed; e = 0 contributes 0
// (e * d -> 0 as d -> -inf) instead of 0 * -inf = NaN, which softmax_state_finish's fmaxf
// turned into entropy 0 (issue 23).
COSPEC_HD float softmax_rescaled_u(float u, float s, float d, float e) {
  return e > 0.f ? e * u + (e * d) * s : 0.f;
}

// Re-expresses a state's (s, u) relative to a new shift m_new >= st.m and adds them.
COSPEC_HD void softmax_state_accumulate(const SoftmaxState& st, float m_new, float& s, float& u) {
  if (st.s != st.s) {  // a NaN sum (a NaN logit) propagates
    s = NAN;
    u = NAN;
  } else if (st.s > 0.f) {
    const float d = st.m - m_new;
    const float e = expf(d);
    s += st.s * e;
    u += softmax_rescaled_u(st.u, st.s, d, e);
  }
}

// The merge of two states over disjoint index sets.
COSPEC_HD SoftmaxState softmax_state_merge(const SoftmaxState& a, const SoftmaxState& b) {
  SoftmaxState r;
  r.m = fmaxf(a.m, b.m);
  r.s = 0.f;
  r.u = 0.f;
  softmax_state_accumulate(a, r.m, r.s, r.u);
  softmax_state_accumulate(b, r.m, r.s, r.u);
  const bool b_wins = b.top1 > a.top1 || (b.top1 == a.top1 && b.idx1 < a.idx1);
  const SoftmaxState& w = b_wins ? b : a;
  const SoftmaxState& l = b_wins ? a : b;
  r.top1 = w.top1;
  r.idx1 = w.idx1;
  r.top2 = fmaxf(w.top2, l.top1);
  return r;
}

// Adds one element x at index j (scalar path: tails and the portable kernel).
COSPEC_HD void softmax_state_add(SoftmaxState& st, float x, int64_t j) {
  if (x > st.top1 || (x == st.top1 && j < st.idx1)) {
    st.top2 = st.top1;
    st.top1 = x;
    st.idx1 = j;
  } else if (x > st.top2) {
    st.top2 = x;
  }
  if (x == -INFINITY) return;
  if (x > st.m) {
    const float d = st.m - x;  // <= 0
    const float e = st.s > 0.f ? expf(d) : 0.f;
    st.u = st.s > 0.f ? softmax_rescaled_u(st.u, st.s, d, e) : 0.f;
    st.s = st.s * e + 1.f;  // the new element contributes exp(0) = 1 and 0 to u
    st.m = x;
  } else {
    const float d = x - st.m;
    const float e = expf(d);
    st.s += e;
    st.u += e * d;
  }
}

COSPEC_HD RowStats softmax_state_finish(const SoftmaxState& st) {
  RowStats r;
  r.argmax = st.idx1 == INT64_MAX ? 0 : st.idx1;
  r.max_logit = st.top1;
  if (st.s > 0.f) {
    const float ls = logf(st.s);
    r.logsumexp = st.m + ls;
    r.entropy = fmaxf(ls - st.u / st.s, 0.f);
  } else {  // every logit is -inf
    r.logsumexp = -INFINITY;
    r.entropy = 0.f;
  }
  r.margin = st.top1 - st.top2;
  return r;
}

// Rows holding a NaN, a +inf, or nothing but -inf make the online pass end with a
// non-finite logsumexp. Their statistics, defined once for every kernel (CPU, CUDA, and
// cospec_ext.reference), follow torch's composition where it is defined:
//   a NaN:          argmax = the first NaN (torch.argmax); max_logit, logsumexp,
//                   entropy, margin = NaN
//   else a +inf:    argmax = the first +inf; max_logit = logsumexp = +inf; entropy = NaN;
//                   margin = +inf with one +inf (or V == 1), NaN with several
//   else all -inf:  argmax = 0; max_logit = logsumexp = -inf; entropy = 0 (a fully masked
//                   row); margin = NaN (+inf when V == 1)
// A finite row whose logsumexp overflows float keeps its statistics (logsumexp = +inf).
// A serial scan: only such rows pay for it.
template <typename T>
COSPEC_HD RowStats special_row_stats(const T* x, int64_t V, RowStats st) {
  if (st.logsumexp - st.logsumexp == 0.f) return st;  // finite: the common case
  const float nan = NAN;
  int64_t first_inf = -1, n_inf = 0;
  bool all_ninf = true;
  for (int64_t v = 0; v < V; ++v) {
    const float xv = static_cast<float>(x[v]);
    if (xv != xv) return RowStats{v, nan, nan, nan, nan};
    if (xv == INFINITY) {
      if (first_inf < 0) first_inf = v;
      ++n_inf;
    }
    all_ninf = all_ninf && xv == -INFINITY;
  }
  if (first_inf >= 0) {
    return RowStats{first_inf, INFINITY, INFINITY, nan, (n_inf == 1 || V == 1) ? INFINITY : nan};
  }
  if (all_ninf) return RowStats{0, -INFINITY, -INFINITY, 0.f, V == 1 ? INFINITY : nan};
  return st;
}

}  // namespace cospec

#if !defined(__CUDACC__)
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../cpu_isa.h"

namespace cospec::cpu {
// Row statistics of x[0..V). Three builds of the same at::vec kernel
// (logit_stats_cpu_vec.h): AVX-512, AVX2+FMA and portable; logit_row_stats picks one at run time.
#define COSPEC_DECLARE_ROW_STATS(suffix)                      \
  RowStats row_stats_##suffix(const float* x, int64_t V);     \
  RowStats row_stats_##suffix(const c10::Half* x, int64_t V); \
  RowStats row_stats_##suffix(const c10::BFloat16* x, int64_t V);
COSPEC_DECLARE_ROW_STATS(avx512)
COSPEC_DECLARE_ROW_STATS(avx2)
COSPEC_DECLARE_ROW_STATS(base)
#undef COSPEC_DECLARE_ROW_STATS

template <typename T>
inline RowStats logit_row_stats(const T* x, int64_t V) {
  static const int level = cpu_isa_level();
  const RowStats st = level == 2 ? row_stats_avx512(x, V) : level == 1 ? row_stats_avx2(x, V) : row_stats_base(x, V);
  return special_row_stats(x, V, st);  // NaN / +inf / all -inf rows (above)
}
}  // namespace cospec::cpu
#endif

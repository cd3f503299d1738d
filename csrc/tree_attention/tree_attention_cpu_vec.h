// The at::vec kernel of cospec::tree_attention (see tree_attention.h). Included by the per-ISA
// translation units, which pick the instruction set first (CPU_CAPABILITY_AVX512,
// CPU_CAPABILITY_AVX2 or neither) and define COSPEC_VEC_NS, the namespace of the instantiation.
//
// Per (b, K/V head): the live slots (opened by any query of row b), their keys copied
// transposed into Kt [D, L] (L rounded up to the vector width, zeros past it; with at most
// kDirectRows query rows, a dot product per slot instead); per query row of the head group:
// scores s = (scale q) Kt, four slot vectors per pass over D (a broadcast of
// q[d] feeding four FMAs, no lane sums); -inf where this query's mask is false; m = max s,
// e = exp(max(s - m, -88)) (exp_nonpos: exactly 0 at -88, so masked slots add nothing);
// o = sum_j e_j v_j / sum_j e_j, the output row in registers when D is a multiple of the width
// (<= 8 vectors), float32 throughout.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "../vec_exp.h"
#include "tree_attention.h"

namespace cospec::cpu::COSPEC_VEC_NS {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t W = Vec::size();

// sum_d a[d] b[d] over D floats (one lane sum)
inline float dot(const float* a, const float* b, int64_t D) {
  Vec acc(0.f);
  int64_t d = 0;
  for (; d + W <= D; d += W) acc = at::vec::fmadd(Vec::loadu(a + d), Vec::loadu(b + d), acc);
  if (d < D) acc = at::vec::fmadd(Vec::loadu(a + d, D - d), Vec::loadu(b + d, D - d), acc);
  return at::vec::vec_reduce_all<float>([](const Vec& x, const Vec& y) { return x + y; }, acc);
}

// acc[d] += w * x[d] over D floats
inline void axpy(float* acc, float w, const float* x, int64_t D) {
  const Vec vw(w);
  int64_t d = 0;
  for (; d + W <= D; d += W) at::vec::fmadd(vw, Vec::loadu(x + d), Vec::loadu(acc + d)).store(acc + d);
  for (; d < D; ++d) acc[d] += w * x[d];
}

// o[0..C W) = inv * sum_j w[j] V_j (w[j] != 0 only), the C accumulators in registers.
template <int C>
inline void weighted_rows(const float* w, const int32_t* live, int64_t L, const float* vb, int64_t v_ss,
                          float inv, float* o) {
  Vec acc[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) acc[c] = Vec(0.f);
  for (int64_t j = 0; j < L; ++j) {
    if (w[j] == 0.f) continue;
    const Vec vw(w[j]);
    const float* vr = vb + live[j] * v_ss;
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[c] = at::vec::fmadd(vw, Vec::loadu(vr + c * W), acc[c]);
  }
  const Vec vi(inv);
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) (acc[c] * vi).store(o + c * W);
}

// weighted_rows<C> for D = C W (C <= 8); false when D is not such a multiple (the caller then
// accumulates in memory).
template <int C = 8>
inline bool weighted_rows_for(int64_t D, const float* w, const int32_t* live, int64_t L, const float* vb,
                              int64_t v_ss, float inv, float* o) {
  if constexpr (C >= 1) {
    if (D == C * W) {
      weighted_rows<C>(w, live, L, vb, v_ss, inv, o);
      return true;
    }
    return weighted_rows_for<C - 1>(D, w, live, L, vb, v_ss, inv, o);
  }
  return false;
}

// sc[0..Lw) = sum_d qs[d] Kt[d, 0..Lw) (Kt [D, Lw], Lw a multiple of W): the scores of one
// query against every live slot, four slot vectors per pass over D (one broadcast of q[d]
// feeds four FMAs), no lane sums.
inline void scores(const float* qs, const float* kt, int64_t D, int64_t Lw, float* sc) {
  int64_t j = 0;
  for (; j + 4 * W <= Lw; j += 4 * W) {
    Vec a0(0.f), a1(0.f), a2(0.f), a3(0.f);
    for (int64_t d = 0; d < D; ++d) {
      const Vec qd(qs[d]);
      const float* kr = kt + d * Lw + j;
      a0 = at::vec::fmadd(qd, Vec::loadu(kr), a0);
      a1 = at::vec::fmadd(qd, Vec::loadu(kr + W), a1);
      a2 = at::vec::fmadd(qd, Vec::loadu(kr + 2 * W), a2);
      a3 = at::vec::fmadd(qd, Vec::loadu(kr + 3 * W), a3);
    }
    a0.store(sc + j);
    a1.store(sc + j + W);
    a2.store(sc + j + 2 * W);
    a3.store(sc + j + 3 * W);
  }
  for (; j < Lw; j += W) {
    Vec a0(0.f);
    for (int64_t d = 0; d < D; ++d) a0 = at::vec::fmadd(Vec(qs[d]), Vec::loadu(kt + d * Lw + j), a0);
    a0.store(sc + j);
  }
}

// Query rows per (b, K/V head) up to which the scores are dot products per slot (a lane sum
// each) instead of a pass over the keys copied transposed (which costs L D copies first).
constexpr int64_t kDirectRows = 4;

inline void tree_attention(const TreeAttnArgs& a, int64_t p0, int64_t p1, int32_t* live, float* scratch) {
  const int64_t S = a.S, D = a.D, n = a.n, g = a.Hq / a.Hk;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t cap = (S + W - 1) / W * W;
  float* kt = scratch;             // [D, Lw] the live slots' keys, transposed
  float* sc = kt + D * cap;        // [Lw] scores, then weights
  float* qs = sc + cap;            // [D] scale * q
  float* acc = qs + D;             // [D]
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t b = p / a.Hk, hk = p % a.Hk;
    const bool* mb = a.mask + b * a.m_sb;
    int64_t L = 0;
    for (int64_t s = 0; s < S; ++s) {
      bool any = false;
      for (int64_t i = 0; i < n && !any; ++i) any = mb[i * a.m_si + s * a.m_ss];
      if (any) live[L++] = static_cast<int32_t>(s);
    }
    const float* kb = a.k + b * a.k_sb + hk * a.k_sh;
    const float* vb = a.v + b * a.v_sb + hk * a.v_sh;
    const int64_t Lw = (L + W - 1) / W * W;
    // few query rows (a decode step's g): a dot product per slot beats copying the keys
    const bool direct = g * n <= kDirectRows;
    if (!direct) {
      for (int64_t j = 0; j < L; ++j) {
        const float* kr = kb + live[j] * a.k_ss;
        for (int64_t d = 0; d < D; ++d) kt[d * Lw + j] = kr[d];
      }
      for (int64_t d = 0; d < D; ++d) std::fill(kt + d * Lw + L, kt + d * Lw + Lw, 0.f);
    }
    for (int64_t h = hk * g; h < (hk + 1) * g; ++h) {
      for (int64_t i = 0; i < n; ++i) {
        const float* qr = a.q + b * a.q_sb + h * a.q_sh + i * a.q_si;
        const bool* mr = mb + i * a.m_si;
        float* orow = a.o + ((b * a.Hq + h) * n + i) * D;
        for (int64_t d = 0; d < D; ++d) qs[d] = a.scale * qr[d];
        if (direct) {
          for (int64_t j = 0; j < L; ++j) sc[j] = dot(qs, kb + live[j] * a.k_ss, D);
        } else {
          scores(qs, kt, D, Lw, sc);
        }
        float mx = kNegInf;
        for (int64_t j = 0; j < L; ++j) {
          if (!mr[live[j] * a.m_ss]) sc[j] = kNegInf;
          mx = std::max(mx, sc[j]);
        }
        if (mx == kNegInf) {  // nothing open to this query: zeros
          std::fill(orow, orow + D, 0.f);
          continue;
        }
        for (int64_t j = L; j < Lw; ++j) sc[j] = kNegInf;
        const Vec vm(mx), vlo(-88.f);
        Vec vs(0.f);
        for (int64_t j = 0; j < Lw; j += W) {
          const Vec e = exp_nonpos(at::vec::maximum(Vec::loadu(sc + j) - vm, vlo));
          e.store(sc + j);
          vs = vs + e;
        }
        const float inv =
            1.f / at::vec::vec_reduce_all<float>([](const Vec& x, const Vec& y) { return x + y; }, vs);
        if (weighted_rows_for(D, sc, live, L, vb, a.v_ss, inv, orow)) continue;
        std::fill(acc, acc + D, 0.f);
        for (int64_t j = 0; j < L; ++j)
          if (sc[j] != 0.f) axpy(acc, sc[j], vb + live[j] * a.v_ss, D);
        for (int64_t d = 0; d < D; ++d) orow[d] = acc[d] * inv;
      }
    }
  }
}

}  // namespace cospec::cpu::COSPEC_VEC_NS

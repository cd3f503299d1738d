// The at::vec tile kernel of cospec::arbiter_score. Included (via
// arbiter_score_cpu_isa.inc) by three translation units that each pick an
// instruction set before including at::vec:
//   arbiter_score_cpu_avx512.cpp, arbiter_score_cpu_avx2.cpp (chosen at run time by CPU)
//   arbiter_score_cpu_base.cpp  (the portable build flags)
// Each defines COSPEC_VEC_NS, the namespace its instantiations live in.
//
// A tile of kArbiterTileRows rows goes through the MLP in groups of MR rows. A dense
// layer over a group is computed in column blocks of NB vectors: MR x NB accumulators
// stay in registers, start at the bias, and take for k = 0, 1, ... (in order) the
// row k of the transposed weight times the broadcast input in[r, k] (one FMA each,
// no horizontal sums), so each weight vector loaded serves MR rows. The block's
// epilogue applies the activation and either stores the hidden activations (first of
// two layers: MR x H1 floats, in L1) or folds them into the output dot product with
// w_out, kept per row as a vector and summed across lanes once at the end.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>

#include "arbiter_score.h"

namespace cospec::cpu::COSPEC_VEC_NS {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t W = Vec::size();

// Register blocking: MR rows x NB vectors of accumulators (the fastest of the
// shapes tried with F = 32, H = 128, 64).
#if defined(CPU_CAPABILITY_AVX512)
constexpr int MR = 8, NB = 2;  // 16 of 32 zmm registers
#elif defined(CPU_CAPABILITY_AVX2)
constexpr int MR = 4, NB = 2;  // 8 of 16 ymm registers
#else
constexpr int MR = 1, NB = 2;  // see accumulate()
#endif
static_assert(kArbiterTileRows % MR == 0 && kArbiterPad % (NB * W) == 0, "blocking");

// GELU (erf form): 0.5 x (1 + erf(x / sqrt 2)), with erf(s) = s P(s^2) / Q(s^2) on s
// clamped to [-4, 4] (erf(4) rounds to 1), the rational approximation of Eigen and XLA:
// 18 vector ops, one a division, and no exp. Its erf is off by 4.4e-7 at most, so GELU by
// 1.4e-6 on [-8, 8], against 1.2e-6 for torch's float32 F.gelu (at::vec's erf(): an A&S
// polynomial times a Sleef exp call, which made GELU 3x as costly here).
inline Vec gelu(const Vec& x) {
  const Vec s = at::vec::clamp(x * Vec(0.70710678118654752f), Vec(-4.f), Vec(4.f));
  const Vec s2 = s * s;
  Vec p = at::vec::fmadd(s2, Vec(-2.72614225801306e-10f), Vec(2.77068142495902e-08f));
  p = at::vec::fmadd(s2, p, Vec(-2.10102402082508e-06f));
  p = at::vec::fmadd(s2, p, Vec(-5.69250639462346e-05f));
  p = at::vec::fmadd(s2, p, Vec(-7.34990630326855e-04f));
  p = at::vec::fmadd(s2, p, Vec(-2.95459980854025e-03f));
  p = at::vec::fmadd(s2, p, Vec(-1.60960333262415e-02f));
  Vec q = at::vec::fmadd(s2, Vec(-1.45660718464996e-05f), Vec(-2.13374055278905e-04f));
  q = at::vec::fmadd(s2, q, Vec(-1.68282697438203e-03f));
  q = at::vec::fmadd(s2, q, Vec(-7.37332916720468e-03f));
  q = at::vec::fmadd(s2, q, Vec(-1.42647390514189e-02f));
  const Vec h = x * Vec(0.5f);
  return at::vec::fmadd(h, s * p / q, h);
}

inline Vec act_vec(const Vec& x, Activation a) {
  return a == Activation::kGelu ? gelu(x) : at::vec::maximum(x, Vec(0.f));
}

// acc[r] = b + sum_k in[r, k] wt[k, :] over the block's NB W columns, for MR rows
// (in rows ld_in apart, wt rows ldw apart; b and wt offset to the block).
inline void accumulate(const float* in, int64_t ld_in, int64_t K, const float* wt, int64_t ldw,
                       const float* b, Vec (&acc)[MR][NB]) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  for (int n = 0; n < NB; ++n) {
    const Vec bn = Vec::loadu(b + n * W);
    for (int r = 0; r < MR; ++r) acc[r][n] = bn;
  }
  for (int64_t k = 0; k < K; ++k) {
    Vec w[NB];
    for (int n = 0; n < NB; ++n) w[n] = Vec::loadu(wt + k * ldw + n * W);
    for (int r = 0; r < MR; ++r) {
      const Vec xr(in[r * ld_in + k]);
      for (int n = 0; n < NB; ++n) acc[r][n] = at::vec::fmadd(xr, w[n], acc[r][n]);
    }
  }
#else
  // Portable build: at::vec's DEFAULT Vectorized is an array behind operator calls, which
  // the compiler keeps in memory here; a plain fixed-width loop it vectorises for the
  // baseline ISA (SSE2, NEON) runs 2x faster.
  constexpr int C = NB * W;
  float a[MR][C];
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < C; ++c) a[r][c] = b[c];
  }
  for (int64_t k = 0; k < K; ++k) {
    const float* wk = wt + k * ldw;
    for (int r = 0; r < MR; ++r) {
      const float xr = in[r * ld_in + k];
      for (int c = 0; c < C; ++c) a[r][c] += xr * wk[c];
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int n = 0; n < NB; ++n) acc[r][n] = Vec::loadu(&a[r][n * W]);
  }
#endif
}

// Columns [0, NB W) of one layer for MR rows, acc as above, then
// kDot: dot[r] += act(acc[r]) * w_out; else out[r, :] = act(acc[r]) (rows ld_out apart).
template <bool kDot>
inline void dense_block(const float* in, int64_t ld_in, int64_t K, const float* wt, int64_t ldw,
                        const float* b, Activation a, float* out, int64_t ld_out,
                        const float* w_out, Vec* dot) {
  Vec acc[MR][NB];
  accumulate(in, ld_in, K, wt, ldw, b, acc);
  for (int r = 0; r < MR; ++r) {
    for (int n = 0; n < NB; ++n) {
      const Vec h = act_vec(acc[r][n], a);
      if constexpr (kDot) {
        dot[r] = at::vec::fmadd(h, Vec::loadu(w_out + n * W), dot[r]);
      } else {
        h.store(out + r * ld_out + n * W);
      }
    }
  }
}

// One layer, all H (padded) columns, for MR rows.
template <bool kDot>
inline void dense_layer(const float* in, int64_t ld_in, int64_t K, const float* wt, int64_t H,
                        const float* b, Activation a, float* out, const float* w_out, Vec* dot) {
  for (int64_t j = 0; j < H; j += NB * W) {
    dense_block<kDot>(in, ld_in, K, wt + j, H, b + j, a, kDot ? nullptr : out + j, H,
                      kDot ? w_out + j : nullptr, dot);
  }
}

inline void arbiter_tile(const ArbiterPlan& p, const float* x, float* out, float* h1) {
  for (int64_t r0 = 0; r0 < kArbiterTileRows; r0 += MR) {
    Vec dot[MR];
    for (int r = 0; r < MR; ++r) dot[r] = Vec(0.f);
    const float* xr = x + r0 * p.F;
    if (p.H2 == 0) {
      dense_layer<true>(xr, p.F, p.F, p.w1t, p.H1, p.b1, p.act, nullptr, p.w_out, dot);
    } else {
      dense_layer<false>(xr, p.F, p.F, p.w1t, p.H1, p.b1, p.act, h1, nullptr, nullptr);
      dense_layer<true>(h1, p.H1, p.H1, p.w2t, p.H2, p.b2, p.act, nullptr, p.w_out, dot);
    }
    for (int r = 0; r < MR; ++r) {
      out[r0 + r] = p.b_out + at::vec::vec_reduce_all<float>(
                                  [](Vec& u, Vec& v) { return u + v; }, dot[r]);
    }
  }
}

// wt [Kp, Hp] = the transpose of w [H, K], zero-padded: 16 x 16 blocks in registers
// (at::vec::transpose_mxn), the edges element by element.
inline void transpose_pad(const float* w, int64_t H, int64_t K, int64_t Hp, int64_t Kp,
                          float* wt) {
  constexpr int B = 16;
  const int64_t Hb = H / B * B, Kb = K / B * B;
  for (int64_t k0 = 0; k0 < Kb; k0 += B) {
    for (int64_t j0 = 0; j0 < Hb; j0 += B) {
      at::vec::transpose_mxn<float, B, B>(w + j0 * K + k0, K, wt + k0 * Hp + j0, Hp);
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    float* row = wt + k * Hp;
    for (int64_t j = k < Kb ? Hb : 0; j < H; ++j) row[j] = w[j * K + k];
    std::fill(row + H, row + Hp, 0.f);
  }
  std::fill(wt + K * Hp, wt + Kp * Hp, 0.f);
}

}  // namespace cospec::cpu::COSPEC_VEC_NS

// The panel kernel of cospec::linear_packed (see linear_packed.h). Included by the per-ISA
// translation units, which pick the instruction set first (CPU_CAPABILITY_AVX512,
// CPU_CAPABILITY_AVX2 or neither) and define COSPEC_VEC_NS, the namespace of the instantiation.
//
// One block: MR rows of x against one panel, acc[m][j] += x[m, k] * panel[k, j*L : (j+1)*L]
// for every k (x[m, k] broadcast to all lanes), then the accumulators (columns past N left
// out) to y. Raw intrinsics and fully unrolled loops over m and j, as in linear_rows.
#pragma once

#include <algorithm>

#include "../cpu_vec.h"
#include "linear_packed.h"

namespace cospec::cpu::COSPEC_VEC_NS {

constexpr int kNV = static_cast<int>(kPanel) / V::L;  // vectors per panel row
// Rows per block: AVX-512 8 (24 accumulators, 3 panel vectors, 1 broadcast of 32 registers);
// AVX2 2 (12 accumulators of 16); portable 1.
constexpr int kMR = V::kRegs == 32 ? 8 : V::L > 1 ? 2 : 1;
// Whether a k step holds the whole panel row in registers (else each vector is loaded once and
// used by the MR broadcasts, which are then held).
constexpr bool kHoldW(int MR) { return MR * kNV + kNV + 1 <= V::kRegs; }

// y[m, c] for m < MR, c < nc, of one panel w [K, kPanel]. pf: the next panel's cache lines from
// this block's first one on (null: none), `pf_left` of them; `pf_per_k` prefetched per k step.
template <int MR>
inline void block(const float* x, int64_t ldx, int64_t K, const float* w, float* y, int64_t ldo,
                  int64_t nc, const char* pf, int64_t pf_per_k, int64_t pf_left) {
  using R = typename V::R;
  R acc[MR][kNV];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 48
    for (int j = 0; j < kNV; ++j) acc[m][j] = V::zero();
  // one k step: the panel row k times x[:, k] into the accumulators
  const auto step = [&](int64_t k) __attribute__((always_inline)) {
    const float* wk = w + k * kPanel;
    if constexpr (kHoldW(MR)) {
      R wv[kNV];
#pragma GCC unroll 48
      for (int j = 0; j < kNV; ++j) wv[j] = V::load(wk + j * V::L);
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) {
        const R xb = V::bcast(x + m * ldx + k);
#pragma GCC unroll 48
        for (int j = 0; j < kNV; ++j) acc[m][j] = V::fma(xb, wv[j], acc[m][j]);
      }
    } else {
      R xb[MR];
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) xb[m] = V::bcast(x + m * ldx + k);
#pragma GCC unroll 48
      for (int j = 0; j < kNV; ++j) {
        const R wv = V::load(wk + j * V::L);
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m) acc[m][j] = V::fma(xb[m], wv, acc[m][j]);
      }
    }
  };
  // the k steps that prefetch (pf_per_k lines each, the last one fewer), then the others
  const int64_t k_pf = pf == nullptr ? 0 : std::min(K, (pf_left + pf_per_k - 1) / pf_per_k);
  for (int64_t k = 0; k < k_pf; ++k) {
    const int64_t l1 = std::min(pf_left, (k + 1) * pf_per_k);
    for (int64_t line = k * pf_per_k; line < l1; ++line) __builtin_prefetch(pf + line * 64, 0, 2);
    step(k);
  }
#pragma GCC unroll 2
  for (int64_t k = k_pf; k < K; ++k) step(k);
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 48
    for (int j = 0; j < kNV; ++j) {
      const int64_t r = nc - j * V::L;
      if (r >= V::L)
        V::store(y + m * ldo + j * V::L, acc[m][j]);
      else if (r > 0)
        V::store(y + m * ldo + j * V::L, acc[m][j], r);
    }
}

// The last row block, of r < kMR rows (r in [1, R]): block<r> for the r at hand.
template <int R>
inline void block_rest(int64_t r, const float* x, int64_t ldx, int64_t K, const float* w, float* y,
                       int64_t ldo, int64_t nc, const char* pf, int64_t pf_per_k, int64_t pf_left) {
  if constexpr (R >= 1) {
    if (r == R) return block<R>(x, ldx, K, w, y, ldo, nc, pf, pf_per_k, pf_left);
    block_rest<R - 1>(r, x, ldx, K, w, y, ldo, nc, pf, pf_per_k, pf_left);
  }
}

// The LinearPackedFn: panels [p0, p1) in turn, each against every row block of x; while a
// panel's blocks run, the next panel (3 K cache lines) is prefetched, ceil(3 / blocks) lines
// per k step, so that it is in L2 when its first block starts.
inline void linear_packed(const float* x, int64_t ldx, int64_t M, int64_t K, const float* packed,
                          int64_t N, int64_t p0, int64_t p1, float* y, int64_t ldo) {
  if (M <= 0 || K <= 0 || p1 <= p0) return;
  const int64_t panel = K * kPanel;                                        // floats per panel
  const int64_t lines = panel * static_cast<int64_t>(sizeof(float)) / 64;  // kPanel * 4 = 3 lines
  const int64_t blocks = (M + kMR - 1) / kMR;
  const int64_t per_k = (lines / K + blocks - 1) / blocks;
  for (int64_t p = p0; p < p1; ++p) {
    const float* w = packed + p * panel;
    const int64_t nc = std::min(kPanel, N - p * kPanel);
    const char* next = p + 1 < p1 ? reinterpret_cast<const char*>(w + panel) : nullptr;
    int64_t b = 0;
    for (int64_t m = 0; m < M; m += kMR, ++b) {
      const int64_t first = b * K * per_k;  // the first line of the next panel this block fetches
      const char* pf = next != nullptr && first < lines ? next + first * 64 : nullptr;
      const int64_t r = std::min<int64_t>(kMR, M - m);
      float* yb = y + m * ldo + p * kPanel;
      if (r == kMR)
        block<kMR>(x + m * ldx, ldx, K, w, yb, ldo, nc, pf, per_k, lines - first);
      else
        block_rest<kMR - 1>(r, x + m * ldx, ldx, K, w, yb, ldo, nc, pf, per_k, lines - first);
    }
  }
}

}  // namespace cospec::cpu::COSPEC_VEC_NS

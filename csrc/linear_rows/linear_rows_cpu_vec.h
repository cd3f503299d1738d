// The register-tile kernel of cospec::linear_rows (see linear_rows.h). Included by the
// per-ISA translation units, which pick the instruction set first (CPU_CAPABILITY_AVX512,
// CPU_CAPABILITY_AVX2 or neither) and define COSPEC_VEC_NS, the namespace of the instantiations.
//
// One tile: MR rows of x by NR rows of W, acc[m][j] += x[m, k:k+L] * W[j, k:k+L] for each
// vector of L lanes along K (the last partial vector by masked loads), then y[m, j] = the lane
// sum of acc[m][j] + bias[j]. NR is the largest that keeps the MR * NR accumulators, the NR W
// vectors and one x vector in the vector registers (32 with AVX-512, 16 with AVX2). Raw
// intrinsics and fully unrolled loops over m and j: with at::vec's class and any loop over an
// accumulator left rolled, GCC keeps the accumulators on the stack (measured: 2-4x slower).
// While a tile runs, the next tile's W rows are prefetched, one cache line per row per step,
// so a stream of short rows does not wait on memory at each tile's start.
#pragma once

#include <algorithm>
#include <vector>

#include "../cpu_vec.h"
#include "linear_rows.h"

namespace cospec::cpu::COSPEC_VEC_NS {

// Rows of x per register tile, and W columns per tile for MR rows: the MR * NR accumulators,
// NR W vectors and one x vector within the registers less a few, NR <= 8 (AVX-512: 1 x 8,
// 2 x 8, 3 x 6, 4 x 5, 5 x 4, 6..8 x 3). More rows run as several blocks over each W tile,
// which the later blocks read from L1. Each x vector is pinned to a register (an empty asm):
// left alone, GCC folds it into the FMAs, one load per FMA, and an 8 x 3 tile then ran at
// 0.7x the speed of two 4 x 5 blocks (W in L2); pinned, 1.15-1.2x their speed (8 rows over
// 39 MB of W, two threads, C++ harness: 0.96-0.99 ms vs 1.13 ms).
constexpr int kRows = V::kRegs == 32 ? 8 : 4;
constexpr int tile_cols(int MR) { return std::max(1, std::min(8, (V::kRegs - 5) / (MR + 1))); }

// y[m, j] (m < MR, j < NR) over W rows w + j * ldw, or the part of the sums over k in [k0, k1)
// (k0 a multiple of the lanes): the accumulators start at zero when k0 == 0, else from
// `part` [MR][NR][lanes], and go to `part` when k1 < K, else (lane sums + bias) to y. bias
// (may be null) and y point at the tile's first column; with PF, the next tile's W rows from pf
// on are prefetched alongside (any readable address).
template <int MR, int NR, bool PF, typename T>
inline void tile(const float* x, int64_t ldx, int64_t k0, int64_t k1, int64_t K, const T* w,
                 int64_t ldw, const float* bias, float* y, int64_t ldo, const T* pf, float* part) {
  using R = typename V::R;
  R acc[MR][NR];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[m][j] = k0 == 0 ? V::zero() : V::load(part + (m * NR + j) * V::L);
  const int64_t kv = k1 == K ? K - K % V::L : k1;
  for (int64_t k = k0; k < kv; k += V::L) {
    if constexpr (PF) {
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) __builtin_prefetch(pf + j * ldw + k, 0, 2);
    }
    R wv[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wv[j] = V::load(w + j * ldw + k);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      R xv = V::load(x + m * ldx + k);
      V::pin(xv);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[m][j] = V::fma(xv, wv[j], acc[m][j]);
    }
  }
  if (kv < k1) {  // the partial last vector of K
    const int64_t r = K - kv;
    R wv[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wv[j] = V::load(w + j * ldw + kv, r);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const R xv = V::load(x + m * ldx + kv, r);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[m][j] = V::fma(xv, wv[j], acc[m][j]);
    }
  }
  if (k1 < K) {
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) V::store(part + (m * NR + j) * V::L, acc[m][j]);
    return;
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) y[m * ldo + j] = V::sum(acc[m][j]) + (bias ? bias[j] : 0.f);
}

// The last row block, of r < MR rows (r in [1, R]): tile<r, NR> for the r at hand.
template <int R, int NR, typename T>
inline void tile_rest(int64_t r, const float* x, int64_t ldx, int64_t k0, int64_t k1, int64_t K,
                      const T* w, int64_t ldw, const float* bias, float* y, int64_t ldo,
                      const T* pf, float* part) {
  if constexpr (R >= 1) {
    if (r == R) return tile<R, NR, true>(x, ldx, k0, k1, K, w, ldw, bias, y, ldo, pf, part);
    tile_rest<R - 1, NR>(r, x, ldx, k0, k1, K, w, ldw, bias, y, ldo, pf, part);
  }
}

// Every row block of x against one W tile of NR columns, in chunks of kc along K (with
// several blocks, so that a chunk of every row of x and of the tile stay in L1 while the
// blocks pass over it): blocks of MR rows, the last one of fewer; only the first block
// prefetches the next W tile. part: room for every block's accumulators (used when K > kc).
template <int MR, int NR, typename T>
inline void tile_rows(const float* x, int64_t ldx, int64_t M, int64_t K, int64_t kc, const T* w,
                      int64_t ldw, const float* bias, float* y, int64_t ldo, const T* pf, float* part) {
  constexpr int64_t kPart = MR * NR * V::L;
  for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += kc) {
    const int64_t k1 = std::min(K, k0 + kc);
    int64_t m0 = 0, b = 0;
    if (M >= MR) {
      tile<MR, NR, true>(x, ldx, k0, k1, K, w, ldw, bias, y, ldo, pf, part);
      for (m0 = MR, b = 1; m0 + MR <= M; m0 += MR, ++b)
        tile<MR, NR, false>(x + m0 * ldx, ldx, k0, k1, K, w, ldw, bias, y + m0 * ldo, ldo, pf,
                            part + b * kPart);
    }
    if (m0 < M)
      tile_rest<MR - 1, NR>(M - m0, x + m0 * ldx, ldx, k0, k1, K, w, ldw, bias, y + m0 * ldo, ldo,
                            pf, part + b * kPart);
    if (k1 == K) break;
  }
}

// M rows of x (blocks of MR) against W rows [n0, n1): tiles of tile_cols(MR) columns, then
// one-column tiles. One row block reads x and each W vector once whatever the chunking, so it
// runs K whole; several blocks share each chunk of the tile, K in chunks with the accumulators
// kept between them (on the stack up to kLocalPart floats: M <= 16 never allocates).
template <int MR, typename T>
void row_blocks(const float* x, int64_t ldx, int64_t M, int64_t K, const T* w, int64_t ldw,
                const float* bias, int64_t n0, int64_t n1, float* y, int64_t ldo) {
  constexpr int NR = tile_cols(MR);
  constexpr int64_t kLocalPart = 1024;
  const int64_t blocks = (M + MR - 1) / MR;
  // chunk of K: M rows of x and NR rows of W in 24 KiB (half of a 48 KiB L1)
  const int64_t per_k = 4 * M + NR * static_cast<int64_t>(sizeof(T));
  const int64_t kc =
      blocks == 1 ? K : std::max<int64_t>(V::L, (int64_t{24} << 10) / per_k / V::L * V::L);
  const int64_t need = K > kc ? blocks * MR * NR * V::L : 0;
  float local[kLocalPart];
  std::vector<float> heap(need > kLocalPart ? static_cast<size_t>(need) : 0);
  float* part = need > kLocalPart ? heap.data() : local;
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) {
    const T* next = w + std::min(n + NR, n1 - 1) * ldw;
    tile_rows<MR, NR>(x, ldx, M, K, kc, w + n * ldw, ldw, bias ? bias + n : nullptr, y + n, ldo,
                      next, part);
  }
  for (; n < n1; ++n) {
    const T* next = w + std::min(n + 1, n1 - 1) * ldw;
    tile_rows<MR, 1>(x, ldx, M, K, kc, w + n * ldw, ldw, bias ? bias + n : nullptr, y + n, ldo,
                     next, part);
  }
}

// row_blocks<mr> for the mr at hand (1 <= mr <= MR).
template <int MR, typename T>
void row_blocks_for(int64_t mr, const float* x, int64_t ldx, int64_t M, int64_t K, const T* w,
                    int64_t ldw, const float* bias, int64_t n0, int64_t n1, float* y, int64_t ldo) {
  if (mr == MR) return row_blocks<MR>(x, ldx, M, K, w, ldw, bias, n0, n1, y, ldo);
  if constexpr (MR > 1) row_blocks_for<MR - 1>(mr, x, ldx, M, K, w, ldw, bias, n0, n1, y, ldo);
}

// The LinearRowsFn: rows in ceil(M / kRows) blocks of near-equal size.
template <typename T>
void linear_rows(const float* x, int64_t ldx, int64_t M, int64_t K, const T* w, int64_t ldw,
                 const float* bias, int64_t n0, int64_t n1, float* y, int64_t ldo) {
  if (M <= 0 || n1 <= n0) return;
  const int64_t blocks = (M + kRows - 1) / kRows;
  row_blocks_for<kRows>((M + blocks - 1) / blocks, x, ldx, M, K, w, ldw, bias, n0, n1, y, ldo);
}

}  // namespace cospec::cpu::COSPEC_VEC_NS

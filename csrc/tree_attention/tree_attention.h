// Torch-free core of cospec::tree_attention: attention of a few query tokens per sequence (a
// decode step, a verification tree, a short prefill) over a static KV cache, under a boolean
// mask, with grouped K/V heads (SDPA's enable_gqa):
//
//   q     float [B, Hq, n, D]   (strides q_s*, unit along D)
//   k, v  float [B, Hk, S, D]   (strides k_s*, v_s*, unit along D; e.g. views of one cache)
//   mask  bool  [B, n, S]       (strides m_s*; the op's [B, 1, n, S] less its head dim)
//   o     float [B, Hq, n, D]   contiguous
//
//   o[b, h, i] = sum_s p_s v[b, h / g, s],  p = softmax_s(scale * q[b, h, i] . k[b, h / g, s])
//   over the slots s with mask[b, i, s] (g = Hq / Hk); a query row whose mask is all false
//   gets zeros (SDPA would give NaN).
//
// Per (row b, K/V head) the kernel first lists the slots any of the n queries opens, then
// runs the g * n query rows of that K/V head over those slots only: a static cache of S slots
// costs what its live slots cost, where SDPA's CPU kernel runs every slot (and a fork/join,
// buffers and blocking sized for long sequences: 46 us per layer for 8 queries over 128 slots).
#pragma once

#include <cstdint>

#include "../cpu_isa.h"

namespace cospec::cpu {

struct TreeAttnArgs {
  const float* q;
  int64_t q_sb, q_sh, q_si;
  const float* k;
  int64_t k_sb, k_sh, k_ss;
  const float* v;
  int64_t v_sb, v_sh, v_ss;
  const bool* mask;
  int64_t m_sb, m_si, m_ss;
  float* o;
  int64_t B, Hq, Hk, n, S, D;
  float scale;
};

// Floats of scratch one call of a TreeAttnFn needs: the live keys transposed [D, S rounded up
// to 16], the scores [S rounded up], a scaled query and an output row [D each].
inline int64_t tree_attention_scratch(int64_t S, int64_t D) { return (D + 1) * ((S + 15) / 16 * 16) + 2 * D; }

// Computes o for the (row, K/V head) pairs [p0, p1), p = b * Hk + hk; live holds S ints (the
// live slots), scratch tree_attention_scratch(S, D) floats.
using TreeAttnFn = void (*)(const TreeAttnArgs& a, int64_t p0, int64_t p1, int32_t* live, float* scratch);

struct TreeAttnKernels {
  TreeAttnFn f32;
};

// One per instruction-set build (tree_attention_cpu_{avx512,avx2,base}.cpp).
extern const TreeAttnKernels tree_attention_kernels_avx512;
extern const TreeAttnKernels tree_attention_kernels_avx2;
extern const TreeAttnKernels tree_attention_kernels_base;

inline const TreeAttnKernels& tree_attention_kernels() {
  return pick_isa(tree_attention_kernels_avx512, tree_attention_kernels_avx2, tree_attention_kernels_base);
}

}  // namespace cospec::cpu

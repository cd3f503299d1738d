// The at::vec row kernel of cospec::logit_stats. Included by two translation
// units that each pick an instruction set before including at::vec:
//   logit_stats_cpu_avx512.cpp, logit_stats_cpu_avx2.cpp (chosen at run time by CPU)
//   logit_stats_cpu_base.cpp  (the portable build flags)
// Each defines COSPEC_VEC_NS, the namespace its instantiations live in.
//
// One row x[0..V) is read in chunks of kChunk elements that stay in L1:
//   pass 1 over the chunk: lane-wise top1/top2 (t2 = max(t2, min(t1, x)); t1 = max(t1, x));
//            the new shift m' = max(m, chunk max) rescales (s, u) once per chunk;
//   pass 2 over the chunk: s += exp(x - m'), u += exp(x - m') (x - m') (exp_nonpos).
// So main memory is read once and exp is evaluated once per element. The argmax
// is the first index of top1 inside the last chunk where the running max rose.
// 16-bit inputs are widened into an L1 buffer of floats first.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstring>

#include "../vec_exp.h"
#include "logit_stats.h"

namespace cospec::cpu::COSPEC_VEC_NS {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t kChunk = 2048;  // floats; 8 KiB stays in L1 for both passes

// Pass 2 over n floats (n a multiple of Vec::size(); padding lanes hold -inf).
inline void chunk_exp_sums(const float* x, int64_t n, float m, float& s, float& u) {
  const Vec vm(m), vlo(-88.f);  // exp_nonpos(-88) is exactly 0
  Vec s0(0.f), s1(0.f), u0(0.f), u1(0.f);
  int64_t j = 0;
  constexpr int64_t W = Vec::size();
  for (; j + 2 * W <= n; j += 2 * W) {
    const Vec d0 = at::vec::maximum(Vec::loadu(x + j) - vm, vlo);
    const Vec d1 = at::vec::maximum(Vec::loadu(x + j + W) - vm, vlo);
    const Vec e0 = exp_nonpos(d0), e1 = exp_nonpos(d1);
    s0 = s0 + e0;
    s1 = s1 + e1;
    u0 = at::vec::fmadd(e0, d0, u0);
    u1 = at::vec::fmadd(e1, d1, u1);
  }
  for (; j < n; j += W) {
    const Vec d0 = at::vec::maximum(Vec::loadu(x + j) - vm, vlo);
    const Vec e0 = exp_nonpos(d0);
    s0 = s0 + e0;
    u0 = at::vec::fmadd(e0, d0, u0);
  }
  s += at::vec::vec_reduce_all<float>([](Vec& a, Vec& b) { return a + b; }, s0 + s1);
  u += at::vec::vec_reduce_all<float>([](Vec& a, Vec& b) { return a + b; }, u0 + u1);
}

// Pass 1 over n floats (n a multiple of Vec::size()).
inline void chunk_top2(const float* x, int64_t n, Vec& t1, Vec& t2) {
  constexpr int64_t W = Vec::size();
  for (int64_t j = 0; j < n; j += W) {
    const Vec v = Vec::loadu(x + j);
    t2 = at::vec::maximum(t2, at::vec::minimum(t1, v));
    t1 = at::vec::maximum(t1, v);
  }
}

// Copies (widening) up to kChunk elements into buf and pads with -inf to a
// multiple of the vector width; returns the padded length.
template <typename T>
inline int64_t load_chunk(const T* x, int64_t n, float* buf) {
  constexpr int64_t W = Vec::size();
  int64_t j = 0;
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(buf, x, n * sizeof(float));
    j = n;
  } else {
    for (; j + W <= n; j += W) {
      Vec v;
      at::vec::load_to_float<T>(x + j, v);
      v.store(buf + j);
    }
    for (; j < n; ++j) buf[j] = static_cast<float>(x[j]);
  }
  const int64_t padded = (n + W - 1) / W * W;
  for (; j < padded; ++j) buf[j] = -INFINITY;
  return padded;
}

template <typename T>
RowStats row_stats(const T* x, int64_t V) {
  constexpr int64_t W = Vec::size();
  alignas(64) float buf[kChunk];
  const float ninf = -INFINITY;
  Vec t1(ninf), t2(ninf);
  float m = ninf, s = 0.f, u = 0.f;
  int64_t best_chunk = 0;
  for (int64_t c0 = 0; c0 < V; c0 += kChunk) {
    const int64_t n = std::min(kChunk, V - c0);
    const float* xs;
    int64_t nv;
    if (std::is_same_v<T, float> && n % W == 0) {
      xs = reinterpret_cast<const float*>(x + c0);  // read in place
      nv = n;
    } else {
      nv = load_chunk(x + c0, n, buf);
      xs = buf;
    }
    chunk_top2(xs, nv, t1, t2);
    const float cmax = at::vec::vec_reduce_all<float>(
        [](Vec& a, Vec& b) { return at::vec::maximum(a, b); }, t1);
    if (cmax > m) {
      best_chunk = c0;
      if (s > 0.f) {
        const float d = m - cmax, e = expf(d);
        u = softmax_rescaled_u(u, s, d, e);  // not e * (u + d * s): d * s may overflow
        s *= e;
      }
      m = cmax;
    }
    if (m != ninf) chunk_exp_sums(xs, nv, m, s, u);
  }
  // top2 over lanes: merge the lane pairs (t1[l], t2[l]) as sorted pairs.
  alignas(64) float l1[W], l2[W];
  t1.store(l1);
  t2.store(l2);
  float a = ninf, b = ninf;
  for (int64_t l = 0; l < W; ++l) {
    b = std::max(std::min(a, l1[l]), std::max(b, l2[l]));
    a = std::max(a, l1[l]);
  }
  // argmax: the first index holding the max inside best_chunk (ties: lowest id).
  int64_t idx = 0;
  const int64_t end = std::min(best_chunk + kChunk, V);
  for (int64_t j = best_chunk; j < end; ++j) {
    if (static_cast<float>(x[j]) == a) {
      idx = j;
      break;
    }
  }
  SoftmaxState st{m, s, u, a, b, idx};
  return softmax_state_finish(st);
}

}  // namespace cospec::cpu::COSPEC_VEC_NS

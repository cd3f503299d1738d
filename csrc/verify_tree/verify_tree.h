// Torch-free core of cospec::verify_tree: one step of the tree walk, shared by
// the CPU kernel (a thread per sequence) and the CUDA kernel (thread 0 of the
// block that owns the sequence, after the block reduced the node's logits).
//
// Pointers are one sequence's rows: cand[N], par[N] (the tree convention:
// par[0] = -1, par[i] < i; children of a node in increasing index are in the
// draft's preference order), accept[N] (nullable), consulted[N], arb[N].
#pragma once

#include <cstdint>

#include "../macros.h"

namespace cospec {

// Temperatures below this are greedy (decided once, in the argument checks, so the CPU and
// CUDA kernels and the Python wrapper agree; 1/T then never overflows float). The Python
// side mirrors it as cospec_ext.ops.MIN_TEMPERATURE.
constexpr double kMinTemperature = 1e-5;

// The fallback of a residual draw that found no token with mass (NaN logits, logits so
// large that x / T overflows float32, or mass lost to rounding): the lowest index of the
// largest non-NaN logit among the tokens not `excluded` (cur's children's), else among all
// tokens, else 0. Always in [0, V).
template <typename T, typename Excluded>
COSPEC_HD int64_t fallback_token(const T* x, int64_t V, Excluded excluded) {
  int64_t best = -1, any = -1;
  float bv = 0.f, av = 0.f;
  for (int64_t v = 0; v < V; ++v) {
    const float xv = static_cast<float>(x[v]);
    if (xv != xv) continue;  // NaN
    if (any < 0 || xv > av) {
      any = v;
      av = xv;
    }
    if (!excluded(v) && (best < 0 || xv > bv)) {
      best = v;
      bv = xv;
    }
  }
  return best >= 0 ? best : (any >= 0 ? any : 0);
}

// Greedy step at node `cur` whose target argmax is `t`: the first child with
// candidate t, or -2 when there is none (the caller then gives the arbiter its turn).
COSPEC_HD int64_t greedy_step(const int64_t* cand, const int64_t* par, int64_t N, int64_t cur,
                              int64_t t) {
  for (int64_t i = cur + 1; i < N; ++i) {
    if (par[i] == cur && cand[i] == t) return i;
  }
  return -2;
}

// The arbiter's turn after every child of `cur` was rejected: the first child i
// (in order) with accept[i], marking each child looked at as consulted.
COSPEC_HD int64_t arbiter_step(const int64_t* par, int64_t N, int64_t cur, const bool* accept,
                               bool* consulted, bool* arb) {
  if (accept == nullptr) return -1;
  for (int64_t i = cur + 1; i < N; ++i) {
    if (par[i] != cur) continue;
    consulted[i] = true;
    if (accept[i]) {
      arb[i] = true;
      return i;
    }
  }
  return -1;
}

// True when an earlier sibling j < i of node i (same parent) holds the same token:
// its rejection already removed that token from the residual distribution.
COSPEC_HD bool token_rejected_before(const int64_t* cand, const int64_t* par, int64_t i) {
  for (int64_t j = par[i] + 1; j < i; ++j) {
    if (par[j] == par[i] && cand[j] == cand[i]) return true;
  }
  return false;
}

// Sampling step at node `cur` (lossless multi-draft speculative sampling for a
// deterministic drafter). `prob(v)` is p(v) = softmax(logits[cur] / T)[v].
// Children are tried in order; child i with token t is accepted when
//   uniforms[i] * mass < q(t),   q = p with earlier-rejected tokens zeroed,
//   mass = sum(q) = 1 - sum of p over the distinct rejected tokens;
// a rejected child's token leaves the residual. Returns the accepted child, or -2
// when every child was rejected; `mass` then holds the residual's total.
template <typename ProbFn>
COSPEC_HD int64_t sample_step(const int64_t* cand, const int64_t* par, int64_t N, int64_t cur,
                              const float* uniforms, ProbFn prob, float& mass) {
  mass = 1.f;
  for (int64_t i = cur + 1; i < N; ++i) {
    if (par[i] != cur) continue;
    const float q = token_rejected_before(cand, par, i) ? 0.f : prob(cand[i]);
    if (uniforms[i] * mass < q) return i;
    mass -= q;
  }
  return -2;
}

// Is token v removed from the residual at node `cur` (the token of one of its children)?
COSPEC_HD bool token_is_child_of(const int64_t* cand, const int64_t* par, int64_t N, int64_t cur,
                                 int64_t v) {
  for (int64_t i = cur + 1; i < N; ++i) {
    if (par[i] == cur && cand[i] == v) return true;
  }
  return false;
}

}  // namespace cospec

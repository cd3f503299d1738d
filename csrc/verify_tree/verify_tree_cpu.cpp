// CPU kernel of cospec::verify_tree: one thread walks one sequence's tree,
// reading only the logits rows of the nodes it visits.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../common.h"
#include "../tree_check.h"
#include "verify_tree.h"

namespace cospec {
namespace {

using at::Tensor;
constexpr const char* kOp = "verify_tree";

// argmax of x[0..V) (ties: lowest index, like torch.argmax).
template <typename T>
int64_t row_argmax(const T* x, int64_t V) {
  int64_t best = 0;
  float bv = static_cast<float>(x[0]);
  for (int64_t v = 1; v < V; ++v) {
    const float f = static_cast<float>(x[v]);
    if (f > bv) {
      bv = f;
      best = v;
    }
  }
  return best;
}

// p = softmax(x / T) of one row, as a shift M = max(x) / T and normaliser Z.
template <typename T>
struct RowSoftmax {
  const T* x;
  float inv_t, shift, inv_z;
  RowSoftmax(const T* row, int64_t V, float temperature) : x(row), inv_t(1.f / temperature) {
    float m = -INFINITY;
    for (int64_t v = 0; v < V; ++v) m = std::max(m, static_cast<float>(x[v]) * inv_t);
    float z = 0.f;
    for (int64_t v = 0; v < V; ++v) z += std::exp(static_cast<float>(x[v]) * inv_t - m);
    shift = m;
    inv_z = 1.f / z;
  }
  float operator()(int64_t v) const {
    return std::exp(static_cast<float>(x[v]) * inv_t - shift) * inv_z;
  }
};

// Inverse-CDF draw from the residual q = p without the tokens of cur's children
// (all rejected), whose total is `mass`: the first v with cumsum(q)[v] > u * mass.
template <typename T>
int64_t sample_residual(const RowSoftmax<T>& p, int64_t V, const int64_t* cand,
                        const int64_t* par, int64_t N, int64_t cur, float u, float mass) {
  std::vector<int64_t> excluded;
  for (int64_t i = cur + 1; i < N; ++i) {
    if (par[i] == cur) excluded.push_back(cand[i]);
  }
  std::sort(excluded.begin(), excluded.end());
  const float target = u * mass;
  float cum = 0.f;
  int64_t last = -1, best = -1;
  float best_p = -1.f;
  auto ex = excluded.begin();
  for (int64_t v = 0; v < V; ++v) {
    while (ex != excluded.end() && *ex < v) ++ex;
    if (ex != excluded.end() && *ex == v) continue;
    const float q = p(v);
    if (q > best_p) {
      best_p = q;
      best = v;
    }
    if (q > 0.f) last = v;
    cum += q;
    if (cum > target && q > 0.f) return v;
  }
  // Rounding left target past the total: the last token with mass, else the most likely.
  return last >= 0 ? last : best;
}

template <typename T>
void walk_row(int64_t b, const int64_t* cand, const int64_t* par, int64_t N, const T* logits,
              int64_t sb, int64_t sn, int64_t V, const int64_t* argmax, const bool* accept,
              float temperature, const float* uniforms, int64_t* path, int64_t* accept_len,
              int64_t* next_token, bool* consulted, bool* arb) {
  int64_t cur = 0, n = 0;
  path[0] = 0;
  while (true) {
    int64_t nxt;
    if (temperature == 0.f) {
      const int64_t t = argmax ? argmax[cur] : row_argmax(logits + b * sb + cur * sn, V);
      nxt = greedy_step(cand, par, N, cur, t);
      if (nxt == -2) nxt = arbiter_step(par, N, cur, accept, consulted, arb);
      if (nxt < 0) {
        *next_token = t;
        break;
      }
    } else {
      const RowSoftmax<T> p(logits + b * sb + cur * sn, V, temperature);
      float mass = 1.f;
      nxt = sample_step(cand, par, N, cur, uniforms, p, mass);
      if (nxt == -2) nxt = arbiter_step(par, N, cur, accept, consulted, arb);
      if (nxt < 0) {
        *next_token = sample_residual(p, V, cand, par, N, cur, uniforms[0], mass);
        break;
      }
    }
    path[++n] = nxt;
    cur = nxt;
  }
  *accept_len = n;
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> verify_tree_cpu(
    const Tensor& candidates_in, const Tensor& parents_in,
    const std::optional<Tensor>& target_logits, const std::optional<Tensor>& target_argmax,
    const std::optional<Tensor>& accept_draft, double temperature,
    const std::optional<Tensor>& uniforms) {
  check_tree_shapes(kOp, candidates_in, parents_in, candidates_in.device());
  const Tensor candidates = candidates_in.contiguous(), parents = parents_in.contiguous();
  const int64_t B = candidates.size(0), N = candidates.size(1);
  COSPEC_CHECK(kOp, N >= 1, "trees need at least the root node (N >= 1), got N = ", N);
  COSPEC_CHECK(kOp, std::isfinite(temperature) && temperature >= 0.0,
               "`temperature` must be finite and >= 0, got ", temperature);
  const bool greedy = temperature == 0.0;
  COSPEC_CHECK(kOp, greedy || target_logits.has_value(),
               "sampling (temperature > 0) needs `target_logits`");
  COSPEC_CHECK(kOp, target_logits.has_value() || target_argmax.has_value(),
               "give `target_logits` or `target_argmax`");

  Tensor logits;
  int64_t V = INT64_MAX;
  if (target_logits) {
    const Tensor& tl = *target_logits;
    COSPEC_CHECK_DIM(kOp, tl, 3);
    COSPEC_CHECK_FLOAT_LIKE(kOp, tl);
    COSPEC_CHECK_DEVICE(kOp, tl, candidates.device());
    COSPEC_CHECK(kOp, tl.size(0) == B && tl.size(1) == N, "`target_logits` must be [B, N, V] = [",
                 B, ", ", N, ", V], got ", tl.sizes());
    COSPEC_CHECK(kOp, tl.size(2) > 0, "`target_logits` has an empty vocabulary dim");
    logits = tl.stride(2) == 1 ? tl : tl.contiguous();
    V = logits.size(2);
  }
  Tensor argmax;
  if (greedy && target_argmax) {
    const Tensor& ta = *target_argmax;
    COSPEC_CHECK_DTYPE(kOp, ta, at::kLong);
    COSPEC_CHECK_DEVICE(kOp, ta, candidates.device());
    COSPEC_CHECK(kOp, ta.sizes() == candidates.sizes(), "`target_argmax` must be [B, N] = [", B,
                 ", ", N, "], got ", ta.sizes());
    argmax = ta.contiguous();
  }
  Tensor accept;
  if (accept_draft) {
    COSPEC_CHECK_DTYPE(kOp, (*accept_draft), at::kBool);
    COSPEC_CHECK_DEVICE(kOp, (*accept_draft), candidates.device());
    COSPEC_CHECK(kOp, accept_draft->sizes() == candidates.sizes(),
                 "`accept_draft` must be [B, N] = [", B, ", ", N, "], got ", accept_draft->sizes());
    accept = accept_draft->contiguous();
  }
  Tensor unif;
  if (!greedy) {
    COSPEC_CHECK(kOp, uniforms.has_value(), "sampling (temperature > 0) needs `uniforms` [B, N]");
    COSPEC_CHECK_DTYPE(kOp, (*uniforms), at::kFloat);
    COSPEC_CHECK_DEVICE(kOp, (*uniforms), candidates.device());
    COSPEC_CHECK(kOp, uniforms->sizes() == candidates.sizes(), "`uniforms` must be [B, N] = [", B,
                 ", ", N, "], got ", uniforms->sizes());
    unif = uniforms->contiguous();
  }
  check_tree_cpu(kOp, parents, &candidates, V);

  const auto lopts = candidates.options();
  Tensor path = at::full({B, N}, -1, lopts);
  Tensor accept_len = at::zeros({B}, lopts), next_token = at::zeros({B}, lopts);
  Tensor consulted = at::zeros({B, N}, lopts.dtype(at::kBool));
  Tensor arb = at::zeros({B, N}, lopts.dtype(at::kBool));
  const at::ScalarType st = logits.defined() ? logits.scalar_type() : at::kFloat;
  const int64_t sb = logits.defined() ? logits.stride(0) : 0;
  const int64_t sn = logits.defined() ? logits.stride(1) : 0;

  COSPEC_DISPATCH_FLOAT_LIKE(st, "verify_tree_cpu", [&] {
    const scalar_t* x = logits.defined() ? logits.const_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        walk_row<scalar_t>(
            b, candidates.const_data_ptr<int64_t>() + b * N, parents.const_data_ptr<int64_t>() + b * N,
            N, x, sb, sn, V, argmax.defined() ? argmax.const_data_ptr<int64_t>() + b * N : nullptr,
            accept.defined() ? accept.const_data_ptr<bool>() + b * N : nullptr,
            static_cast<float>(temperature), unif.defined() ? unif.const_data_ptr<float>() + b * N : nullptr,
            path.data_ptr<int64_t>() + b * N, accept_len.data_ptr<int64_t>() + b,
            next_token.data_ptr<int64_t>() + b, consulted.data_ptr<bool>() + b * N,
            arb.data_ptr<bool>() + b * N);
      }
    });
  });
  return {path, accept_len, next_token, consulted, arb};
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CPU, m) { m.impl("verify_tree", &verify_tree_cpu); }

}  // namespace cospec

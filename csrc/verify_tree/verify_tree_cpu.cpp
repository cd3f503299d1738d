// CPU kernel of cospec::verify_tree: one thread walks one sequence's tree,
// reading only the logits rows of the nodes it visits (greedy: with the
// vectorised row kernel of logit_stats).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../common.h"
#include "../logit_stats/logit_stats.h"
#include "../tree_check.h"
#include "verify_tree.h"
#include "verify_tree_check.h"

namespace cospec {
namespace {

using at::Tensor;
constexpr const char* kOp = "verify_tree";

// p = softmax(x / T) of one row, as the shift M = max(x) and normaliser
// Z = sum exp((x - M) / T): the max is subtracted before dividing by T, so a finite logit
// with |x| / T > FLT_MAX (x = 1e38 at T = 0.1) still has p = 1 (issue 23; dividing first
// made every p NaN). A NaN logit makes Z NaN (every child rejected, the fallback token),
// like the float64 reference.
template <typename T>
struct RowSoftmax {
  const T* x;
  float inv_t, shift, inv_z;
  RowSoftmax(const T* row, int64_t V, float temperature) : x(row), inv_t(1.f / temperature) {
    float m = -INFINITY;
    bool nan = false;
    for (int64_t v = 0; v < V; ++v) {
      const float xv = static_cast<float>(x[v]);
      nan = nan || xv != xv;
      m = std::max(m, xv);
    }
    float z = 0.f;
    for (int64_t v = 0; v < V; ++v) z += std::exp((static_cast<float>(x[v]) - m) * inv_t);
    shift = m;
    inv_z = nan ? NAN : 1.f / z;
  }
  float operator()(int64_t v) const {
    return std::exp((static_cast<float>(x[v]) - shift) * inv_t) * inv_z;
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
  int64_t last = -1;
  auto ex = excluded.begin();
  for (int64_t v = 0; v < V; ++v) {
    while (ex != excluded.end() && *ex < v) ++ex;
    if (ex != excluded.end() && *ex == v) continue;
    const float q = p(v);
    if (q > 0.f) last = v;
    cum += q;
    if (cum > target && q > 0.f) return v;
  }
  // Rounding left target past the total: the last token with mass; no token with mass
  // (NaN, overflow): the largest logit (verify_tree.h).
  if (last >= 0) return last;
  return fallback_token(p.x, V, [&](int64_t v) { return std::binary_search(excluded.begin(), excluded.end(), v); });
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
    if (temperature == 0.f) {  // the launcher passes 0 for every T below kMinTemperature
      // The vectorised row pass of logit_stats (ties: lowest index, like torch.argmax).
      const int64_t t =
          argmax ? argmax[cur] : cpu::logit_row_stats(logits + b * sb + cur * sn, V).argmax;
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
    const Tensor& candidates, const Tensor& parents, const std::optional<Tensor>& target_logits,
    const std::optional<Tensor>& target_argmax, const std::optional<Tensor>& accept_draft,
    double temperature, const std::optional<Tensor>& uniforms) {
  const VerifyArgs a = check_verify_args(candidates, parents, target_logits, target_argmax,
                                         accept_draft, temperature, uniforms);
  const int64_t B = a.B, N = a.N;
  check_tree_cpu(kOp, a.parents, &a.candidates, a.logits.defined() ? a.V : INT64_MAX);

  const auto lopts = a.candidates.options();
  Tensor path = at::full({B, N}, -1, lopts);
  Tensor accept_len = at::zeros({B}, lopts), next_token = at::zeros({B}, lopts);
  Tensor consulted = at::zeros({B, N}, lopts.dtype(at::kBool));
  Tensor arb = at::zeros({B, N}, lopts.dtype(at::kBool));
  const bool has_logits = a.logits.defined();
  const at::ScalarType st = has_logits ? a.logits.scalar_type() : at::kFloat;
  const int64_t sb = has_logits ? a.logits.stride(0) : 0, sn = has_logits ? a.logits.stride(1) : 0;
  const int64_t* C = a.candidates.const_data_ptr<int64_t>();
  const int64_t* P = a.parents.const_data_ptr<int64_t>();
  const int64_t* AM = a.argmax.defined() ? a.argmax.const_data_ptr<int64_t>() : nullptr;
  const bool* ACC = a.accept.defined() ? a.accept.const_data_ptr<bool>() : nullptr;
  const float* U = a.uniforms.defined() ? a.uniforms.const_data_ptr<float>() : nullptr;

  COSPEC_DISPATCH_FLOAT_LIKE(st, "verify_tree_cpu", [&] {
    const scalar_t* x = has_logits ? a.logits.const_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r = b * N;  // this sequence's [N] rows
        walk_row<scalar_t>(b, C + r, P + r, N, x, sb, sn, a.V, AM ? AM + r : nullptr,
                           ACC ? ACC + r : nullptr, a.greedy ? 0.f : static_cast<float>(temperature),
                           U ? U + r : nullptr, path.data_ptr<int64_t>() + r,
                           accept_len.data_ptr<int64_t>() + b, next_token.data_ptr<int64_t>() + b,
                           consulted.data_ptr<bool>() + r, arb.data_ptr<bool>() + r);
      }
    });
  });
  return {path, accept_len, next_token, consulted, arb};
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CPU, m) { m.impl("verify_tree", &verify_tree_cpu); }

}  // namespace cospec

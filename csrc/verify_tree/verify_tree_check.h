// Argument checks of cospec::verify_tree, shared by the CPU and CUDA launchers:
// shapes, dtypes and devices (no values: see tree_check.h), and the inputs made
// contiguous where the kernels index them as [B, N] rows.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>

#include "../common.h"
#include "../tree_check.h"
#include "verify_tree.h"

namespace cospec {

struct VerifyArgs {
  at::Tensor candidates, parents;  // int64 [B, N], contiguous
  at::Tensor logits;               // [B, N, V] rows contiguous; undefined when not given
  at::Tensor argmax;               // int64 [B, N]; defined only for greedy with target_argmax
  at::Tensor accept;               // bool [B, N] or undefined
  at::Tensor uniforms;             // float32 [B, N]; defined only for sampling
  int64_t B = 0, N = 0, V = 0;     // V = 0 without logits
  bool greedy = true;
};

inline at::Tensor verify_companion(const char* name, const at::Tensor& t, at::ScalarType dtype,
                                   const at::Tensor& cand) {
  constexpr const char* op = "verify_tree";
  COSPEC_CHECK(op, t.scalar_type() == dtype, "`", name, "` must be ", dtype, ", got ",
               t.scalar_type());
  COSPEC_CHECK(op, t.device() == cand.device(), "`", name, "` must be on ", cand.device(),
               ", got ", t.device());
  COSPEC_CHECK(op, t.sizes() == cand.sizes(), "`", name, "` must be [B, N] = ", cand.sizes(),
               ", got ", t.sizes());
  return t.contiguous();
}

inline VerifyArgs check_verify_args(const at::Tensor& candidates, const at::Tensor& parents,
                                    const std::optional<at::Tensor>& target_logits,
                                    const std::optional<at::Tensor>& target_argmax,
                                    const std::optional<at::Tensor>& accept_draft,
                                    double temperature, const std::optional<at::Tensor>& uniforms) {
  constexpr const char* op = "verify_tree";
  check_tree_shapes(op, candidates, parents, candidates.device());
  VerifyArgs a;
  a.candidates = candidates.contiguous();
  a.parents = parents.contiguous();
  a.B = candidates.size(0);
  a.N = candidates.size(1);
  COSPEC_CHECK(op, a.N >= 1, "trees need at least the root node (N >= 1), got N = ", a.N);
  COSPEC_CHECK(op, std::isfinite(temperature) && temperature >= 0.0,
               "`temperature` must be finite and >= 0, got ", temperature);
  a.greedy = temperature < kMinTemperature;  // verify_tree.h: tiny temperatures are greedy
  COSPEC_CHECK(op, a.greedy || target_logits.has_value(),
               "sampling (temperature > 0) needs `target_logits`");
  COSPEC_CHECK(op, target_logits.has_value() || target_argmax.has_value(),
               "give `target_logits` or `target_argmax`");
  if (target_logits) {
    const at::Tensor& tl = *target_logits;
    COSPEC_CHECK_DIM(op, tl, 3);
    COSPEC_CHECK_FLOAT_LIKE(op, tl);
    COSPEC_CHECK_DEVICE(op, tl, candidates.device());
    COSPEC_CHECK(op, tl.size(0) == a.B && tl.size(1) == a.N,
                 "`target_logits` must be [B, N, V] = [", a.B, ", ", a.N, ", V], got ", tl.sizes());
    COSPEC_CHECK(op, tl.size(2) > 0, "`target_logits` has an empty vocabulary dim");
    a.logits = tl.stride(2) == 1 ? tl : tl.contiguous();
    a.V = a.logits.size(2);
  }
  if (a.greedy && target_argmax) {
    a.argmax = verify_companion("target_argmax", *target_argmax, at::kLong, a.candidates);
  }
  if (accept_draft) {
    a.accept = verify_companion("accept_draft", *accept_draft, at::kBool, a.candidates);
  }
  if (!a.greedy) {
    COSPEC_CHECK(op, uniforms.has_value(), "sampling (temperature > 0) needs `uniforms` [B, N]");
    a.uniforms = verify_companion("uniforms", *uniforms, at::kFloat, a.candidates);
  }
  return a;
}

}  // namespace cospec

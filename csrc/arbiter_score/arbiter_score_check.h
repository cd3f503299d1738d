// Argument checks of cospec::arbiter_score, shared by the CPU and CUDA launchers.
#pragma once

#include <ATen/core/Tensor.h>

#include "../common.h"
#include "arbiter_score.h"

namespace cospec {

struct ArbiterShapes {
  int64_t M, F, H1, H2;  // H2 == 0: one hidden layer
  Activation act;
};

inline ArbiterShapes check_arbiter_args(const at::Tensor& features, const at::Tensor& w1,
                                        const at::Tensor& b1, const std::optional<at::Tensor>& w2,
                                        const std::optional<at::Tensor>& b2,
                                        const at::Tensor& w_out, const at::Tensor& b_out,
                                        c10::string_view activation) {
  constexpr const char* op = "arbiter_score";
  ArbiterShapes sh{};
  COSPEC_CHECK(op, activation == "gelu" || activation == "relu",
               "`activation` must be 'gelu' or 'relu', got '", activation, "'");
  sh.act = activation == "gelu" ? Activation::kGelu : Activation::kRelu;
  COSPEC_CHECK_DIM(op, features, 2);
  COSPEC_CHECK_FLOAT_LIKE(op, features);
  sh.M = features.size(0);
  sh.F = features.size(1);
  COSPEC_CHECK(op, sh.F >= 1, "`features` must have at least one column, got ", features.sizes());
  const c10::Device dev = features.device();
  COSPEC_CHECK(op, w2.has_value() == b2.has_value(), "`w2` and `b2` must be given together");
  for (const at::Tensor* t : {&w1, &b1, &w_out, &b_out}) {
    COSPEC_CHECK(op, t->scalar_type() == at::kFloat && t->is_contiguous() && t->device() == dev,
                 "weights must be contiguous float32 tensors on ", dev, ", got ",
                 t->scalar_type(), " on ", t->device(), t->is_contiguous() ? "" : " (non-contiguous)");
  }
  COSPEC_CHECK_DIM(op, w1, 2);
  COSPEC_CHECK_SIZE(op, w1, 1, sh.F);
  sh.H1 = w1.size(0);
  COSPEC_CHECK(op, sh.H1 >= 1 && sh.H1 <= kArbiterMaxHidden, "`w1`.size(0) (hidden width) must be in [1, ",
               kArbiterMaxHidden, "], got ", sh.H1);
  COSPEC_CHECK_DIM(op, b1, 1);
  COSPEC_CHECK_SIZE(op, b1, 0, sh.H1);
  int64_t last = sh.H1;
  if (w2) {
    const at::Tensor &W2 = *w2, &B2 = *b2;
    for (const at::Tensor* t : {&W2, &B2}) {
      COSPEC_CHECK(op, t->scalar_type() == at::kFloat && t->is_contiguous() && t->device() == dev,
                   "`w2`/`b2` must be contiguous float32 tensors on ", dev);
    }
    COSPEC_CHECK_DIM(op, W2, 2);
    COSPEC_CHECK_SIZE(op, W2, 1, sh.H1);
    sh.H2 = W2.size(0);
    COSPEC_CHECK(op, sh.H2 >= 1 && sh.H2 <= kArbiterMaxHidden, "`w2`.size(0) must be in [1, ",
                 kArbiterMaxHidden, "], got ", sh.H2);
    COSPEC_CHECK_DIM(op, B2, 1);
    COSPEC_CHECK_SIZE(op, B2, 0, sh.H2);
    last = sh.H2;
  }
  COSPEC_CHECK_DIM(op, w_out, 1);
  COSPEC_CHECK_SIZE(op, w_out, 0, last);
  COSPEC_CHECK(op, b_out.numel() == 1, "`b_out` must hold one value, got shape ", b_out.sizes());
  return sh;
}

}  // namespace cospec

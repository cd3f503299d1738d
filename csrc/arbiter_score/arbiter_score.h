// Torch-free core of cospec::arbiter_score, shared by the CPU and CUDA kernels.
//
// The arbiter is an MLP over a feature row x [F]:
//   h1 = act(W1 x + b1)                      W1 [H1, F], b1 [H1]
//   h2 = act(W2 h1 + b2)   (optional layer)  W2 [H2, H1], b2 [H2]
//   logit = w_out . h_last + b_out           w_out [H_last], b_out [1]
// act is GELU (exact, erf form, as torch.nn.GELU()) or ReLU. Weights are float32,
// accumulation is float32 whatever the dtype of x.
#pragma once

#include <cmath>
#include <cstdint>

#include "../macros.h"

namespace cospec {

enum class Activation : int { kGelu = 0, kRelu = 1 };

constexpr int64_t kArbiterMaxHidden = 1024;  // widest hidden layer the fused kernels take

COSPEC_HD float activate(float x, Activation a) {
  return a == Activation::kGelu ? 0.5f * x * (1.f + erff(x * 0.70710678118654752f))
                                : fmaxf(x, 0.f);
}

// One dense layer on one row: out[j] = act(b[j] + sum_k W[j, k] in[k]) for j < n_out.
template <typename T>
COSPEC_HD void dense_act_row(const T* in, int64_t n_in, const float* W, const float* b,
                             int64_t n_out, Activation a, float* out) {
  for (int64_t j = 0; j < n_out; ++j) {
    float acc = b[j];
    const float* w = W + j * n_in;
    for (int64_t k = 0; k < n_in; ++k) acc += w[k] * static_cast<float>(in[k]);
    out[j] = activate(acc, a);
  }
}

}  // namespace cospec

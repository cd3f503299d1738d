// Torch-free core of cospec::arbiter_score (the CUDA kernel's activation), and the
// interface of the CPU kernel's per-ISA builds.
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

}  // namespace cospec

#if !defined(__CUDACC__)
#include "../cpu_isa.h"

namespace cospec::cpu {
// The CPU kernel scores rows in tiles of kArbiterTileRows. The launcher
// (arbiter_score_cpu.cpp) lays the weights out once per call in an ArbiterPlan:
// transposed (w1t [F, H1], w2t [H1, H2]) so every layer is a sum of rows of the
// weight matrix scaled by one input each, and zero-padded to hidden widths H1, H2
// that are multiples of kArbiterPad (padded units stay 0 and carry zero weight).
constexpr int64_t kArbiterTileRows = 8;
constexpr int64_t kArbiterPad = 32;  // a multiple of every build's vector block

struct ArbiterPlan {
  int64_t F, H1, H2;    // H1, H2 padded; H2 == 0: one hidden layer
  const float* w1t;     // [F, H1]
  const float* b1;      // [H1]
  const float* w2t;     // [H1, H2]
  const float* b2;      // [H2]
  const float* w_out;   // [H2 ? H2 : H1]
  float b_out;
  Activation act;
};

// Three builds of the same at::vec kernels (arbiter_score_cpu_vec.h): AVX-512,
// AVX2 + FMA and portable; arbiter_kernels() picks one at run time.
struct ArbiterKernels {
  // wt [Kp, Hp] = the transpose of w [H, K], zero-padded (Kp >= K, Hp >= H).
  void (*pack)(const float* w, int64_t H, int64_t K, int64_t Hp, int64_t Kp, float* wt);
  // out[r] for the tile's rows x [kArbiterTileRows, F] (row-major float); scratch holds
  // kArbiterTileRows * H1 floats (the first layer's activations when there are two).
  void (*tile)(const ArbiterPlan& p, const float* x, float* out, float* scratch);
};
extern const ArbiterKernels arbiter_kernels_avx512, arbiter_kernels_avx2, arbiter_kernels_base;

inline const ArbiterKernels& arbiter_kernels() {
  return pick_isa(arbiter_kernels_avx512, arbiter_kernels_avx2, arbiter_kernels_base);
}
}  // namespace cospec::cpu
#endif

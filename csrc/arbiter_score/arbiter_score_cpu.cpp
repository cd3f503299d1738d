// CPU kernel of cospec::arbiter_score: each thread runs the whole MLP on a block
// of rows, keeping the hidden activations in a small per-thread buffer.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <vector>

#include "../common.h"
#include "arbiter_score.h"
#include "arbiter_score_check.h"

namespace cospec {
namespace {

using at::Tensor;

Tensor arbiter_score_cpu(const Tensor& features, const Tensor& w1, const Tensor& b1,
                         const std::optional<Tensor>& w2, const std::optional<Tensor>& b2,
                         const Tensor& w_out, const Tensor& b_out, c10::string_view activation) {
  const ArbiterShapes sh =
      check_arbiter_args(features, w1, b1, w2, b2, w_out, b_out, activation);
  const Tensor x = features.stride(1) == 1 ? features : features.contiguous();
  Tensor out = at::empty({sh.M}, x.options().dtype(at::kFloat));
  const float* W1 = w1.const_data_ptr<float>();
  const float* B1 = b1.const_data_ptr<float>();
  const float* W2 = sh.H2 > 0 ? w2->const_data_ptr<float>() : nullptr;
  const float* B2 = sh.H2 > 0 ? b2->const_data_ptr<float>() : nullptr;
  const float* Wo = w_out.const_data_ptr<float>();
  const float bo = b_out.const_data_ptr<float>()[0];
  const int64_t sm = x.stride(0);
  COSPEC_DISPATCH_FLOAT_LIKE(x.scalar_type(), "arbiter_score_cpu",
                                  [&] {
    const scalar_t* X = x.const_data_ptr<scalar_t>();
    float* O = out.data_ptr<float>();
    at::parallel_for(0, sh.M, 16, [&](int64_t r0, int64_t r1) {
      std::vector<float> h1(sh.H1), h2(sh.H2);
      for (int64_t r = r0; r < r1; ++r) {
        dense_act_row(X + r * sm, sh.F, W1, B1, sh.H1, sh.act, h1.data());
        const float* h = h1.data();
        int64_t H = sh.H1;
        if (sh.H2 > 0) {
          dense_act_row(h1.data(), sh.H1, W2, B2, sh.H2, sh.act, h2.data());
          h = h2.data();
          H = sh.H2;
        }
        float acc = bo;
        for (int64_t k = 0; k < H; ++k) acc += Wo[k] * h[k];
        O[r] = acc;
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CPU, m) { m.impl("arbiter_score", &arbiter_score_cpu); }

}  // namespace cospec

// CPU launcher of cospec::arbiter_score: checks, the weight layout of the tile
// kernel (cpu::ArbiterPlan, built once per call), dtype dispatch, threads over
// tiles of rows. Each tile of features is converted to float in a per-thread
// buffer and scored by the at::vec kernel of the best instruction set
// (arbiter_score_cpu_vec.h), which runs the whole MLP in registers and L1.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../common.h"
#include "arbiter_score.h"
#include "arbiter_score_check.h"

namespace cospec {
namespace {

using at::Tensor;
using cpu::kArbiterPad;
using cpu::kArbiterTileRows;

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// dst [Hp] = src [H] then zeros.
void copy_pad(const float* src, int64_t H, int64_t Hp, float* dst) {
  std::copy(src, src + H, dst);
  std::fill(dst + H, dst + Hp, 0.f);
}

Tensor arbiter_score_cpu(const Tensor& features, const Tensor& w1, const Tensor& b1,
                         const std::optional<Tensor>& w2, const std::optional<Tensor>& b2,
                         const Tensor& w_out, const Tensor& b_out, c10::string_view activation) {
  const ArbiterShapes sh =
      check_arbiter_args(features, w1, b1, w2, b2, w_out, b_out, activation);
  const Tensor x = features.stride(1) == 1 ? features : features.contiguous();
  Tensor out = at::empty({sh.M}, x.options().dtype(at::kFloat));
  if (sh.M == 0) return out;

  // The plan: w1t [F, H1p], b1 [H1p], w2t [H1p, H2p], b2 [H2p], w_out [H2p or H1p].
  const int64_t F = sh.F, H1p = round_up(sh.H1, kArbiterPad);
  const int64_t H2p = sh.H2 > 0 ? round_up(sh.H2, kArbiterPad) : 0;
  Tensor buf = at::empty({F * H1p + H1p + H1p * H2p + H2p + (H2p ? H2p : H1p)},
                         x.options().dtype(at::kFloat));
  float* w1t = buf.data_ptr<float>();
  float* pb1 = w1t + F * H1p;
  float* w2t = pb1 + H1p;
  float* pb2 = w2t + H1p * H2p;
  float* pwo = pb2 + H2p;
  const cpu::ArbiterKernels& kern = cpu::arbiter_kernels();
  kern.pack(w1.const_data_ptr<float>(), sh.H1, F, H1p, F, w1t);
  copy_pad(b1.const_data_ptr<float>(), sh.H1, H1p, pb1);
  if (sh.H2 > 0) {
    kern.pack(w2->const_data_ptr<float>(), sh.H2, sh.H1, H2p, H1p, w2t);
    copy_pad(b2->const_data_ptr<float>(), sh.H2, H2p, pb2);
  }
  copy_pad(w_out.const_data_ptr<float>(), sh.H2 > 0 ? sh.H2 : sh.H1, H2p ? H2p : H1p, pwo);
  const cpu::ArbiterPlan plan{F,   H1p, H2p, w1t, pb1, w2t, pb2,
                              pwo, b_out.const_data_ptr<float>()[0], sh.act};

  const int64_t n_tiles = (sh.M + kArbiterTileRows - 1) / kArbiterTileRows;
  // 4 Mflop (~40 us) per task at least: on the 2-core test VM, handing half of M = 64
  // (1.6 Mflop, 23 us on one thread) to a second OpenMP thread saved 2 us while it was
  // still spinning and cost 25 us when it had gone to sleep.
  const int64_t tile_flops = 2 * kArbiterTileRows * (F * H1p + H1p * H2p + (H2p ? H2p : H1p));
  const int64_t grain = std::max<int64_t>(1, ((int64_t{1} << 22) + tile_flops - 1) / tile_flops);
  const int64_t sm = x.stride(0);
  COSPEC_DISPATCH_FLOAT_LIKE(x.scalar_type(), "arbiter_score_cpu", [&] {
    const scalar_t* X = x.const_data_ptr<scalar_t>();
    float* O = out.data_ptr<float>();
    at::parallel_for(0, n_tiles, grain, [&](int64_t t0, int64_t t1) {
      std::vector<float> scratch(kArbiterTileRows * (H1p + F));  // h1, then the x tile
      float* xt = scratch.data() + kArbiterTileRows * H1p;
      float ot[kArbiterTileRows];
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r0 = t * kArbiterTileRows;
        const int64_t nr = std::min(kArbiterTileRows, sh.M - r0);
        const float* xs = xt;
        if (std::is_same_v<scalar_t, float> && nr == kArbiterTileRows && sm == F) {
          xs = reinterpret_cast<const float*>(X + r0 * sm);  // read in place
        } else {
          for (int64_t r = 0; r < nr; ++r) {
            const scalar_t* xr = X + (r0 + r) * sm;
            for (int64_t k = 0; k < F; ++k) xt[r * F + k] = static_cast<float>(xr[k]);
          }
          std::fill(xt + nr * F, xt + kArbiterTileRows * F, 0.f);  // rows past M: scored, dropped
        }
        kern.tile(plan, xs, ot, scratch.data());
        std::memcpy(O + r0, ot, nr * sizeof(float));
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(cospec, CPU, m) { m.impl("arbiter_score", &arbiter_score_cpu); }

}  // namespace cospec

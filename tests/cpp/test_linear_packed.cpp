// C++ test of cospec::linear_packed through the dispatcher (CPU kernel): small-integer inputs,
// whose products and sums are exact in float32, so the op must equal the float64 matrix product
// exactly, for row counts across the register blocks (1..17, 48, 50), N across panel tails, a
// bias, strided x, and a product past the threading thresholds. The panels are packed here by
// loops (packed[p, k, c] = W[p * 48 + c, k]). Built and run by CMakeLists.txt
// (`bash cmake/ctest.sh`); exit status 0 when every check passed.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <cstdio>
#include <functional>
#include <optional>
#include <string>

#include "expect.h"

namespace {

using at::Tensor;
using cospec_test::g_checks;
using cospec_test::g_failures;
using cospec_test::run;

constexpr int64_t kPanel = 48;

Tensor linear_packed(const Tensor& x, const Tensor& packed, int64_t n, const std::optional<Tensor>& b) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("cospec::linear_packed", "")
                       .typed<Tensor(const Tensor&, const Tensor&, int64_t, const std::optional<Tensor>&)>();
  return op.call(x, packed, n, b);
}

Tensor pack(const Tensor& w) {  // [N, K] -> [ceil(N / 48), K, 48]
  const int64_t N = w.size(0), K = w.size(1), P = (N + kPanel - 1) / kPanel;
  Tensor out = at::zeros({P, K, kPanel}, w.options());
  auto o = out.accessor<float, 3>();
  auto a = w.accessor<float, 2>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) o[n / kPanel][k][n % kPanel] = a[n][k];
  return out;
}

// Integers in [-3, 3]: |y| <= 9 K + 3, exact in float32 for the K used here.
Tensor small_ints(at::IntArrayRef shape, int64_t seed) {
  at::manual_seed(seed);
  return at::randint(-3, 4, shape, at::kFloat);
}

void check_exact(int64_t M, int64_t K, int64_t N, bool bias, int64_t seed) {
  const Tensor x = small_ints({M, K}, seed), w = small_ints({N, K}, seed + 1);
  const std::optional<Tensor> b = bias ? std::optional<Tensor>(small_ints({N}, seed + 2)) : std::nullopt;
  Tensor want = at::matmul(x.to(at::kDouble), w.to(at::kDouble).t());
  if (bias) want = want + b->to(at::kDouble);
  const Tensor got = linear_packed(x, pack(w), N, b);
  EXPECT(got.scalar_type() == at::kFloat && got.sizes() == want.sizes(), "M=", M, " K=", K, " N=", N);
  EXPECT(at::equal(got.to(at::kDouble), want), "M=", M, " K=", K, " N=", N, " bias=", bias,
         ": max |diff| ", (got.to(at::kDouble) - want).abs().max().item<double>());
}

void test_exact() {
  int64_t seed = 0;
  for (int64_t M : {1, 2, 7, 8, 9, 16, 17, 48, 50})
    for (int64_t K : {1, 15, 64, 100})
      for (int64_t N : {1, 40, 48, 97}) check_exact(M, K, N, (M + N) % 2 == 0, seed += 3);
  check_exact(40, 700, 1000, true, 1);  // 2.8 MB of panels: split over threads
}

void test_strided() {
  const Tensor xt = small_ints({30, 20}, 5).t();  // [20, 30], stride (1, 20)
  const Tensor w = small_ints({50, 30}, 6);
  const Tensor want = at::matmul(xt.to(at::kDouble), w.to(at::kDouble).t());
  EXPECT(at::equal(linear_packed(xt, pack(w), 50, std::nullopt).to(at::kDouble), want), "strided x");
}

bool throws_naming(const std::function<void()>& f, const std::string& what) {
  return cospec_test::throws_naming(f, "linear_packed", what);
}

void test_bad_inputs() {
  const Tensor x = at::ones({2, 5}), p = pack(at::ones({3, 5}));
  EXPECT(throws_naming([&] { linear_packed(x, at::ones({1, 4, kPanel}), 3, std::nullopt); }, "`packed`"), "K");
  EXPECT(throws_naming([&] { linear_packed(x, at::ones({1, 5, 47}), 3, std::nullopt); }, "`packed`"), "panel");
  EXPECT(throws_naming([&] { linear_packed(x, p, 49, std::nullopt); }, "`packed`"), "panel count");
  EXPECT(throws_naming([&] { linear_packed(x, p, 0, std::nullopt); }, "`n`"), "n");
  EXPECT(throws_naming([&] { linear_packed(x.to(at::kDouble), p, 3, std::nullopt); }, "`x`"), "x dtype");
  EXPECT(throws_naming([&] { linear_packed(x, p, 3, at::ones({2})); }, "`bias`"), "bias size");
  EXPECT(throws_naming([&] { linear_packed(at::ones({5}), p, 3, std::nullopt); }, "`x`"), "x dims");
}

}  // namespace

int main() {
  if (!cospec_test::registered("linear_packed")) return 1;
  run("linear_packed exact", test_exact);
  run("linear_packed strided", test_strided);
  run("linear_packed bad inputs", test_bad_inputs);
  std::printf("linear_packed: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

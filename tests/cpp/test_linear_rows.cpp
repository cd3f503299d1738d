// C++ test of cospec::linear_rows through the dispatcher (CPU kernel): small-integer inputs,
// whose products and sums are exact in float32 (and the inputs exact in bfloat16), so the op
// must equal the float64 matrix product exactly, for row counts across the register tiles
// (1..16), odd K and N, a bias, strided x and W, and a W past the threading threshold. Built
// and run by CMakeLists.txt (`bash cmake/ctest.sh`); exit status 0 when every check passed.
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

Tensor linear_rows(const Tensor& x, const Tensor& w, const std::optional<Tensor>& b) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("cospec::linear_rows", "")
                       .typed<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&)>();
  return op.call(x, w, b);
}

// Integers in [-3, 3]: |y| <= 9 K + 3, exact in float32 for the K used here.
Tensor small_ints(at::IntArrayRef shape, int64_t seed) {
  at::manual_seed(seed);
  return at::randint(-3, 4, shape, at::kFloat);
}

void check_exact(int64_t M, int64_t K, int64_t N, at::ScalarType dt, bool bias, int64_t seed) {
  const Tensor x = small_ints({M, K}, seed).to(dt), w = small_ints({N, K}, seed + 1).to(dt);
  const std::optional<Tensor> b = bias ? std::optional<Tensor>(small_ints({N}, seed + 2).to(dt)) : std::nullopt;
  Tensor want = at::matmul(x.to(at::kDouble), w.to(at::kDouble).t());
  if (bias) want = want + b->to(at::kDouble);
  const Tensor got = linear_rows(x, w, b);
  EXPECT(got.scalar_type() == dt && got.sizes() == want.sizes(), "M=", M, " K=", K, " N=", N);
  if (dt == at::kFloat) {
    EXPECT(at::equal(got.to(at::kDouble), want), "M=", M, " K=", K, " N=", N, " bias=", bias,
           ": max |diff| ", (got.to(at::kDouble) - want).abs().max().item<double>());
  } else {  // the float32 sum is exact; the output rounds it to the 16-bit type once
    EXPECT(at::equal(got, want.to(at::kFloat).to(dt)), "M=", M, " K=", K, " N=", N, " ", dt);
  }
}

void test_exact() {
  int64_t seed = 0;
  for (int64_t M : {1, 2, 3, 4, 5, 6, 8, 9, 13, 16})
    for (int64_t K : {1, 15, 17, 64, 100})
      for (int64_t N : {1, 9, 40}) {
        check_exact(M, K, N, at::kFloat, (M + N) % 2 == 0, seed += 3);
        check_exact(M, K, N, at::kBFloat16, true, seed += 3);
      }
  check_exact(5, 1000, 700, at::kFloat, true, 1);  // 2.8 MB of W: split over threads
  check_exact(16, 3000, 33, at::kHalf, false, 2);  // K past one L1 chunk
}

void test_strided() {
  const Tensor xt = small_ints({30, 4}, 5).t();             // [4, 30], stride (1, 4)
  const Tensor wide = small_ints({11, 37}, 6);
  const Tensor w = wide.slice(1, 3, 33);                     // [11, 30], row stride 37
  const Tensor want = at::matmul(xt.to(at::kDouble), w.to(at::kDouble).t());
  EXPECT(at::equal(linear_rows(xt, w, std::nullopt).to(at::kDouble), want), "strided x and W");
  const Tensor wt = small_ints({30, 11}, 7).t();            // [11, 30], no unit stride in K
  const Tensor want2 = at::matmul(xt.to(at::kDouble), wt.to(at::kDouble).t());
  EXPECT(at::equal(linear_rows(xt, wt, std::nullopt).to(at::kDouble), want2), "transposed W");
}

bool throws_naming(const std::function<void()>& f, const std::string& what) {
  return cospec_test::throws_naming(f, "linear_rows", what);
}

void test_bad_inputs() {
  const Tensor x = at::ones({2, 5}), w = at::ones({3, 5});
  EXPECT(throws_naming([&] { linear_rows(x, at::ones({3, 4}), std::nullopt); }, "`weight`"), "K");
  EXPECT(throws_naming([&] { linear_rows(x, w.to(at::kDouble), std::nullopt); }, "`weight`"), "dtype");
  EXPECT(throws_naming([&] { linear_rows(x.to(at::kLong), w.to(at::kLong), std::nullopt); }, "`x`"),
         "int x");
  EXPECT(throws_naming([&] { linear_rows(x, w, at::ones({2})); }, "`bias`"), "bias size");
  EXPECT(throws_naming([&] { linear_rows(at::ones({5}), w, std::nullopt); }, "`x`"), "x dims");
}

}  // namespace

int main() {
  if (!cospec_test::registered("linear_rows")) return 1;
  run("linear_rows exact", test_exact);
  run("linear_rows strided", test_strided);
  run("linear_rows bad inputs", test_bad_inputs);
  std::printf("linear_rows: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

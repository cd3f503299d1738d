// C++ tests of the cospec ops through the dispatcher, on hand-built inputs with exactly
// known answers (CPU kernels). Built and run by CMakeLists.txt (`bash cmake/ctest.sh`).
// The library registers its ops from static initializers, so this executable links
// libcospec_kernels.so with -Wl,--no-as-needed. Exit status: number of failed checks (0 = ok).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "expect.h"

namespace {

using at::Tensor;
using OptT = std::optional<Tensor>;

using cospec_test::g_checks;
using cospec_test::g_failures;
using cospec_test::run;

Tensor longs(std::vector<int64_t> v, at::IntArrayRef shape) {
  return at::tensor(v, at::kLong).reshape(shape);
}

Tensor bools(std::vector<int64_t> v, at::IntArrayRef shape) {
  return at::tensor(v, at::kLong).reshape(shape).to(at::kBool);
}

bool close(const Tensor& a, const Tensor& b, double tol = 1e-5) {
  return a.sizes() == b.sizes() &&
         at::allclose(a.to(at::kDouble), b.to(at::kDouble), /*rtol=*/tol, /*atol=*/tol);
}

double max_diff(const Tensor& a, const Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// ---- the ops, typed through the dispatcher ----------------------------------------------------

using Verify5 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;
using Stats6 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

Verify5 verify_tree(const Tensor& candidates, const Tensor& parents, const OptT& target_logits,
                    const OptT& target_argmax, const OptT& accept_draft, double temperature,
                    const OptT& uniforms) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("cospec::verify_tree", "")
                       .typed<Verify5(const Tensor&, const Tensor&, const OptT&, const OptT&,
                                      const OptT&, double, const OptT&)>();
  return op.call(candidates, parents, target_logits, target_argmax, accept_draft, temperature,
                 uniforms);
}

Stats6 logit_stats(const Tensor& logits, const OptT& candidates, const OptT& parents) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("cospec::logit_stats", "")
                       .typed<Stats6(const Tensor&, const OptT&, const OptT&)>();
  return op.call(logits, candidates, parents);
}

Tensor arbiter_score(const Tensor& features, const Tensor& w1, const Tensor& b1, const OptT& w2,
                     const OptT& b2, const Tensor& w_out, const Tensor& b_out,
                     c10::string_view activation) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("cospec::arbiter_score", "")
                       .typed<Tensor(const Tensor&, const Tensor&, const Tensor&, const OptT&,
                                     const OptT&, const Tensor&, const Tensor&,
                                     c10::string_view)>();
  return op.call(features, w1, b1, w2, b2, w_out, b_out, activation);
}

Tensor kv_rollback(Tensor& cache, const Tensor& base_len, const Tensor& path) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("cospec::kv_rollback", "")
                       .typed<Tensor(Tensor&, const Tensor&, const Tensor&)>();
  return op.call(cache, base_len, path);
}

Tensor commit_tokens(Tensor& seq, Tensor& total, const Tensor& cand, const Tensor& path,
                     const Tensor& acc, const Tensor& next, const Tensor& eos, int64_t limit) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("cospec::commit_tokens", "")
                       .typed<Tensor(Tensor&, Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                     const Tensor&, const Tensor&, int64_t)>();
  return op.call(seq, total, cand, path, acc, next, eos, limit);
}

void tree_mask(Tensor& out, const Tensor& pad, const Tensor& root, const Tensor& anc) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("cospec::tree_mask", "")
                       .typed<void(Tensor&, const Tensor&, const Tensor&, const Tensor&)>();
  op.call(out, pad, root, anc);
}

Tensor node_features(const Tensor& logits, const Tensor& cand, const Tensor& par, const Tensor& depth,
                     const Tensor& rank, const Tensor& ngen, const Tensor& dlogits, int64_t levels) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("cospec::node_features", "")
                       .typed<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                     const Tensor&, const Tensor&, const Tensor&, int64_t)>();
  return op.call(logits, cand, par, depth, rank, ngen, dlogits, levels);
}

// ---- (a) verify_tree ----------------------------------------------------------------------------

// The 5-node tree of every row:      0 (root, token 7)
//                                   /  \.
//                     token 3 ->   1    2   <- token 5
//                                  |    |
//                     token 4 ->   3    4   <- token 6
const std::vector<int64_t> kParents = {-1, 0, 0, 1, 2};
const std::vector<int64_t> kCands = {7, 3, 5, 4, 6};
constexpr int64_t kN = 5, kV = 8;

// logits [B, N, V]: zeros with 5.0 at the given argmax of each node.
Tensor onehot_logits(const std::vector<std::vector<int64_t>>& argmax) {
  const int64_t B = static_cast<int64_t>(argmax.size());
  Tensor x = at::zeros({B, kN, kV}, at::kFloat);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < kN; ++i) x[b][i][argmax[b][i]] = 5.0f;
  return x;
}

void test_verify_tree() {
  const int64_t B = 3;
  std::vector<int64_t> cands, pars;
  for (int64_t b = 0; b < B; ++b) {
    cands.insert(cands.end(), kCands.begin(), kCands.end());
    pars.insert(pars.end(), kParents.begin(), kParents.end());
  }
  const Tensor candidates = longs(cands, {B, kN}), parents = longs(pars, {B, kN});
  // Row 0: root picks 5 -> node 2, node 2 picks 6 -> node 4 (leaf), node 4 picks 1 => bonus 1.
  // Row 1: root picks 2 (no such child) -> arbiter; node 2 picks 6 -> node 4; bonus 0.
  // Row 2: root picks 1 (no such child) -> arbiter rejects both children; next token 1.
  const std::vector<std::vector<int64_t>> am = {
      {5, 0, 6, 0, 1}, {2, 0, 6, 0, 0}, {1, 0, 0, 0, 0}};
  const Tensor logits = onehot_logits(am);
  std::vector<int64_t> am_flat;
  for (const auto& r : am) am_flat.insert(am_flat.end(), r.begin(), r.end());
  const Tensor target_argmax = longs(am_flat, {B, kN});

  // Greedy without an arbiter: row 0 accepts 2 nodes, rows 1 and 2 stop at the root.
  {
    auto [path, len, next, consulted, arb] =
        verify_tree(candidates, parents, logits, std::nullopt, std::nullopt, 0.0, std::nullopt);
    const Tensor want_path = longs({0, 2, 4, -1, -1, 0, -1, -1, -1, -1, 0, -1, -1, -1, -1}, {B, kN});
    EXPECT(at::equal(path, want_path), "path ", path);
    EXPECT(at::equal(len, longs({2, 0, 0}, {B})), "accept_len ", len);
    EXPECT(at::equal(next, longs({1, 2, 1}, {B})), "next_token ", next);
    EXPECT(!consulted.any().item<bool>(), "consulted ", consulted);
    EXPECT(!arb.any().item<bool>(), "arbiter_accepted ", arb);
    EXPECT(path.scalar_type() == at::kLong && consulted.scalar_type() == at::kBool, "dtypes");
  }

  // With accept_draft: row 1 takes node 2 on the arbiter's word (consulting 1 then 2).
  const Tensor accept = bools({0, 0, 0, 0, 0,  //
                               0, 0, 1, 0, 0,  //
                               0, 0, 0, 0, 0},
                              {B, kN});
  const Tensor want_path = longs({0, 2, 4, -1, -1, 0, 2, 4, -1, -1, 0, -1, -1, -1, -1}, {B, kN});
  const Tensor want_consulted = bools({0, 0, 0, 0, 0,  //
                                       0, 1, 1, 0, 0,  //
                                       0, 1, 1, 0, 0},
                                      {B, kN});
  const Tensor want_arb = bools({0, 0, 0, 0, 0,  //
                                 0, 0, 1, 0, 0,  //
                                 0, 0, 0, 0, 0},
                                {B, kN});
  for (int use_argmax = 0; use_argmax < 2; ++use_argmax) {
    auto [path, len, next, consulted, arb] =
        use_argmax ? verify_tree(candidates, parents, std::nullopt, target_argmax, accept, 0.0,
                                 std::nullopt)
                   : verify_tree(candidates, parents, logits, std::nullopt, accept, 0.0,
                                 std::nullopt);
    const char* how = use_argmax ? "(target_argmax) " : "(target_logits) ";
    EXPECT(at::equal(path, want_path), how, "path ", path);
    EXPECT(at::equal(len, longs({2, 2, 0}, {B})), how, "accept_len ", len);
    EXPECT(at::equal(next, longs({1, 0, 1}, {B})), how, "next_token ", next);
    EXPECT(at::equal(consulted, want_consulted), how, "consulted ", consulted);
    EXPECT(at::equal(arb, want_arb), how, "arbiter_accepted ", arb);
  }

  // Strided logits (a slice of a wider vocab) and bfloat16 logits give the same walk.
  {
    const Tensor wide = at::zeros({B, kN, 2 * kV}, at::kFloat);
    wide.narrow(2, 0, kV).copy_(logits);
    const Tensor strided = wide.narrow(2, 0, kV);
    auto r1 = verify_tree(candidates, parents, strided, std::nullopt, accept, 0.0, std::nullopt);
    auto r2 = verify_tree(candidates, parents, logits.to(at::kBFloat16), std::nullopt, accept, 0.0,
                          std::nullopt);
    EXPECT(at::equal(std::get<0>(r1), want_path), "strided path ", std::get<0>(r1));
    EXPECT(at::equal(std::get<0>(r2), want_path), "bf16 path ", std::get<0>(r2));
    EXPECT(at::equal(std::get<2>(r2), longs({1, 0, 1}, {B})), "bf16 next ", std::get<2>(r2));
  }

  // Sampling on flat logits: p = 1/V for every token. Child i is accepted when
  // u[i] * sum(q) < q[token] = 1/8; at the leaf the residual (node 4 has no children, so
  // q = p) is drawn by inverse CDF with u[0] = 0.6: the first v with (v+1)/8 > 0.6 is v = 4.
  {
    const Tensor flat = at::zeros({1, kN, kV}, at::kFloat);
    const Tensor cand1 = candidates.narrow(0, 0, 1), par1 = parents.narrow(0, 0, 1);
    // node 1: u = 0.5 -> 0.5 >= 1/8, rejected (q[3] = 0, sum 7/8); node 2: u = 0.1 -> 0.0875 <
    // 1/8, accepted; node 4: u = 0.05 -> accepted; leaf: next token 4.
    const Tensor u = at::tensor(std::vector<float>{0.6f, 0.5f, 0.1f, 0.9f, 0.05f}).reshape({1, kN});
    auto [path, len, next, consulted, arb] =
        verify_tree(cand1, par1, flat, std::nullopt, std::nullopt, 1.0, u);
    EXPECT(at::equal(path, longs({0, 2, 4, -1, -1}, {1, kN})), "sampling path ", path);
    EXPECT(len.item<int64_t>() == 2, "sampling accept_len ", len);
    EXPECT(next.item<int64_t>() == 4, "sampling next_token ", next);
  }
}

// ---- (b) logit_stats ----------------------------------------------------------------------------

void test_logit_stats() {
  at::manual_seed(0);
  for (int64_t V : {1, 8, 37, 1000}) {
    const int64_t B = 2, N = 5;
    Tensor x = at::randn({B, N, V}, at::kFloat) * 3.0;
    if (V >= 8) {  // a tie: the lowest index wins, like torch.argmax
      x[0][1].fill_(-1.0);
      x[0][1][3] = 2.0;
      x[0][1][6] = 2.0;
    }
    const Tensor cand = (V > 1) ? longs({0, 3, 5, 4, 6, 0, 3, 5, 4, 6}, {B, N}).remainder(V)
                                : at::zeros({B, N}, at::kLong);
    const Tensor par = longs({-1, 0, 0, 1, 2, -1, 0, 1, 2, 3}, {B, N});
    auto [argmax, mx, lse, entropy, margin, cand_lp] = logit_stats(x, cand, par);
    const Tensor xd = x.to(at::kDouble);
    const Tensor want_lse = at::logsumexp(xd, {-1});
    EXPECT(at::equal(argmax, at::argmax(x, -1)), "V=", V, " argmax ", argmax);
    EXPECT(close(mx, std::get<0>(at::max(xd, -1))), "V=", V, " max diff ",
           max_diff(mx, std::get<0>(at::max(xd, -1))));
    EXPECT(close(lse, want_lse), "V=", V, " logsumexp diff ", max_diff(lse, want_lse));
    const Tensor logp = xd - want_lse.unsqueeze(-1);
    const Tensor want_ent = -(logp.exp() * logp).sum(-1);
    EXPECT(close(entropy, want_ent), "V=", V, " entropy diff ", max_diff(entropy, want_ent));
    if (V > 1) {
      const Tensor top2 = std::get<0>(at::topk(xd, 2, -1));
      const Tensor want_margin = top2.select(-1, 0) - top2.select(-1, 1);
      EXPECT(close(margin, want_margin), "V=", V, " margin diff ", max_diff(margin, want_margin));
    } else {
      EXPECT(std::isinf(margin[0][0].item<float>()), "V=1 margin ", margin);
    }
    Tensor want_clp = at::zeros({B, N}, at::kDouble);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 1; i < N; ++i) {
        const int64_t p = par[b][i].item<int64_t>(), c = cand[b][i].item<int64_t>();
        want_clp[b][i] = logp[b][p][c].item<double>();
      }
    EXPECT(close(cand_lp, want_clp), "V=", V, " cand_logprob diff ", max_diff(cand_lp, want_clp));
    EXPECT(argmax.scalar_type() == at::kLong && lse.scalar_type() == at::kFloat, "dtypes");

    // Without a tree, cand_logprob is all zero; strided rows give the same stats.
    const Tensor wide = at::zeros({B, N, V + 5}, at::kFloat);
    wide.narrow(2, 0, V).copy_(x);
    auto s2 = logit_stats(wide.narrow(2, 0, V), std::nullopt, std::nullopt);
    EXPECT(at::equal(std::get<0>(s2), argmax), "V=", V, " strided argmax");
    EXPECT(close(std::get<2>(s2), want_lse), "V=", V, " strided logsumexp diff ",
           max_diff(std::get<2>(s2), want_lse));
    EXPECT(at::equal(std::get<5>(s2), at::zeros({B, N}, at::kFloat)), "V=", V,
           " cand_logprob without a tree ", std::get<5>(s2));
  }
}

// NaN / +inf / fully masked rows (csrc/logit_stats/logit_stats.h: special_row_stats).
void test_logit_stats_special_rows() {
  for (int64_t V : {5, 100}) {
    Tensor x = at::randn({1, 4, V}, at::kFloat);
    x[0][0][3] = NAN;
    x[0][0][1] = NAN;
    x[0][1][2] = INFINITY;
    x[0][2].fill_(-INFINITY);
    x[0][3][1] = INFINITY;
    x[0][3][4] = INFINITY;
    auto [argmax, mx, lse, entropy, margin, cand_lp] = logit_stats(x, std::nullopt, std::nullopt);
    EXPECT(argmax[0][0].item<int64_t>() == 1 && std::isnan(lse[0][0].item<float>()) &&
               std::isnan(entropy[0][0].item<float>()) && std::isnan(margin[0][0].item<float>()),
           "V=", V, " NaN row: argmax ", argmax[0][0], " lse ", lse[0][0]);
    EXPECT(argmax[0][1].item<int64_t>() == 2 && lse[0][1].item<float>() == INFINITY &&
               std::isnan(entropy[0][1].item<float>()) && margin[0][1].item<float>() == INFINITY,
           "V=", V, " +inf row: lse ", lse[0][1], " margin ", margin[0][1]);
    EXPECT(argmax[0][2].item<int64_t>() == 0 && lse[0][2].item<float>() == -INFINITY &&
               entropy[0][2].item<float>() == 0.f && std::isnan(margin[0][2].item<float>()),
           "V=", V, " masked row: lse ", lse[0][2]);
    EXPECT(argmax[0][3].item<int64_t>() == 1 && std::isnan(margin[0][3].item<float>()),
           "V=", V, " two +inf: argmax ", argmax[0][3], " margin ", margin[0][3]);
  }
  // A late huge max: 70000 zeros, then two logits 1e34. The rescale of the running sums must
  // not form 0 * -inf (issue 23: entropy was 0, the answer is ln 2).
  Tensor late = at::zeros({1, 1, 70002}, at::kFloat);
  late[0][0][70000] = 1e34f;
  late[0][0][70001] = 1e34f;
  auto [am, mx2, lse2, ent2, mar2, lp2] = logit_stats(late, std::nullopt, std::nullopt);
  EXPECT(std::fabs(ent2.item<float>() - std::log(2.f)) < 1e-5f && am.item<int64_t>() == 70000,
         "late huge max: entropy ", ent2, " (want ln 2), argmax ", am);
}

// ---- (c) kv_rollback ----------------------------------------------------------------------------

void test_kv_rollback() {
  // cache [2 (k/v), layers 1, B 2, H 2, S 8, D 4], every element distinct.
  Tensor cache = at::arange(2 * 1 * 2 * 2 * 8 * 4, at::kFloat).reshape({2, 1, 2, 2, 8, 4});
  const Tensor orig = cache.clone();
  const Tensor base_len = longs({1, 3}, {2});
  const Tensor path = longs({0, 2, 3, -1,  //
                             0, 3, -1, -1},
                            {2, 4});
  // The manual gather: slot base + j of sequence b <- slot base + path[b, j] (old values).
  Tensor want = orig.clone();
  for (int64_t b = 0; b < 2; ++b) {
    const int64_t base = base_len[b].item<int64_t>();
    for (int64_t j = 0; j < 4; ++j) {
      const int64_t src = path[b][j].item<int64_t>();
      if (src < 0) break;
      want.select(-4, b).select(-2, base + j).copy_(orig.select(-4, b).select(-2, base + src));
    }
  }
  const Tensor new_len = kv_rollback(cache, base_len, path);
  EXPECT(at::equal(new_len, longs({4, 5}, {2})), "new_len ", new_len);
  EXPECT(at::equal(cache, want), "cache differs from the manual gather in ",
         (cache != want).sum().item<int64_t>(), " elements");
  // Spot-check one moved row by hand: sequence 1, slot 3 + 1 <- slot 3 + 3, of k, head 1.
  EXPECT(at::equal(cache[0][0][1][1][4], orig[0][0][1][1][6]), "row (k, b=1, h=1, s=4)");
  // Untouched: slots before base_len and the rest of the cache stay as they were.
  EXPECT(at::equal(cache.narrow(-2, 0, 1), orig.narrow(-2, 0, 1)), "slot 0 changed");

  // A half-precision cache whose leading dims are not contiguous (a slice of a bigger one).
  Tensor big = at::arange(3 * 1 * 2 * 2 * 8 * 4, at::kFloat).to(at::kHalf).reshape({3, 1, 2, 2, 8, 4});
  Tensor sliced = big.narrow(0, 1, 2);  // [2, 1, 2, 2, 8, 4]
  Tensor want_half = sliced.clone();
  {
    const Tensor o = sliced.clone();
    for (int64_t b = 0; b < 2; ++b) {
      const int64_t base = base_len[b].item<int64_t>();
      for (int64_t j = 0; j < 4; ++j) {
        const int64_t src = path[b][j].item<int64_t>();
        if (src < 0) break;
        want_half.select(-4, b).select(-2, base + j).copy_(o.select(-4, b).select(-2, base + src));
      }
    }
  }
  const Tensor big_before = big.clone();
  const Tensor nl2 = kv_rollback(sliced, base_len, path);
  EXPECT(at::equal(nl2, longs({4, 5}, {2})), "half new_len ", nl2);
  EXPECT(at::equal(sliced, want_half), "half cache differs from the manual gather");
  EXPECT(at::equal(big.narrow(0, 0, 1), big_before.narrow(0, 0, 1)), "outside the slice changed");
}

// ---- (c2) commit_tokens -------------------------------------------------------------------------

void test_commit_tokens() {
  // Row 0 accepted nodes 2, 3 (tokens 7, 3) then next 8; row 1 accepted nothing (next 6);
  // row 2 accepted node 1 (token 5, an EOS): 5 kept, finished; row 3 has room for one token.
  const Tensor cand = longs({9, 5, 7, 3, 9, 5, 7, 3, 9, 5, 7, 3, 9, 5, 7, 3}, {4, 4});
  const Tensor path = longs({0, 2, 3, -1, 0, -1, -1, -1, 0, 1, -1, -1, 0, 1, 2, 3}, {4, 4});
  const Tensor acc = longs({2, 0, 1, 3}, {4}), next = longs({8, 6, 4, 1}, {4});
  Tensor seq = at::full({4, 10}, -1, at::kLong);
  Tensor total = longs({2, 5, 0, 8}, {4});
  const Tensor counts = commit_tokens(seq, total, cand, path, acc, next, longs({5}, {1}), 9);
  EXPECT(at::equal(counts, longs({3, 1, 1, 1, 0, 0, 1, 1, 2, 0, 1, 3}, {3, 4})), "counts ", counts);
  EXPECT(at::equal(total, longs({5, 6, 1, 9}, {4})), "total ", total);
  const Tensor want = longs({-1, -1, 7, 3, 8, -1, -1, -1, -1, -1,  //
                             -1, -1, -1, -1, -1, 6, -1, -1, -1, -1,  //
                             5, -1, -1, -1, -1, -1, -1, -1, -1, -1,  //
                             -1, -1, -1, -1, -1, -1, -1, -1, 5, -1},
                            {4, 10});
  EXPECT(at::equal(seq, want), "seq ", seq);
  // A path entry past N is refused before anything is written.
  Tensor seq2 = at::zeros({1, 4}, at::kLong), total2 = longs({0}, {1});
  bool threw = false;
  try {
    commit_tokens(seq2, total2, longs({1, 2}, {1, 2}), longs({0, 2}, {1, 2}), longs({1}, {1}),
                  longs({3}, {1}), longs({}, {0}), 4);
  } catch (const c10::Error&) {
    threw = true;
  }
  EXPECT(threw && total2.item<int64_t>() == 0, "commit_tokens with a path entry >= N must throw");
  // All or nothing (issue 23): row 1 has no room, so row 0 is not committed either.
  Tensor seq3 = at::zeros({2, 4}, at::kLong), total3 = longs({0, 4}, {2});
  threw = false;
  try {
    commit_tokens(seq3, total3, longs({1, 2, 1, 2}, {2, 2}), longs({0, 1, 0, 1}, {2, 2}),
                  longs({1, 1}, {2}), longs({3, 3}, {2}), longs({}, {0}), 9);
  } catch (const c10::Error&) {
    threw = true;
  }
  EXPECT(threw && total3[0].item<int64_t>() == 0 && seq3.abs().sum().item<int64_t>() == 0,
         "commit_tokens with a bad row 1 must throw before committing row 0: total ", total3);
}

void test_tree_mask() {
  // Row 0: pad 1, root 3, a chain of 2 nodes; row 1: pad 0, root 5 (S = 8), the same tree.
  const Tensor anc = at::tril(at::ones({2, 2}, at::kBool)).unsqueeze(0);  // [1, 2, 2]
  Tensor out = at::ones({2, 1, 2, 8}, at::kBool);
  tree_mask(out, longs({1, 0}, {2}), longs({3, 5}, {2}), anc);
  const Tensor want = longs({0, 1, 1, 1, 0, 0, 0, 0,  //
                             0, 1, 1, 1, 1, 0, 0, 0,  //
                             1, 1, 1, 1, 1, 1, 0, 0,  //
                             1, 1, 1, 1, 1, 1, 1, 0},
                            {2, 1, 2, 8})
                            .to(at::kBool);
  EXPECT(at::equal(out, want), "tree_mask ", out);
}

// ---- (d) arbiter_score --------------------------------------------------------------------------

void test_arbiter_score() {
  at::manual_seed(1);
  const int64_t M = 6, F = 7, H1 = 16, H2 = 8;
  const Tensor x = at::randn({M, F}), w1 = at::randn({H1, F}) * 0.5, b1 = at::randn({H1}) * 0.1;
  const Tensor w2 = at::randn({H2, H1}) * 0.3, b2 = at::randn({H2}) * 0.1;
  const Tensor w_out2 = at::randn({H2}), w_out1 = at::randn({H1}), b_out = at::randn({1});
  auto d = [](const Tensor& t) { return t.to(at::kDouble); };

  // Two layers, exact-erf gelu.
  {
    const Tensor h1 = at::gelu(at::linear(d(x), d(w1), d(b1)));
    const Tensor h2 = at::gelu(at::linear(h1, d(w2), d(b2)));
    const Tensor want = at::linear(h2, d(w_out2).unsqueeze(0), d(b_out)).squeeze(-1);
    const Tensor got = arbiter_score(x, w1, b1, w2, b2, w_out2, b_out, "gelu");
    EXPECT(got.scalar_type() == at::kFloat && got.sizes() == at::IntArrayRef{M}, "shape/dtype ",
           got.sizes(), " ", got.scalar_type());
    EXPECT(close(got, want), "gelu 2-layer diff ", max_diff(got, want));
    // The same in float32 ATen ops (the composition the brief names).
    const Tensor want32 = at::linear(at::gelu(at::linear(at::gelu(at::linear(x, w1, b1)), w2, b2)),
                                     w_out2.unsqueeze(0), b_out)
                              .squeeze(-1);
    EXPECT(close(got, want32), "gelu 2-layer vs float32 ATen diff ", max_diff(got, want32));
  }
  // One layer, relu.
  {
    const Tensor h1 = at::relu(at::linear(d(x), d(w1), d(b1)));
    const Tensor want = at::linear(h1, d(w_out1).unsqueeze(0), d(b_out)).squeeze(-1);
    const Tensor got =
        arbiter_score(x, w1, b1, std::nullopt, std::nullopt, w_out1, b_out, "relu");
    EXPECT(close(got, want), "relu 1-layer diff ", max_diff(got, want));
  }
  // Half-precision features (weights stay float32): the features are the only rounding.
  {
    const Tensor xh = x.to(at::kHalf);
    const Tensor h1 = at::gelu(at::linear(d(xh), d(w1), d(b1)));
    const Tensor want = at::linear(h1, d(w_out1).unsqueeze(0), d(b_out)).squeeze(-1);
    const Tensor got = arbiter_score(xh, w1, b1, std::nullopt, std::nullopt, w_out1, b_out, "gelu");
    EXPECT(close(got, want), "half features diff ", max_diff(got, want));
  }
}

// ---- (e) bad inputs -----------------------------------------------------------------------------

bool throws_c10(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    if (msg.find(needle) == std::string::npos) {
      std::fprintf(stderr, "  c10::Error without \"%s\": %s\n", needle.c_str(), msg.c_str());
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  not a c10::Error: %s\n", e.what());
    return false;
  }
  return false;
}

// ---- (e) node_features -------------------------------------------------------------------------

// The shared 5-node tree; the target's argmax at nodes 0..4 is 3, 4, 0, 1, 2: node 1 (token 3)
// matches at the root, node 3 (token 4) matches at node 1, node 2 (token 5) does not.
void test_node_features() {
  const Tensor x = onehot_logits({{3, 4, 0, 1, 2}});  // [1, 5, 8]: 5.0 at the argmax
  const Tensor d = at::zeros({1, kN, kV}, at::kFloat);  // a uniform draft
  const Tensor cand = longs(kCands, {1, kN}), par = longs(kParents, {1, kN});
  const Tensor depth = longs({0, 1, 1, 2, 2}, {1, kN}), rank = longs({0, 0, 1, 0, 0}, {1, kN});
  const Tensor f = node_features(x, cand, par, depth, rank, longs({10}, {1}), d, 2);
  EXPECT(f.sizes() == at::IntArrayRef({1, kN, 20}) && f.scalar_type() == at::kFloat, "shape ", f.sizes());
  EXPECT(at::equal(f[0][0], at::zeros({20})), "the root's row is zero: ", f[0][0]);
  const double lse = 5.0 + std::log(std::exp(0.0) * 7.0 / std::exp(5.0) + 1.0);  // log(e^5 + 7)
  auto at2 = [&](int64_t i, int64_t k) { return f[0][i][k].item<double>(); };
  EXPECT(std::abs(at2(1, 0) - (5.0 - lse)) < 1e-5, "t_logp_cand of a match ", at2(1, 0));
  EXPECT(std::abs(at2(2, 0) - (0.0 - lse)) < 1e-5, "t_logp_cand of a mismatch ", at2(2, 0));
  EXPECT(at2(1, 4) == 0.0 && std::abs(at2(2, 4) - std::log(2.0)) < 1e-6, "t_rank ", at2(1, 4), " ", at2(2, 4));
  EXPECT(std::abs(at2(1, 5) + std::log(8.0)) < 1e-5, "d_logp_cand of a uniform draft ", at2(1, 5));
  EXPECT(std::abs(at2(1, 7) - std::log(8.0)) < 1e-5, "d_entropy of a uniform draft ", at2(1, 7));
  EXPECT(at2(1, 10) == 1.0 && at2(3, 10) == 2.0 && at2(2, 11) == 1.0 && at2(3, 12) == 12.0,
         "depth / sibling_rank / position");
  // look-ahead from node 1: its first child is 3 (token 4 = the argmax at 1): one node, accepted
  EXPECT(at2(1, 16) == 1.0 && at2(1, 17) == 1.0, "la from node 1: ", at2(1, 16), " ", at2(1, 17));
  // from node 2: child 4 (token 6, the argmax at 2 is 0): one node, none accepted
  EXPECT(at2(2, 16) == 1.0 && at2(2, 17) == 0.0, "la from node 2: ", at2(2, 16), " ", at2(2, 17));
  EXPECT(at2(3, 16) == 0.0 && at2(3, 18) == 0.0 && at2(3, 19) == 0.0, "a leaf has no look-ahead");
  EXPECT(std::abs(at2(1, 18) - at2(3, 0)) < 1e-6, "la_logp_next is the first child's t_logp_cand");
}

void test_bad_inputs() {
  const Tensor cand = longs(kCands, {1, kN});
  const Tensor logits = onehot_logits({{5, 0, 6, 0, 1}});
  EXPECT(throws_c10([&] {
           verify_tree(cand, longs({0, 0, 0, 1, 2}, {1, kN}), logits, std::nullopt, std::nullopt,
                       0.0, std::nullopt);
         }, "`parents`[0, 0] must be -1"),
         "parents[0] != -1 must throw c10::Error");
  EXPECT(throws_c10([&] {
           verify_tree(cand, longs({-1, 0, 3, 1, 2}, {1, kN}), logits, std::nullopt, std::nullopt,
                       0.0, std::nullopt);
         }, "`parents`[0, 2]"),
         "a parent after its child must throw");
  EXPECT(throws_c10([&] {
           verify_tree(longs({7, 3, 5, 4, 60}, {1, kN}), longs(kParents, {1, kN}), logits,
                       std::nullopt, std::nullopt, 0.0, std::nullopt);
         }, "`candidates`[0, 4]"),
         "a token past V must throw");
  EXPECT(throws_c10([&] {
           verify_tree(cand, longs(kParents, {1, kN}), logits, std::nullopt, std::nullopt, 1.0,
                       std::nullopt);
         }, "uniforms"),
         "sampling without uniforms must throw");
  EXPECT(throws_c10([&] {
           logit_stats(logits, cand, longs({0, 0, 0, 1, 2}, {1, kN}));
         }, "parents"),
         "logit_stats with a bad tree must throw");
  EXPECT(throws_c10([&] {
           Tensor cache = at::zeros({1, 1, 8, 4});
           kv_rollback(cache, longs({0}, {1}), longs({0, 2, 1, -1}, {1, 4}));
         }, "strictly increasing"),
         "kv_rollback with a non-increasing path must throw");
  EXPECT(throws_c10([&] {
           Tensor cache = at::zeros({1, 1, 8, 4});
           kv_rollback(cache, longs({6}, {1}), longs({0, 1, -1, -1}, {1, 4}));
         }, "base_len"),
         "kv_rollback past S must throw");
  EXPECT(throws_c10([&] {
           const Tensor x = at::randn({2, 3}), w1 = at::randn({4, 3}), b1 = at::randn({4});
           arbiter_score(x, w1, b1, std::nullopt, std::nullopt, at::randn({4}), at::randn({1}),
                         "tanh");
         }, "activation"),
         "an unknown activation must throw");
  EXPECT(throws_c10([&] {
           const Tensor x = onehot_logits({{3, 4, 0, 1, 2}});
           const Tensor z = at::zeros({1, kN}, at::kLong);
           node_features(x, cand, longs({-1, 0, 2, 1, 2}, {1, kN}), z, z, longs({0}, {1}), x, 2);
         }, "`parents`[0, 2]"),
         "node_features with a bad tree must throw");
}

}  // namespace

int main() {
  for (const char* op : {"verify_tree", "logit_stats", "arbiter_score", "kv_rollback", "node_features",
                         "commit_tokens", "tree_mask"}) {
    if (!cospec_test::registered(op)) return 1;
  }
  run("verify_tree", test_verify_tree);
  run("logit_stats", test_logit_stats);
  run("logit_stats special rows", test_logit_stats_special_rows);
  run("kv_rollback", test_kv_rollback);
  run("commit_tokens", test_commit_tokens);
  run("tree_mask", test_tree_mask);
  run("arbiter_score", test_arbiter_score);
  run("node_features", test_node_features);
  run("bad_inputs", test_bad_inputs);
  std::printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

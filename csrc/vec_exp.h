// exp over at::vec float vectors for the range a softmax needs, shared by the at::vec kernels
// (logit_stats, tree_attention). Included by per-ISA translation units after they pick the
// instruction set and define COSPEC_VEC_NS, the namespace it lives in.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

namespace cospec::cpu::COSPEC_VEC_NS {

// exp(d) for d in [-88, 0] (d = x - max, clamped), in 12 vector ops instead of exp_u20's ~20:
// d = n ln2 + r with n = round(d / ln2), |r| <= ln2 / 2; exp(r) by the degree-5 polynomial of
// at::vec's exp_u20; 2^n built in the exponent bits. n = -127 (d ~ -88) gives exactly 0, so
// -inf inputs (clamped to -88) add 0.
inline at::vec::Vectorized<float> exp_nonpos(const at::vec::Vectorized<float>& d) {
  using Vec = at::vec::Vectorized<float>;
  using IVec = at::vec::Vectorized<int32_t>;
  const Vec n = (d * Vec(1.44269504088896341f)).round();
  const Vec r = at::vec::fmadd(n, Vec(-0.693147180559945309f), d);
  Vec p = at::vec::fmadd(r, Vec(0.00828929059f), Vec(0.0418978221f));
  p = at::vec::fmadd(r, p, Vec(0.166676521f));
  p = at::vec::fmadd(r, p, Vec(0.499991506f));
  p = at::vec::fmadd(r, p, Vec(0.999999701f));
  p = at::vec::fmadd(r, p, Vec(1.f));
  const IVec bits = (at::vec::convert_to_int_of_same_size(n) + IVec(127)) << IVec(23);
  return p * at::vec::cast<float>(bits);
}

}  // namespace cospec::cpu::COSPEC_VEC_NS

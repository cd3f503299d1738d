// Run-time choice of instruction set for the CPU kernels that are built several
// times (AVX-512, AVX2 + FMA, portable flags): logit_stats, arbiter_score, linear_rows.
#pragma once

namespace cospec::cpu {

enum class Isa { kAvx2, kAvx512 };
bool cpu_has_isa(Isa isa);  // what this CPU can run
// 2: AVX-512, 1: AVX2, 0: portable. The best the CPU runs, capped by the environment
// variable COSPEC_CPU_ISA=avx512|avx2|base (read on each call; callers keep the answer
// in a function-local static, and tests use it to cover every build).
int cpu_isa_level();

// The one of three per-ISA kernel tables this CPU runs, chosen on the first call.
template <typename Kernels>
const Kernels& pick_isa(const Kernels& avx512, const Kernels& avx2, const Kernels& base) {
  static const int level = cpu_isa_level();
  return level == 2 ? avx512 : level == 1 ? avx2 : base;
}

}  // namespace cospec::cpu

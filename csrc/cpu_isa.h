// Run-time choice of instruction set for the CPU kernels that are built several
// times (AVX-512, AVX2 + FMA, portable flags): logit_stats and arbiter_score.
#pragma once

namespace cospec::cpu {

enum class Isa { kAvx2, kAvx512 };
bool cpu_has_isa(Isa isa);  // what this CPU can run
// 2: AVX-512, 1: AVX2, 0: portable. The best the CPU runs, capped by the environment
// variable COSPEC_CPU_ISA=avx512|avx2|base (read on each call; callers keep the answer
// in a function-local static, and tests use it to cover every build).
int cpu_isa_level();

}  // namespace cospec::cpu

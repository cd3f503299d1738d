// The CPU-feature probe behind cpu_isa.h; built with the portable flags.
#include "cpu_isa.h"

#include <algorithm>
#include <cstdlib>
#include <string>

namespace cospec::cpu {

bool cpu_has_isa(Isa isa) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (isa == Isa::kAvx2) return avx2;
  return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
  (void)isa;
  return false;
#endif
}

int cpu_isa_level() {
  int level = cpu_has_isa(Isa::kAvx512) ? 2 : cpu_has_isa(Isa::kAvx2) ? 1 : 0;
  if (const char* cap = std::getenv("COSPEC_CPU_ISA")) {
    const std::string c(cap);
    level = std::min(level, c == "base" ? 0 : c == "avx2" ? 1 : 2);
  }
  return level;
}

}  // namespace cospec::cpu

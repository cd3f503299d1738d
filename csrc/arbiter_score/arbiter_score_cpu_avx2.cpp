// The at::vec tile kernel of arbiter_score built for AVX2 + FMA; only called after
// cpu_has_isa(kAvx2) said yes, so the rest of the library keeps portable flags.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma,f16c")
// The pragma enables code generation but not the feature macros that at::vec and
// sleef.h test, so this file states them.
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#ifndef __F16C__
#define __F16C__ 1
#endif
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#else
#define CPU_CAPABILITY DEFAULT
#endif
#define COSPEC_VEC_NS avx2

#include "arbiter_score_cpu_isa.inc"

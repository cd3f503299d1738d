// Include first in a translation unit built for AVX2 + FMA + F16C (the *_avx2.cpp
// files). The target pragma enables code generation for the rest of the file but
// not the feature macros that at::vec and sleef.h test, so they are stated here.
// Such code only runs after cpu_has_isa(Isa::kAvx2) (cpu_isa.h) said yes; the rest
// of the library keeps the portable flags.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx2,fma,f16c")
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
#ifndef CPU_CAPABILITY
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#endif
#else
#define CPU_CAPABILITY DEFAULT
#endif

// Include first in a translation unit built for AVX-512 (F, BW, DQ, VL) on top of
// AVX2 (the *_avx512.cpp files); see isa_avx2.h. Such code only runs after
// cpu_has_isa(Isa::kAvx512) said yes.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#ifndef __AVX512F__
#define __AVX512F__ 1
#endif
#ifndef __AVX512BW__
#define __AVX512BW__ 1
#endif
#ifndef __AVX512DQ__
#define __AVX512DQ__ 1
#endif
#ifndef __AVX512VL__
#define __AVX512VL__ 1
#endif
#include "isa_avx2.h"
#else
#define CPU_CAPABILITY DEFAULT
#endif

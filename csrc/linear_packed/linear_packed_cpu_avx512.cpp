// The linear_packed panel kernel built for AVX-512 (see ../isa_avx512.h).
#include "../isa_avx512.h"
#define COSPEC_VEC_NS avx512

#include "linear_packed_cpu_isa.inc"

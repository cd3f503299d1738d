// The at::vec tile kernel of arbiter_score built for AVX-512 (see ../isa_avx512.h).
#include "../isa_avx512.h"
#define COSPEC_VEC_NS avx512

#include "arbiter_score_cpu_isa.inc"

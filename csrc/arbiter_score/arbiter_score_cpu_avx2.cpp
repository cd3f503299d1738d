// The at::vec tile kernel of arbiter_score built for AVX2 + FMA (see ../isa_avx2.h).
#include "../isa_avx2.h"
#define COSPEC_VEC_NS avx2

#include "arbiter_score_cpu_isa.inc"

// The at::vec row kernel of logit_stats built for AVX2 + FMA (see ../isa_avx2.h).
#include "../isa_avx2.h"
#define COSPEC_VEC_NS avx2

#include "logit_stats_cpu_isa.inc"

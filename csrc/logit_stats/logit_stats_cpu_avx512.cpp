// The at::vec row kernel of logit_stats built for AVX-512 (see ../isa_avx512.h).
#include "../isa_avx512.h"
#define COSPEC_VEC_NS avx512

#include "logit_stats_cpu_isa.inc"

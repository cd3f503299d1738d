// The at::vec kernels of arbiter_score with the portable build flags: the
// fallback for CPUs without AVX2.
#define CPU_CAPABILITY DEFAULT
#define COSPEC_VEC_NS base

#include "arbiter_score_cpu_isa.inc"

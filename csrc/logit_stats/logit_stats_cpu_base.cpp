// The at::vec row kernel of logit_stats with the portable build flags: the
// fallback for CPUs without AVX2. (The cpu_has_isa() probe is in ../cpu_isa.cpp.)
#define CPU_CAPABILITY DEFAULT
#define COSPEC_VEC_NS base

#include "logit_stats_cpu_isa.inc"

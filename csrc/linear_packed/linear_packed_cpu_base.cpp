// The linear_packed panel kernel with the portable build flags: the fallback for CPUs
// without AVX2.
#define CPU_CAPABILITY DEFAULT
#define COSPEC_VEC_NS base

#include "linear_packed_cpu_isa.inc"

// The tree_attention kernel with the portable build flags: the fallback for CPUs without AVX2.
#define CPU_CAPABILITY DEFAULT
#define COSPEC_VEC_NS base

#include "tree_attention_cpu_isa.inc"

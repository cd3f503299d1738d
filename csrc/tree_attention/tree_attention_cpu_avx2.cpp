// The tree_attention kernel built for AVX2 + FMA (see ../isa_avx2.h).
#include "../isa_avx2.h"
#define COSPEC_VEC_NS avx2

#include "tree_attention_cpu_isa.inc"

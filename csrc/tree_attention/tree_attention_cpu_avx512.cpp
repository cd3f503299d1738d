// The tree_attention kernel built for AVX-512 (see ../isa_avx512.h).
#include "../isa_avx512.h"
#define COSPEC_VEC_NS avx512

#include "tree_attention_cpu_isa.inc"

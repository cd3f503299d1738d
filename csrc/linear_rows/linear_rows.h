// Torch-free core of cospec::linear_rows, y = x W^T + b for a handful of rows of x:
//
//   x    float [M, K]  (row stride ldx; the launcher widens 16-bit inputs to float)
//   W    T     [N, K]  (float, bfloat16 or float16; row stride ldw, unit stride in K)
//   bias float [N] or null
//   y    float [M, N]  (row stride ldo),  y[m, n] = sum_k x[m, k] W[n, k] + bias[n]
//
// Decoding with a verification tree multiplies M = 1..16 rows by every weight matrix of the
// model; for weights past the caches the time is the bytes of W over the memory bandwidth,
// whatever M is, provided W is read once. The kernel does that with register tiles: MR rows
// of x (MR <= 8 with AVX-512, 4 with AVX2) against NR rows of W, MR * NR vector accumulators
// over K, so each vector of W loaded from memory feeds MR fused multiply-adds; more rows run as
// several row blocks over each W tile while it is in L1. Accumulation is in float32; each
// accumulator is summed across lanes once, at the end of K.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

#include "../cpu_isa.h"

namespace cospec::cpu {

// Computes y[m, n] for m in [0, M), n in [n0, n1) (y and bias indexed by the absolute n).
template <typename T>
using LinearRowsFn = void (*)(const float* x, int64_t ldx, int64_t M, int64_t K, const T* w,
                              int64_t ldw, const float* bias, int64_t n0, int64_t n1, float* y,
                              int64_t ldo);

struct LinearRowsKernels {
  LinearRowsFn<float> f32;
  LinearRowsFn<c10::BFloat16> bf16;
  LinearRowsFn<c10::Half> f16;
};

// One set per instruction-set build (linear_rows_cpu_{avx512,avx2,base}.cpp).
extern const LinearRowsKernels linear_rows_kernels_avx512;
extern const LinearRowsKernels linear_rows_kernels_avx2;
extern const LinearRowsKernels linear_rows_kernels_base;

// The best set this CPU runs (cpu_isa_level(), capped by COSPEC_CPU_ISA), chosen once.
inline const LinearRowsKernels& linear_rows_kernels() {
  return pick_isa(linear_rows_kernels_avx512, linear_rows_kernels_avx2, linear_rows_kernels_base);
}

}  // namespace cospec::cpu

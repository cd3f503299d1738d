// Torch-free core of cospec::linear_packed, y = x W^T + b with W pre-packed in column panels:
//
//   x       float [M, K]           (row stride ldx, unit stride along K)
//   packed  float [P, K, kPanel]   packed[p, k, c] = W[p * kPanel + c, k], 0 where that row >= N
//   y       float [M, N]           (row stride ldo),  y[m, n] = sum_k x[m, k] W[n, k]
//
// For a verification forward of many tokens on the CPU (a batch-8 tree: 48 rows; a prefill):
// there the product is bound by the FMA units, not by reading W, and linear_rows' dot-product
// tiles pay a lane sum per output. Here each k step loads one row of a panel (kPanel columns,
// contiguous) and multiplies it by a broadcast x[m, k] for MR rows of x: MR * kPanel / lanes
// vector accumulators (AVX-512: 8 rows x 3 vectors), no lane sums, no K chunks. A panel is
// read from memory by the first row block and from L2 by the others, while the next panel is
// prefetched, spread over the row blocks.
#pragma once

#include <cstdint>

#include "../cpu_isa.h"

namespace cospec::cpu {

constexpr int64_t kPanel = 48;  // columns per panel: 3 AVX-512 vectors, 6 AVX2 vectors

// Computes y[m, n] for every m and the columns of panels [p0, p1) (y indexed by absolute n).
using LinearPackedFn = void (*)(const float* x, int64_t ldx, int64_t M, int64_t K,
                                const float* packed, int64_t N, int64_t p0, int64_t p1, float* y,
                                int64_t ldo);

struct LinearPackedKernels {
  LinearPackedFn f32;
};

// One per instruction-set build (linear_packed_cpu_{avx512,avx2,base}.cpp).
extern const LinearPackedKernels linear_packed_kernels_avx512;
extern const LinearPackedKernels linear_packed_kernels_avx2;
extern const LinearPackedKernels linear_packed_kernels_base;

inline const LinearPackedKernels& linear_packed_kernels() {
  return pick_isa(linear_packed_kernels_avx512, linear_packed_kernels_avx2,
                  linear_packed_kernels_base);
}

}  // namespace cospec::cpu

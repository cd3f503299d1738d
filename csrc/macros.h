// Torch-free helpers shared by host (CPU) and device (CUDA) code.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define COSPEC_HD __host__ __device__ __forceinline__
#else
#define COSPEC_HD inline
#endif

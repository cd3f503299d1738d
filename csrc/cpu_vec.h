// The vector type of the CPU projection kernels (linear_rows, linear_packed): `V`, float32
// lanes of the instruction set the including translation unit was built for
// (CPU_CAPABILITY_AVX512: 16 lanes, 32 registers; CPU_CAPABILITY_AVX2: 8 lanes, 16 registers;
// neither: one portable "lane"). Loads of float, bfloat16 and float16 (whole or the first r
// lanes), broadcast, fused multiply-add, lane sum, stores (whole or the first r lanes). The
// including file defines COSPEC_VEC_NS, the namespace V lives in.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

namespace cospec::cpu::COSPEC_VEC_NS {

#if defined(CPU_CAPABILITY_AVX512)
// 16 float lanes. Partial vectors: the first r lanes, the rest zero.
struct V {
  using R = __m512;
  static constexpr int64_t L = 16;
  static constexpr int kRegs = 32;
  static R zero() { return _mm512_setzero_ps(); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static void pin(R& a) { __asm__("" : "+v"(a)); }  // keep a in a register (see kRows)
  static float sum(R a) { return _mm512_reduce_add_ps(a); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static R bcast(const float* p) { return _mm512_set1_ps(*p); }
  static void store(float* p, R a) { _mm512_storeu_ps(p, a); }
  static void store(float* p, R a, int64_t r) { _mm512_mask_storeu_ps(p, mask(r), a); }  // first r lanes
  static R load(const c10::BFloat16* p) {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
  }
  static R load(const c10::Half* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __mmask16 mask(int64_t r) { return static_cast<__mmask16>((1u << r) - 1u); }
  static R load(const float* p, int64_t r) { return _mm512_maskz_loadu_ps(mask(r), p); }
  static R load(const c10::BFloat16* p, int64_t r) {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask(r), p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
  }
  static R load(const c10::Half* p, int64_t r) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask(r), p));
  }
};
#elif defined(CPU_CAPABILITY_AVX2)
// 8 float lanes.
struct V {
  using R = __m256;
  static constexpr int64_t L = 8;
  static constexpr int kRegs = 16;
  static R zero() { return _mm256_setzero_ps(); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static void pin(R& a) { __asm__("" : "+x"(a)); }
  static float sum(R a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static R bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static void store(float* p, R a) { _mm256_storeu_ps(p, a); }
  static void store(float* p, R a, int64_t r) {  // the first r lanes
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r)), idx), a);
  }
  static R widen_bf16(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static R load(const c10::BFloat16* p) {
    return widen_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static R load(const c10::Half* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static R load(const float* p, int64_t r) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r)), idx));
  }
  static __m128i load16(const void* p, int64_t r) {
    uint16_t buf[8] = {};
    std::memcpy(buf, p, static_cast<size_t>(r) * 2);
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(buf));
  }
  static R load(const c10::BFloat16* p, int64_t r) { return widen_bf16(load16(p, r)); }
  static R load(const c10::Half* p, int64_t r) { return _mm256_cvtph_ps(load16(p, r)); }
};
#else
// The portable build: one float "lane"; the compiler vectorises what it can.
struct V {
  using R = float;
  static constexpr int64_t L = 1;
  static constexpr int kRegs = 16;
  static R zero() { return 0.f; }
  static R fma(R a, R b, R c) { return a * b + c; }
  static void pin(R&) {}
  static float sum(R a) { return a; }
  static R bcast(const float* p) { return *p; }
  static void store(float* p, R a) { *p = a; }
  static void store(float* p, R a, int64_t) { *p = a; }
  template <typename T>
  static R load(const T* p) { return static_cast<float>(*p); }
  template <typename T>
  static R load(const T* p, int64_t) { return static_cast<float>(*p); }
};
#endif

}  // namespace cospec::cpu::COSPEC_VEC_NS

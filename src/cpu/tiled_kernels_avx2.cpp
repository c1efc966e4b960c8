// The AVX2 + FMA kernel set (8 floats per vector). Compiled for that instruction set
// through a target pragma, so the rest of the library keeps the baseline ISA.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/philox.h"
#include "cpu/tiled_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define TILEFLASH_HAVE_AVX2_KERNELS 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include <immintrin.h>

namespace tileflash::cpu::tiled {
namespace avx2 {

#define TILEFLASH_TARGET __attribute__((target("avx2,fma")))

struct Vec {
  static constexpr int width = 8;
  __m256 v;

  TILEFLASH_TARGET static Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  TILEFLASH_TARGET void store(float* p) const { _mm256_storeu_ps(p, v); }
  TILEFLASH_TARGET static Vec broadcast(float x) { return {_mm256_set1_ps(x)}; }
  TILEFLASH_TARGET static Vec zero() { return {_mm256_setzero_ps()}; }
  TILEFLASH_TARGET friend Vec operator+(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
  TILEFLASH_TARGET friend Vec operator-(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
  TILEFLASH_TARGET friend Vec operator*(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
  TILEFLASH_TARGET friend Vec fma(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
  TILEFLASH_TARGET friend Vec max(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
  TILEFLASH_TARGET float reduce_max() const {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
  TILEFLASH_TARGET float reduce_add() const {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
  // As the AVX-512 version: 2^x = 2^n 2^f with n = round(x), |f| <= 1/2, 2^f by a
  // degree-5 polynomial (relative error 1.7e-7); arguments below -125 (and -inf) give
  // exactly 0, p(0) = 1 exactly.
  TILEFLASH_TARGET Vec exp2() const {
    const __m256 valid = _mm256_cmp_ps(v, _mm256_set1_ps(-125.0f), _CMP_GE_OQ);
    const __m256 x = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-125.0f)), _mm256_set1_ps(127.0f));
    const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(x, n);
    __m256 p = _mm256_set1_ps(1.326469874e-3f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.671508809e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550733776e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402224215e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931469776e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return {_mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(exponent)), valid)};
  }
  TILEFLASH_TARGET Vec exp() const { return Vec{_mm256_mul_ps(v, _mm256_set1_ps(kLog2E))}.exp2(); }
  static constexpr float kLog2E = 1.44269504088896341f;
};

constexpr int kRowBlock = 6;
constexpr int kColVectors = 2;

#include "cpu/tiled_kernels.inl"
#undef TILEFLASH_TARGET

}  // namespace avx2
}  // namespace tileflash::cpu::tiled

#pragma GCC pop_options
#endif

namespace tileflash::cpu::tiled {

const KernelSet& avx2_kernels() {
#if defined(TILEFLASH_HAVE_AVX2_KERNELS)
  static const KernelSet set{"avx2", avx2::Vec::width, avx2::forward_tile, avx2::backward_tile};
  return set;
#else
  return scalar_kernels();
#endif
}

}  // namespace tileflash::cpu::tiled

// The 16-float AVX-512 vector the AVX-512 and AMX kernel sets share, included inside each
// set's namespace after it defines TILEFLASH_TARGET (its instruction-set attribute).

struct Vec {
  static constexpr int width = 16;
  __m512 v;

  TILEFLASH_TARGET static Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  TILEFLASH_TARGET void store(float* p) const { _mm512_storeu_ps(p, v); }
  TILEFLASH_TARGET static Vec broadcast(float x) { return {_mm512_set1_ps(x)}; }
  TILEFLASH_TARGET static Vec zero() { return {_mm512_setzero_ps()}; }
  TILEFLASH_TARGET friend Vec operator+(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
  TILEFLASH_TARGET friend Vec operator-(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
  TILEFLASH_TARGET friend Vec operator*(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
  TILEFLASH_TARGET friend Vec fma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  TILEFLASH_TARGET friend Vec max(Vec a, Vec b) { return {_mm512_max_ps(a.v, b.v)}; }
  TILEFLASH_TARGET float reduce_max() const { return _mm512_reduce_max_ps(v); }
  TILEFLASH_TARGET float reduce_add() const { return _mm512_reduce_add_ps(v); }
  // 2^x = 2^n 2^f with n = round(x), |f| <= 1/2 (vreduceps gives f = x - round(x) in one
  // instruction), 2^f by a degree-5 polynomial fitted for relative error (1.7e-7 in fp32,
  // as the degree-6 Taylor polynomial of e^r it replaced). p(0) = 1 exactly: a row whose
  // maximum did not change gets a rescale factor of exactly 1. Below -125 (and for -inf
  // or NaN) the result is exactly 0: the masked scalef writes no lane there, so -inf
  // gives no NaN and no result is denormal (a microcode assist on every such vector).
  TILEFLASH_TARGET Vec exp2() const {
    const __mmask16 normal = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-125.0f), _CMP_GE_OQ);
    const __m512 f = _mm512_reduce_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 p = _mm512_set1_ps(1.326469874e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.671508809e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550733776e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402224215e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931469776e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return {_mm512_maskz_scalef_ps(normal, p, _mm512_sub_ps(v, f))};
  }
  // e^x = 2^(x log2 e): 0 below about -86.6. Callers with a product to form first fold
  // log2 e into it and call exp2.
  TILEFLASH_TARGET Vec exp() const { return Vec{_mm512_mul_ps(v, _mm512_set1_ps(kLog2E))}.exp2(); }
  static constexpr float kLog2E = 1.44269504088896341f;
};

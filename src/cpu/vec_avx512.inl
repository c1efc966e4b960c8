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
  // As the AVX2 version: 2^n times a degree-6 Taylor polynomial of e^r; x < -87 gives 0.
  // No clamping: scalef saturates the exponent itself, and the mask zeroes what a
  // -inf argument turns into NaN.
  TILEFLASH_TARGET Vec exp() const {
    const __mmask16 valid = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
    const __m512 x = v;
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return {_mm512_maskz_mov_ps(valid, _mm512_scalef_ps(p, n))};

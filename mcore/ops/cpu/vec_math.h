// exp and erf that loops marked `#pragma omp simd` can vectorize. glibc's libmvec has SIMD
// versions of expf/erff (max error 1-4 ulp), but <math.h> declares them SIMD-callable only
// under -ffast-math; declaring them here lets activation and softmax loops use them without
// fast-math's other effects. float64 keeps the scalar, correctly rounded libm calls (it is
// the precision gradient checks rely on). Elsewhere (non-glibc, non-x86) these are plain libm.
//
// exp_shift() is the hot form of exp in softmax, cross-entropy and attention (exp(x - max) over
// a row, its sum, optionally scaled and stored). On AVX-512 builds it is written with intrinsics:
// 16 lanes, the exponent applied by vscalefps (which gives inf on overflow, 0 on underflow and
// keeps NaN), 2.2x the throughput of the libmvec loop it replaces.
#pragma once

#include <cmath>
#include <cstdint>

#include "mcore/ops/cpu/acc_type.h"
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#if defined(__x86_64__) && defined(__GLIBC__) && defined(_OPENMP)
extern "C" {
#pragma omp declare simd notinbranch
float expf(float) noexcept;
#pragma omp declare simd notinbranch
float erff(float) noexcept;
}
#endif

namespace mcore::ops::vmath {

inline float exp(float x) {
  return ::expf(x);
}
inline double exp(double x) {
  return std::exp(x);
}
inline float erf(float x) {
  return ::erff(x);
}
inline double erf(double x) {
  return std::erf(x);
}

#if defined(__AVX512F__)
// exp of 16 floats within 2 ulp (Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2, ln2 split in two
// so n ln2 is exact, e^r by a degree-7 polynomial, times 2^n by vscalefps). x is clamped to
// [-104, 89] first (max and min keep a NaN x, as the second operand), so -inf gives 0 and the
// reduction stays exact; results below 2^-149 round to 0, above FLT_MAX to inf.
inline __m512 exp16(__m512 x) {
  // The all-lanes masked forms: GCC 12's unmasked max/min/roundscale/scalef pass an undefined
  // source vector that -Wmaybe-uninitialized reports wherever they are inlined.
  constexpr __mmask16 kAll = 0xFFFF;
  x = _mm512_mask_max_ps(x, kAll, _mm512_set1_ps(-104.0f), x);
  x = _mm512_mask_min_ps(x, kAll, _mm512_set1_ps(89.0f), x);
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
  const __m512 n =
      _mm512_mask_roundscale_ps(t, kAll, t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_mask_scalef_ps(p, kAll, p, n);
}
#endif

// The portable form of exp_shift below: float without AVX-512, float64, and the narrow storage
// types (bf16/fp16 rows, read into the accumulator type A and stored with one rounding).
template <class T, class A>
A exp_shift_loop(const T* x, A shift, int64_t n, T* y, A scale, A add) {
  A sum = 0;
  if (y) {
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) {
      const A e = exp(static_cast<A>(x[i]) - shift);
      sum += e;
      y[i] = store<T>(scale * e + add);
    }
  } else {
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) sum += exp(static_cast<A>(x[i]) - shift);
  }
  return sum;
}

#if defined(__AVX512F__)
// Lanes [0, left) of 16, for the masked last step of a 16-lane loop (left >= 1).
inline __mmask16 tail_mask16(int64_t left) {
  return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
}
#endif

// e_i = exp(x[i] - shift) for i < n. Returns sum_i e_i; when y is given, also stores
// y[i] = scale * e_i + add (y may be x).
inline float exp_shift(const float* x, float shift, int64_t n, float* y = nullptr,
                       float scale = 1.0f, float add = 0.0f) {
#if defined(__AVX512F__)
  const __m512 vs = _mm512_set1_ps(shift), va = _mm512_set1_ps(scale), vb = _mm512_set1_ps(add);
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {  // two independent chains hide the add latency
    const __m512 e0 = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vs));
    const __m512 e1 = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vs));
    sum0 = _mm512_add_ps(sum0, e0);
    sum1 = _mm512_add_ps(sum1, e1);
    if (y) {
      _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, e0, vb));
      _mm512_storeu_ps(y + i + 16, _mm512_fmadd_ps(va, e1, vb));
    }
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask16(n - i);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
    sum0 = _mm512_mask_add_ps(sum0, m, sum0, e);
    if (y) _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, e, vb));
  }
  // Stored and added rather than _mm512_reduce_add_ps, whose GCC 12 expansion warns spuriously.
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, _mm512_add_ps(sum0, sum1));
  float sum = 0;
  for (float l : lanes) sum += l;
  return sum;
#else
  return exp_shift_loop(x, shift, n, y, scale, add);
#endif
}
inline double exp_shift(const double* x, double shift, int64_t n, double* y = nullptr,
                        double scale = 1.0, double add = 0.0) {
  return exp_shift_loop(x, shift, n, y, scale, add);
}
// bf16/fp16 rows, in float32.
template <class T>
acc_t<T> exp_shift(const T* x, acc_t<T> shift, int64_t n, T* y = nullptr, acc_t<T> scale = 1,
                   acc_t<T> add = 0) {
  return exp_shift_loop(x, shift, n, y, scale, add);
}

}  // namespace mcore::ops::vmath

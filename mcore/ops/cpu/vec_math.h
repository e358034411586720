// exp and erf that loops marked `#pragma omp simd` can vectorize. float exp is written out here,
// branch-free, so the compiler inlines it into those loops at their full vector width: the
// libmvec call it replaces (the 8-wide AVX2 expf, chosen by GCC's 256-bit preference) took 20%
// of attention's time and most of the softmax and cross-entropy passes. erf uses glibc's libmvec
// SIMD erff (max error 1-4 ulp): <math.h> declares it SIMD-callable only under -ffast-math, so it
// is declared here, which lets loops use it without fast-math's other effects. float64 keeps the
// scalar, correctly rounded libm calls (the precision gradient checks rely on). Elsewhere
// (non-glibc, non-x86) erf is plain libm.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#if defined(__x86_64__) && defined(__GLIBC__) && defined(_OPENMP)
extern "C" {
#pragma omp declare simd notinbranch
float expf(float) noexcept;
#pragma omp declare simd notinbranch
float erff(float) noexcept;
}
#endif

namespace mcore::ops::vmath {

// exp(x) within 2 ulp of the correctly rounded value for normal results (tested against
// float64 std::exp over the whole range): x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two
// parts so n ln2 is exact), e^r by Cephes' degree-7 polynomial, then scaled by 2^n built in the
// exponent bits. Results below FLT_MIN are flushed to zero (as FTZ compute threads would), exp of
// -inf is 0, of +inf or x > 88.72 is inf, and NaN stays NaN.
inline float exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: (t + kRound) - kRound rounds t to an integer
  float xc = x > 88.75f ? 88.75f : x;
  xc = xc < -87.5f ? -87.5f : xc;
  const float n = (xc * kLog2e + kRound) - kRound;
  float r = xc - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n for n in [-126, 128]: 2^128 is not a float, so n = 128 scales by 2^127 and then by 2.
  int32_t ni = static_cast<int32_t>(n);
  const float extra = ni > 127 ? 2.0f : 1.0f;
  ni = ni > 127 ? 127 : ni;
  const float scale = std::bit_cast<float>(static_cast<uint32_t>(ni + 127) << 23);
  const float y = p * scale * extra;
  return x < -87.5f ? 0.0f : y;
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

}  // namespace mcore::ops::vmath

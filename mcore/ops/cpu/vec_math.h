// exp and erf that loops marked `#pragma omp simd` can vectorize. glibc's libmvec has SIMD
// versions of expf/erff (max error 1-4 ulp), but <math.h> declares them SIMD-callable only
// under -ffast-math; declaring them here lets activation and softmax loops use them without
// fast-math's other effects. float64 keeps the scalar, correctly rounded libm calls (it is
// the precision gradient checks rely on). Elsewhere (non-glibc, non-x86) these are plain libm.
#pragma once

#include <cmath>

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

}  // namespace mcore::ops::vmath

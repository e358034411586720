// vmath::exp_shift (mcore/ops/cpu/vec_math.h), the exp behind softmax, cross-entropy and
// attention: against float64 std::exp over the whole float range, at every tail length, with
// the special values the callers rely on (exp(-inf) = 0 for masked scores). This file is built
// with the library's -march=native when MCORE_NATIVE is on, so on AVX-512 machines it tests the
// intrinsics path the library runs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "mcore/ops/cpu/vec_math.h"

namespace mcore::ops {
namespace {

// Error of y against the float64 value in units of the float spacing at the exact result.
double ulp_error(float y, double exact) {
  const float rf = static_cast<float>(exact);
  // In float64: the spacing of small floats is itself below FLT_MIN, which FTZ would flush.
  const double ulp =
      static_cast<double>(std::nextafter(rf, std::numeric_limits<float>::infinity())) - rf;
  return std::fabs(static_cast<double>(y) - exact) / ulp;
}

TEST(VecMath, ExpShiftWithinTwoUlpOverTheFloatRange) {
#if defined(__AVX512F__)
  std::printf("testing the AVX-512 path\n");
#else
  std::printf("testing the portable path\n");
#endif
  // Every 4099th bit pattern of the finite floats in [-110, 95] (about 260k values), shifted.
  std::vector<float> x;
  for (uint64_t b = 0; b <= 0xFFFFFFFFull; b += 4099) {
    float v;
    const uint32_t u = static_cast<uint32_t>(b);
    std::memcpy(&v, &u, 4);
    if (std::isfinite(v) && v > -110.0f && v < 95.0f) x.push_back(v);
  }
  ASSERT_GT(x.size(), 100000u);
  std::vector<float> y(x.size());
  const float shift = 0.0f;
  vmath::exp_shift(x.data(), shift, static_cast<int64_t>(x.size()), y.data());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double exact = std::exp(static_cast<double>(x[i]));
    if (exact > std::numeric_limits<float>::max()) {
      EXPECT_TRUE(std::isinf(y[i]) && y[i] > 0) << "exp(" << x[i] << ") = " << y[i];
    } else if (exact < std::numeric_limits<float>::min()) {
      // Below the normal range: 0 or a denormal, never more than FLT_MIN.
      EXPECT_LE(y[i], std::numeric_limits<float>::min()) << "exp(" << x[i] << ")";
      EXPECT_GE(y[i], 0.0f);
    } else {
      const double err = ulp_error(y[i], exact);
      worst = std::max(worst, err);
      ASSERT_LE(err, 2.0) << "exp(" << x[i] << ") = " << y[i] << ", exact " << exact;
    }
  }
  std::printf("worst error %.3f ulp over %zu values\n", worst, x.size());
}

TEST(VecMath, ExpShiftSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x = {-inf, inf, nan, 0.0f, -0.0f, 1.0f, -1e30f, 1e30f};
  std::vector<float> y(x.size());
  vmath::exp_shift(x.data(), 0.0f, static_cast<int64_t>(x.size()), y.data());
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_TRUE(std::isinf(y[1]) && y[1] > 0);
  EXPECT_TRUE(std::isnan(y[2]));
  EXPECT_EQ(y[3], 1.0f);
  EXPECT_EQ(y[4], 1.0f);
  EXPECT_NEAR(y[5], std::exp(1.0), 2e-7 * std::exp(1.0));
  EXPECT_EQ(y[6], 0.0f);
  EXPECT_TRUE(std::isinf(y[7]));
}

// Every length from 0 to 70 covers the 32-wide main loop and each masked tail; the sum, the
// in-place form (y == x) and scale/add must match a float64 loop, and nothing past n is written.
// The reference takes x - shift rounded to float, as the kernel does, so the bound is exp's.
TEST(VecMath, ExpShiftTailsSumsAndAffineStore) {
  for (int64_t n = 0; n <= 70; ++n) {
    std::vector<float> x(n + 4);
    for (int64_t i = 0; i < n + 4; ++i) x[i] = static_cast<float>(std::sin(0.7 * i) * 6.0);
    const float shift = 2.5f, scale = -0.75f, add = 0.125f;
    std::vector<float> y(n + 4, 42.0f);
    const float sum = vmath::exp_shift(x.data(), shift, n, y.data(), scale, add);
    const float sum_only = vmath::exp_shift(x.data(), shift, n);
    double ref_sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double e = std::exp(static_cast<double>(x[i] - shift));
      ref_sum += e;
      EXPECT_NEAR(y[i], scale * e + add, 4e-7 * (std::fabs(scale * e) + std::fabs(add)))
          << "n " << n << " i " << i;
    }
    for (int64_t i = n; i < n + 4; ++i) EXPECT_EQ(y[i], 42.0f) << "wrote past n = " << n;
    EXPECT_NEAR(sum, ref_sum, 1e-6 * ref_sum + 1e-30) << "n " << n;
    EXPECT_EQ(sum, sum_only) << "n " << n;
    std::vector<float> z(x.begin(), x.end());
    vmath::exp_shift(z.data(), shift, n, z.data());
    for (int64_t i = 0; i < n; ++i) {
      const double e = std::exp(static_cast<double>(x[i] - shift));
      EXPECT_NEAR(z[i], e, 3e-7 * e);
    }
  }
}

}  // namespace
}  // namespace mcore::ops

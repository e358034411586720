// mcore's fp32 GEMM kernels, AVX-512 (mcore/ops/cpu/sgemm_avx512.h) and AMX bf16x6
// (sgemm_amx.h), each against a float64 naive reference and against the OpenBLAS path: all four
// transpose combinations, odd sizes that leave partial register tiles and cache blocks, padded
// leading dimensions, and BLAS alpha/beta semantics (beta == 0 must overwrite NaNs in C without
// reading them). The AMX kernel must also match fp32's accuracy and its infinities and NaNs.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "mcore/ops/cpu/blas.h"
#include "mcore/ops/cpu/sgemm_amx.h"
#include "mcore/ops/cpu/sgemm_avx512.h"

namespace mcore::ops::cpu {
namespace {

struct Case {
  int64_t m, n, k;
  bool ta, tb;
  int64_t pad = 0;  // extra elements per stored row of A, B and C
};

std::string name(const Case& c) {
  return std::to_string(c.m) + "x" + std::to_string(c.n) + "x" + std::to_string(c.k) +
         (c.ta ? " A^T" : "") + (c.tb ? " B^T" : "") + " pad " + std::to_string(c.pad);
}

// Operands stored as BLAS sees them: op(A) is m x k, stored k x m when transposed.
struct Operands {
  int64_t lda, ldb, ldc;
  std::vector<float> a, b, c;
  float at(int64_t i, int64_t p, const Case& cs) const {
    return cs.ta ? a[p * lda + i] : a[i * lda + p];
  }
  float bt(int64_t p, int64_t j, const Case& cs) const {
    return cs.tb ? b[j * ldb + p] : b[p * ldb + j];
  }
};

Operands make(const Case& cs, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Operands o;
  const int64_t a_rows = cs.ta ? cs.k : cs.m, a_cols = cs.ta ? cs.m : cs.k;
  const int64_t b_rows = cs.tb ? cs.n : cs.k, b_cols = cs.tb ? cs.k : cs.n;
  o.lda = a_cols + cs.pad, o.ldb = b_cols + cs.pad, o.ldc = cs.n + cs.pad;
  o.a.resize(a_rows * o.lda), o.b.resize(b_rows * o.ldb), o.c.resize(cs.m * o.ldc);
  for (float& x : o.a) x = u(gen);
  for (float& x : o.b) x = u(gen);
  for (float& x : o.c) x = u(gen);
  return o;
}

// Checks c against alpha * op(A) op(B) + beta * c0 computed in float64, elementwise within
// rtol * (|alpha| sum_p |a||b| + |beta c0|): the bound scales with the magnitudes fp32 summation
// actually rounds, so it holds for any K and sign pattern. Padding past n must be untouched.
void expect_matches_reference(const Case& cs, const Operands& o, const std::vector<float>& c0,
                              const std::vector<float>& c, float alpha, float beta, double rtol) {
  int64_t bad = 0;
  double worst = 0;
  for (int64_t i = 0; i < cs.m; ++i) {
    for (int64_t j = 0; j < cs.n; ++j) {
      double dot = 0, mag = 0;
      for (int64_t p = 0; p < cs.k; ++p) {
        const double x = o.at(i, p, cs), y = o.bt(p, j, cs);
        dot += x * y, mag += std::fabs(x * y);
      }
      const double c_in = beta == 0.0f ? 0.0 : double(c0[i * o.ldc + j]);
      const double ref = alpha * dot + beta * c_in;
      const double scale = std::fabs(alpha) * mag + std::fabs(beta * c_in) + 1e-30;
      const double got = c[i * o.ldc + j];
      const double err = std::isfinite(got) ? std::fabs(got - ref) / scale : 1e30;
      worst = std::max(worst, err);
      if (err > rtol && bad++ < 3)
        ADD_FAILURE() << name(cs) << " alpha " << alpha << " beta " << beta << ": C[" << i << ","
                      << j << "] = " << got << ", reference " << ref << " (scaled error " << err
                      << ")";
    }
    for (int64_t j = cs.n; j < o.ldc; ++j)
      ASSERT_EQ(std::memcmp(&c[i * o.ldc + j], &c0[i * o.ldc + j], sizeof(float)), 0)
          << name(cs) << ": wrote past column n at row " << i;
  }
  EXPECT_EQ(bad, 0) << name(cs) << ": worst scaled error " << worst << " (tolerance " << rtol
                    << ")";
}

// fp32 with blocked accumulation: the scaled error stays near sqrt(K) * 2^-24 for random
// signs; 1e-5 leaves room for K up to a few thousand with worst-case rounding alignment.
constexpr double kRtol = 1e-5;

// Each test runs on both kernels; the AMX one is skipped (and counted as skipped) on CPUs
// without AMX.
class SgemmKernelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!sgemm_avx512_supported()) GTEST_SKIP() << "CPU has no AVX-512";
    if (amx() && !sgemm_amx_supported()) GTEST_SKIP() << "CPU or kernel offers no AMX-BF16";
  }
  bool amx() const { return GetParam() == "amx"; }
  void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
             int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
             const float* bias = nullptr) const {
    if (amx()) {
      sgemm_amx(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias);
    } else {
      sgemm_avx512(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias);
    }
  }
};

std::vector<Case> odd_cases() {
  const int64_t shapes[][3] = {{1, 1, 1},      {7, 13, 31},   {13, 7, 1},      {31, 33, 65},
                               {33, 65, 257},  {257, 33, 65}, {65, 257, 33},   {1000, 31, 7},
                               {13, 1000, 33}, {31, 7, 1000}, {65, 257, 1000}, {1, 257, 65},
                               {257, 1, 65}};
  std::vector<Case> out;
  for (const auto& s : shapes)
    for (int t = 0; t < 4; ++t) out.push_back({s[0], s[1], s[2], bool(t & 1), bool(t & 2)});
  return out;
}

TEST_P(SgemmKernelTest, OddSizesAllTransposes) {
  uint32_t seed = 1;
  for (const Case& cs : odd_cases()) {
    Operands o = make(cs, seed++);
    std::vector<float> c0 = o.c;
    sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f,
          o.c.data(), o.ldc);
    expect_matches_reference(cs, o, c0, o.c, 1.0f, 0.0f, kRtol);
  }
}

// Sizes that cross the K, N and M cache blocks and give each thread several of them.
TEST_P(SgemmKernelTest, MultiBlockSizes) {
  const Case cases[] = {{600, 700, 900, false, true, 0},   {2100, 530, 800, false, false, 3},
                        {450, 1100, 1000, true, false, 0}, {333, 555, 777, true, true, 5},
                        {2, 3000, 400, false, true, 0},    {3000, 2, 400, true, false, 0},
                        {4200, 60, 40, false, true, 1},    {4200, 60, 40, true, false, 0}};
  uint32_t seed = 100;
  for (const Case& cs : cases) {
    Operands o = make(cs, seed++);
    std::vector<float> c0 = o.c;
    sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, 0.75f, o.a.data(), o.lda, o.b.data(), o.ldb, -0.5f,
          o.c.data(), o.ldc);
    expect_matches_reference(cs, o, c0, o.c, 0.75f, -0.5f, kRtol);
  }
}

// K much longer than M and N (the output layer's input gradient): threads split K into
// partial products summed at the end; all transposes, alpha/beta, odd sizes.
TEST_P(SgemmKernelTest, LongKSplitAcrossThreads) {
  uint32_t seed = 200;
  const int64_t shapes[][4] = {{37, 53, 5000, 0}, {96, 130, 3001, 3}};  // m, n, k, pad
  for (const auto& s : shapes) {
    for (int t = 0; t < 4; ++t) {
      const Case cs{s[0], s[1], s[2], bool(t & 1), bool(t & 2), s[3]};
      Operands o = make(cs, seed++);
      std::vector<float> c0 = o.c;
      sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, 0.75f, o.a.data(), o.lda, o.b.data(), o.ldb, -0.5f,
            o.c.data(), o.ldc);
      expect_matches_reference(cs, o, c0, o.c, 0.75f, -0.5f, kRtol);
    }
  }
}

TEST_P(SgemmKernelTest, LeadingDimensionsLargerThanRows) {
  uint32_t seed = 200;
  for (int t = 0; t < 4; ++t) {
    for (int64_t pad : {1, 7, 16, 33}) {
      const Case cs{45, 67, 89, bool(t & 1), bool(t & 2), pad};
      Operands o = make(cs, seed++);
      std::vector<float> c0 = o.c;
      sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 1.0f,
            o.c.data(), o.ldc);
      expect_matches_reference(cs, o, c0, o.c, 1.0f, 1.0f, kRtol);
    }
  }
}

TEST_P(SgemmKernelTest, AlphaBetaVariants) {
  const float ab[][2] = {{1, 0}, {0.5f, 0}, {-2, 0}, {1, 1}, {1.5f, -0.75f}, {0.25f, 3}};
  uint32_t seed = 300;
  for (int t = 0; t < 4; ++t) {
    for (const auto& v : ab) {
      const Case cs{70, 90, 50, bool(t & 1), bool(t & 2), 2};
      Operands o = make(cs, seed++);
      std::vector<float> c0 = o.c;
      sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, v[0], o.a.data(), o.lda, o.b.data(), o.ldb, v[1],
            o.c.data(), o.ldc);
      expect_matches_reference(cs, o, c0, o.c, v[0], v[1], kRtol);
    }
  }
}

// BLAS: beta == 0 means C is output only, so NaN or Inf garbage in it must not leak through.
TEST_P(SgemmKernelTest, BetaZeroOverwritesNaN) {
  uint32_t seed = 400;
  for (int t = 0; t < 4; ++t) {
    for (const Case& shape : {Case{33, 65, 31, false, false}, Case{500, 300, 700, false, false}}) {
      Case cs = shape;
      cs.ta = t & 1, cs.tb = t & 2, cs.pad = 3;
      Operands o = make(cs, seed++);
      for (int64_t i = 0; i < cs.m; ++i)
        for (int64_t j = 0; j < cs.n; ++j)
          o.c[i * o.ldc + j] = (i + j) % 2 ? std::numeric_limits<float>::quiet_NaN()
                                           : std::numeric_limits<float>::infinity();
      std::vector<float> c0 = o.c;
      sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.25f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f,
            o.c.data(), o.ldc);
      expect_matches_reference(cs, o, c0, o.c, 1.25f, 0.0f, kRtol);
    }
  }
}

// k == 0 or alpha == 0: C = beta * C, and zeros (not NaN * 0) when beta is 0.
TEST_P(SgemmKernelTest, EmptyKAndZeroAlphaScaleC) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> a(40 * 40, 1.0f), b(40 * 40, 1.0f);
  std::vector<float> c(20 * 30, nan);
  sgemm(false, false, 20, 30, 0, 1.0f, a.data(), 1, b.data(), 30, 0.0f, c.data(), 30);
  for (float x : c) ASSERT_EQ(x, 0.0f);
  std::vector<float> d(20 * 30, 2.0f);
  sgemm(false, true, 20, 30, 40, 0.0f, a.data(), 40, b.data(), 40, 1.5f, d.data(), 30);
  for (float x : d) ASSERT_EQ(x, 3.0f);
  std::vector<float> e(20 * 30, nan);
  sgemm(true, false, 20, 30, 40, 0.0f, a.data(), 20, b.data(), 30, 0.0f, e.data(), 30);
  for (float x : e) ASSERT_EQ(x, 0.0f);
}

// A per-column bias added in the store of C (the linear layer's bias): equal, bit for bit, to the
// same GEMM followed by adding the bias, for every transpose, with K in one and in several
// blocks, with the split-K path, and with beta != 0.
TEST_P(SgemmKernelTest, BiasInTheStoreEqualsASecondPass) {
  const Case cases[] = {{70, 90, 50, false, true, 2},   {257, 129, 1000, false, false, 0},
                        {130, 97, 1601, true, true, 1}, {96, 130, 3001, true, false, 3},
                        {37, 53, 5000, false, true, 0}, {512, 512, 64, true, false, 0}};
  uint32_t seed = 700;
  for (const Case& cs : cases) {
    Operands o = make(cs, seed++);
    std::vector<float> bias(cs.n);
    for (int64_t j = 0; j < cs.n; ++j) bias[j] = 0.25f * float(j % 7) - 0.5f;
    for (float beta : {0.0f, 0.5f}) {
      std::vector<float> c_fused = o.c, c_two = o.c;
      sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.25f, o.a.data(), o.lda, o.b.data(), o.ldb, beta,
            c_fused.data(), o.ldc, bias.data());
      sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.25f, o.a.data(), o.lda, o.b.data(), o.ldb, beta,
            c_two.data(), o.ldc);
      for (int64_t i = 0; i < cs.m; ++i)
        for (int64_t j = 0; j < cs.n; ++j) c_two[i * o.ldc + j] += bias[j];
      ASSERT_EQ(std::memcmp(c_fused.data(), c_two.data(), c_two.size() * sizeof(float)), 0)
          << name(cs) << " beta " << beta;
    }
  }
}

// Called from inside a parallel region (as attention does per head), each call runs on its own
// thread with thread-local packing buffers and must not race with the others.
TEST_P(SgemmKernelTest, CallsFromInsideParallelRegion) {
  const Case cs{100, 150, 200, false, true, 0};
  std::vector<Operands> ops;
  for (int i = 0; i < 8; ++i) ops.push_back(make(cs, 500 + i));
  std::vector<std::vector<float>> c0;
  for (const Operands& o : ops) c0.push_back(o.c);
#pragma omp parallel for num_threads(2) schedule(static, 1)
  for (int i = 0; i < 8; ++i) {
    Operands& o = ops[i];
    sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.5f,
          o.c.data(), o.ldc);
  }
  for (int i = 0; i < 8; ++i)
    expect_matches_reference(cs, ops[i], c0[i], ops[i].c, 1.0f, 0.5f, kRtol);
}

// The dispatcher: forcing this kernel or OpenBLAS gives the same answer (up to summation
// order), and blas_info() names the float kernel.
TEST_P(SgemmKernelTest, AgreesWithOpenBlasThroughDispatch) {
  const SgemmBackend saved = sgemm_backend();
  EXPECT_FALSE(blas_info().sgemm.empty());
  uint32_t seed = 600;
  for (int t = 0; t < 4; ++t) {
    for (const Case& shape : {Case{257, 129, 300, false, false}, Case{64, 1000, 65, false, false},
                              Case{1000, 96, 31, false, false}}) {
      Case cs = shape;
      cs.ta = t & 1, cs.tb = t & 2, cs.pad = 1;
      Operands o = make(cs, seed++);
      std::vector<float> c_blas = o.c, c_mine = o.c;
      set_sgemm_backend(SgemmBackend::kOpenBlas);
      gemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.5f,
           c_blas.data(), o.ldc);
      set_sgemm_backend(amx() ? SgemmBackend::kAmx : SgemmBackend::kAvx512);
      gemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.5f,
           c_mine.data(), o.ldc);
      // Two fp32 summation orders: each within ~sqrt(K) * 2^-24 of the exact value, relative to
      // the sum of |products| (<= K here), so 1e-5 * K bounds their difference.
      for (int64_t i = 0; i < cs.m; ++i)
        for (int64_t j = 0; j < cs.n; ++j)
          ASSERT_NEAR(c_mine[i * o.ldc + j], c_blas[i * o.ldc + j], 1e-5 * cs.k)
              << name(cs) << " at " << i << "," << j;
    }
  }
  set_sgemm_backend(saved);
}

INSTANTIATE_TEST_SUITE_P(Kernels, SgemmKernelTest, ::testing::Values("avx512", "amx"),
                         [](const auto& info) { return info.param; });

class SgemmAmxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!sgemm_amx_supported()) GTEST_SKIP() << "CPU or kernel offers no AMX-BF16";
  }
};

// RMS of (C - exact) / sum_p |a b| over a random product, in float64.
double rms_scaled_error(const Case& cs, const Operands& o, const std::vector<float>& c) {
  double sum = 0;
  for (int64_t i = 0; i < cs.m; ++i)
    for (int64_t j = 0; j < cs.n; ++j) {
      double dot = 0, mag = 0;
      for (int64_t p = 0; p < cs.k; ++p) {
        const double x = o.at(i, p, cs), y = o.bt(p, j, cs);
        dot += x * y, mag += std::fabs(x * y);
      }
      const double e = (c[i * o.ldc + j] - dot) / mag;
      sum += e * e;
    }
  return std::sqrt(sum / double(cs.m * cs.n));
}

// The RMS scaled errors of C = op(A) op(B) from the AMX and the FMA kernel.
std::pair<double, double> amx_and_fma_errors(const Case& cs, const Operands& o) {
  std::vector<float> c_amx(o.c.size()), c_fma(o.c.size());
  sgemm_amx(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f,
            c_amx.data(), o.ldc);
  sgemm_avx512(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f,
               c_fma.data(), o.ldc);
  return {rms_scaled_error(cs, o, c_amx), rms_scaled_error(cs, o, c_fma)};
}

// fp32 accuracy from bf16 pieces: the six-product split must not be measurably less accurate
// than the FMA kernel's fp32 sums (bf16x3, which drops a0b2, a1b1 and a2b0, is ~2^-17: 100x
// worse), at K where rounding accumulates and with operands spanning 12 binades.
TEST_F(SgemmAmxTest, AsAccurateAsFp32Fma) {
  for (int t = 0; t < 4; ++t) {
    const Case cs{96, 80, 2048, bool(t & 1), bool(t & 2)};
    Operands o = make(cs, 900 + t);
    std::mt19937 gen(77 + t);
    std::uniform_int_distribution<int> e(-6, 6);
    for (float& x : o.a) x = std::ldexp(x, e(gen));
    for (float& x : o.b) x = std::ldexp(x, e(gen));
    const auto [amx, fma] = amx_and_fma_errors(cs, o);
    EXPECT_LT(amx, 1.5 * fma) << name(cs) << ": AMX " << amx << " vs FMA " << fma;
    EXPECT_LT(amx, 1e-7) << name(cs);
  }
}

// Long K with positive operands, where rounding errors do not cancel: the AMX kernel's error
// must grow with K no faster than the FMA kernel's (both sum K passes of <= 768 from zero and
// add them to C). Summing all of K into one running total gave 4.5x the FMA kernel's error here.
TEST_F(SgemmAmxTest, LongKErrorTracksTheFmaKernel) {
  for (int t = 0; t < 2; ++t) {
    const Case cs{32, 48, 16384, bool(t), false};
    Operands o = make(cs, 950 + t);
    for (float& x : o.a) x = std::fabs(x);
    for (float& x : o.b) x = std::fabs(x);
    const auto [amx, fma] = amx_and_fma_errors(cs, o);
    EXPECT_LT(amx, 1.5 * fma) << name(cs) << ": AMX " << amx << " vs FMA " << fma;
  }
}

// Operands with short significands (bf16 values widened to fp32: one piece; 16 bits: two) let
// the kernel skip the products of all-zero pieces. Every pair of levels, each operand stored
// either way, must stay as accurate as the FMA kernel: a product skipped that was needed
// (a1 b1 at level 1 x 1 is 2^-18 of |a b|) would be 100x its error.
TEST_F(SgemmAmxTest, ShortSignificandsSkipOnlyZeroPieces) {
  auto keep_bits = [](float x, int bits) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    u &= ~((uint32_t(1) << (24 - bits)) - 1);
    std::memcpy(&x, &u, 4);
    return x;
  };
  uint32_t seed = 960;
  for (int a_bits : {8, 16, 24}) {
    for (int b_bits : {8, 16, 24}) {
      const Case cs{64, 96, 256, bool(seed & 1), bool(seed & 2)};
      Operands o = make(cs, seed++);
      for (float& x : o.a) x = keep_bits(x, a_bits);
      for (float& x : o.b) x = keep_bits(x, b_bits);
      const auto [amx, fma] = amx_and_fma_errors(cs, o);
      EXPECT_LT(amx, 1.5 * fma + 1e-9) << name(cs) << " with " << a_bits << " x " << b_bits
                                       << " significant bits: AMX " << amx << " vs FMA " << fma;
    }
  }
}

// alpha is applied to the finished sum, not folded into an operand, so alpha * a may overflow
// or underflow where the product does not (BLAS semantics).
TEST_F(SgemmAmxTest, AlphaScalesTheSumNotTheOperand) {
  const int64_t m = 32, n = 32, k = 32;
  std::vector<float> a(m * k, 1e30f), b(k * n, 1e-30f), c(m * n);
  sgemm_amx(false, false, m, n, k, 1e10f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
  for (float x : c) ASSERT_NEAR(x, 32e10, 32e10 * 1e-6);
  std::fill(a.begin(), a.end(), 1e-30f);
  std::fill(b.begin(), b.end(), 1e20f);
  sgemm_amx(false, false, m, n, k, 1e-10f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
  for (float x : c) ASSERT_NEAR(x, 32e-20, 32e-20 * 1e-6);
}

// Non-finite inputs give non-finite results in exactly the rows they reach (NaN where fp32
// could give +-inf: sgemm_amx.h), never a finite wrong value; a huge finite operand is exact.
TEST_F(SgemmAmxTest, NonFiniteInputsGiveNonFiniteRows) {
  const int64_t m = 40, n = 48, k = 64;
  std::vector<float> a(m * k, 0.5f), b(k * n, 0.25f), c(m * n, 0.0f);
  const float inf = std::numeric_limits<float>::infinity();
  a[3 * k + 5] = inf;
  a[7 * k + 9] = -inf;
  a[11 * k + 2] = std::numeric_limits<float>::quiet_NaN();
  a[13 * k + 4] = 1e30f;
  b[4 * n + 20] = 0.0f;  // row 13, column 20: 1e30 * 0
  sgemm_amx(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const float got = c[i * n + j];
      if (i == 3 || i == 7 || i == 11) {
        EXPECT_FALSE(std::isfinite(got)) << i << "," << j;
      } else if (i == 13) {
        const double expect = j == 20 ? 63 * 0.125 : 1e30 * 0.25 + 63 * 0.125;
        EXPECT_NEAR(got, expect, 1e-6 * expect) << j;
      } else {
        EXPECT_EQ(got, float((j == 20 ? k - 1 : k) * 0.125)) << i << "," << j;
      }
    }
  }
}

// In auto mode a transformer-sized product goes to the AMX kernel (bit for bit its result,
// which differs from the FMA kernel's summation order), and blas_info() names it.
TEST_F(SgemmAmxTest, AutoDispatchUsesAmx) {
  const SgemmBackend saved = sgemm_backend();
  set_sgemm_backend(SgemmBackend::kAuto);
  const Case cs{256, 192, 320, false, true};
  Operands o = make(cs, 990);
  std::vector<float> c_auto(o.c.size()), c_amx(o.c.size()), c_fma(o.c.size());
  gemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f,
       c_auto.data(), o.ldc);
  sgemm_amx(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f,
            c_amx.data(), o.ldc);
  sgemm_avx512(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.0f,
               c_fma.data(), o.ldc);
  EXPECT_EQ(std::memcmp(c_auto.data(), c_amx.data(), c_amx.size() * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(c_fma.data(), c_amx.data(), c_amx.size() * sizeof(float)), 0);
  if (!std::getenv("MCORE_GEMM")) {
    EXPECT_NE(blas_info().sgemm.find("AMX"), std::string::npos) << blas_info().sgemm;
  }
  set_sgemm_backend(saved);
}

}  // namespace
}  // namespace mcore::ops::cpu

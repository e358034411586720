// tile_gemm (mcore/ops/cpu/tile_gemm.h), the attention kernel's in-place tile products, against
// a float64 naive reference: A row-major, transposed and with two non-unit strides; B row-major
// and in 64-column panels; widths that leave partial vectors and partial panels; row counts that
// leave partial 6-row blocks; K = 0; alpha/beta, with beta == 0 overwriting NaNs without reading
// them; causal band limits; padding that must stay untouched. Float (AVX-512 where present) and
// double (BLAS) routes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mcore/ops/cpu/tile_gemm.h"

namespace mcore::ops::cpu {
namespace {

enum class Layout { kRows, kCols, kStrided };

template <class T>
struct Case {
  int64_t m, n, k;
  Layout layout;
  bool panels;  // B as consecutive 64-column panels instead of row-major
  T alpha, beta;
  TileBand band;
};

template <class T>
std::string name(const Case<T>& c) {
  const char* l = c.layout == Layout::kRows   ? "rows"
                  : c.layout == Layout::kCols ? "cols"
                                              : "strided";
  std::string s = std::to_string(c.m) + "x" + std::to_string(c.n) + "x" + std::to_string(c.k) +
                  " A " + l + (c.panels ? " B panels" : " B rows") + " alpha " +
                  std::to_string(c.alpha) + " beta " + std::to_string(c.beta);
  if (c.band.n_end != TileBand::kNone)
    s += " band " + std::to_string(c.band.n_end) + "/" + std::to_string(c.band.k_begin) + "/" +
         std::to_string(c.band.k_end);
  return s;
}

template <class T>
void check(const Case<T>& cs, uint32_t seed, double rtol) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const int64_t pad = 3;
  int64_t a_row = 0, a_col = 0;
  switch (cs.layout) {
    case Layout::kRows:
      a_row = cs.k + pad, a_col = 1;
      break;
    case Layout::kCols:
      a_row = 1, a_col = cs.m + pad;
      break;
    case Layout::kStrided:
      a_row = 2, a_col = 2 * cs.m + 1;
      break;
  }
  std::vector<T> a(static_cast<size_t>((cs.m + 1) * a_row + (cs.k + 1) * a_col + 1));
  for (T& x : a) x = static_cast<T>(u(gen));
  // The band's promise: row i of op(A) is zero outside [i + k_begin, i + k_end).
  for (int64_t i = 0; i < cs.m; ++i)
    for (int64_t p = 0; p < cs.k; ++p)
      if (p < i + cs.band.k_begin || p >= i + cs.band.k_end) a[i * a_row + p * a_col] = T(0);
  const int64_t panels = (cs.n + 63) / 64;
  TileB<T> tb{nullptr, cs.n + pad, 64};
  if (cs.panels) tb = {nullptr, 64, 64 * std::max<int64_t>(cs.k, 1) + 16};
  std::vector<T> b(static_cast<size_t>(cs.panels ? panels * tb.panel : cs.k * tb.ld + 64));
  for (T& x : b) x = static_cast<T>(u(gen));
  tb.data = b.data();
  auto b_at = [&](int64_t p, int64_t j) { return b[(j / 64) * tb.panel + p * tb.ld + j % 64]; };
  const int64_t ldc = cs.n + pad;
  std::vector<T> c(static_cast<size_t>(cs.m * ldc));
  for (T& x : c) x = static_cast<T>(u(gen));
  if (cs.beta == T(0)) {
    for (int64_t i = 0; i < cs.m; ++i)
      for (int64_t j = 0; j < cs.n; ++j) c[i * ldc + j] = std::numeric_limits<T>::quiet_NaN();
  }
  const std::vector<T> c0 = c;
  tile_gemm(cs.m, cs.n, cs.k, cs.alpha, a.data(), a_row, a_col, tb, cs.beta, c.data(), ldc,
            cs.band);
  int64_t bad = 0;
  for (int64_t i = 0; i < cs.m; ++i) {
    const int64_t n_needed = std::clamp<int64_t>(i + cs.band.n_end, 0, cs.n);
    for (int64_t j = 0; j < n_needed; ++j) {
      double dot = 0, mag = 0;
      for (int64_t p = 0; p < cs.k; ++p) {
        const double x = a[i * a_row + p * a_col], y = b_at(p, j);
        dot += x * y, mag += std::fabs(x * y);
      }
      const double c_in = cs.beta == T(0) ? 0.0 : double(c0[i * ldc + j]);
      const double ref = double(cs.alpha) * dot + double(cs.beta) * c_in;
      const double scale = std::fabs(double(cs.alpha)) * mag + std::fabs(cs.beta * c_in) + 1e-30;
      const double got = c[i * ldc + j];
      const double err = std::isfinite(got) ? std::fabs(got - ref) / scale : 1e30;
      if (err > rtol && bad++ < 3)
        ADD_FAILURE() << name(cs) << ": C[" << i << "," << j << "] = " << got << ", reference "
                      << ref << " (scaled error " << err << ")";
    }
    for (int64_t j = cs.n; j < ldc; ++j)
      ASSERT_EQ(std::memcmp(&c[i * ldc + j], &c0[i * ldc + j], sizeof(T)), 0)
          << name(cs) << ": wrote into the padding of row " << i;
  }
  EXPECT_EQ(bad, 0) << name(cs);
}

template <class T>
void run_all(double rtol) {
  const int64_t ms[] = {1, 5, 6, 7, 64};
  const int64_t ns[] = {1, 15, 16, 17, 48, 63, 64, 65, 128, 130};
  const int64_t ks[] = {0, 1, 7, 64, 129};
  const Layout layouts[] = {Layout::kRows, Layout::kCols, Layout::kStrided};
  uint32_t seed = 1;
  for (int64_t m : ms)
    for (int64_t n : ns)
      for (int64_t k : ks)
        for (Layout l : layouts) {
          // Alternate alpha/beta and the B layout so every shape meets both somewhere.
          const bool acc = (seed & 1) != 0, panels = (seed & 2) != 0;
          check<T>({m, n, k, l, panels, acc ? T(0.75) : T(1), acc ? T(-0.5) : T(0), {}}, seed++,
                   rtol);
        }
}

// float32 sums of up to 129 products: the scaled error stays below ~1e-6; double to ~1e-15.
TEST(TileGemm, FloatMatchesFloat64Reference) {
  run_all<float>(1e-5);
}

TEST(TileGemm, DoubleMatchesReference) {
  run_all<double>(1e-12);
}

// Causal attention's three band shapes on a 64 x 128 tile at several diagonal offsets: scores
// (C row i needed up to column i + d), P V (A row i zero past column i + d) and P^T dO (A row i
// zero before column i - d).
TEST(TileGemm, CausalBandsMatchFullProduct) {
  uint32_t seed = 1000;
  for (int64_t d : {-70, -5, 0, 1, 37, 64, 200}) {
    TileBand scores, pv, ptdo;
    scores.n_end = d + 1;
    pv.k_end = d + 1;
    ptdo.k_begin = -d;
    for (Layout l : {Layout::kRows, Layout::kCols}) {
      check<float>({64, 128, 64, l, true, 0.5f, 0.0f, scores}, seed++, 1e-5);
      check<float>({64, 64, 128, l, false, 1.0f, 1.0f, pv}, seed++, 1e-5);
      check<float>({64, 64, 64, l, false, 1.0f, 1.0f, ptdo}, seed++, 1e-5);
      check<double>({64, 128, 64, l, true, 0.5, 0.0, scores}, seed++, 1e-12);
    }
  }
}

}  // namespace
}  // namespace mcore::ops::cpu

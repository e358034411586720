#include "mcore/ops/cpu/tile_gemm.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "mcore/ops/cpu/avx512_util.h"
#include "mcore/ops/cpu/blas.h"
#include "mcore/ops/cpu/sgemm_avx512.h"

namespace mcore::ops::cpu {

namespace {

// 6 rows x 64 columns of C in 24 accumulators: each k step loads the B row's four vectors once
// and broadcasts each A value once, 10 loads per 24 FMAs. A block narrower than 64 columns takes
// NV < 4 vectors, the last one masked to the columns left.
constexpr int kMr = 6;
constexpr int64_t kNb = 64;

using avx512::lane_mask;

// kColsA: A is read down columns (a_row == 1, a transposed tile): the kMr values of step p are
// adjacent, at a + p * a_col. Otherwise A is row-major (a_col == 1), a pointer per row.
template <int NV, bool kColsA, bool kMasked>
MCORE_AVX512 void micro_kernel(int64_t k, const float* __restrict a, int64_t a_row, int64_t a_col,
                               const float* __restrict b, int64_t ldb, float* c, int64_t ldc,
                               float alpha, float beta, int64_t mr, __mmask16 last) {
  __m512 acc[kMr][NV];
#pragma GCC unroll 8
  for (int i = 0; i < kMr; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  // Rows past mr repeat row 0 (in bounds) and are not stored.
  const float* arow[kMr];
  int64_t aoff[kMr];
#pragma GCC unroll 8
  for (int i = 0; i < kMr; ++i) {
    arow[i] = a + (i < mr ? i : 0) * a_row;
    aoff[i] = i < mr ? i : 0;
  }
#pragma GCC unroll 2
  for (int64_t p = 0; p < k; ++p) {
    const float* bp = b + p * ldb;
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = v + 1 < NV || !kMasked ? _mm512_loadu_ps(bp + 16 * v)
                                     : _mm512_maskz_loadu_ps(last, bp + 16 * v);
#pragma GCC unroll 8
    for (int i = 0; i < kMr; ++i) {
      const __m512 av = _mm512_set1_ps(kColsA ? a[p * a_col + aoff[i]] : arow[i][p]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
  for (int i = 0; i < kMr; ++i) {
    if (i >= mr) break;
    float* crow = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __mmask16 mk = v + 1 < NV ? __mmask16(0xFFFF) : last;
      __m512 r = _mm512_mul_ps(va, acc[i][v]);
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk, crow + 16 * v), r);
      _mm512_mask_storeu_ps(crow + 16 * v, mk, r);
    }
  }
}

template <bool kColsA>
MCORE_AVX512 void tile_gemm_avx512(int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                                   int64_t a_row, int64_t a_col, const TileB<float>& b, float beta,
                                   float* c, int64_t ldc, const TileBand& band) {
  for (int64_t i0 = 0; i0 < m; i0 += kMr) {
    const int64_t mr = std::min<int64_t>(kMr, m - i0), i_last = i0 + mr - 1;
    // The block's rows together need columns [0, n_eff) and steps [k0, k1) of A.
    const int64_t n_eff = std::clamp<int64_t>(i_last + band.n_end, 0, n);
    const int64_t k0 = std::clamp<int64_t>(i0 + band.k_begin, 0, k);
    const int64_t k1 = std::clamp<int64_t>(i_last + band.k_end, k0, k);
    const float* ap = a + i0 * a_row + k0 * a_col;
    for (int64_t j0 = 0; j0 < n_eff; j0 += kNb) {
      const int64_t nc = std::min(kNb, n_eff - j0);
      const int nv = static_cast<int>((nc + 15) / 16);
      const __mmask16 last = lane_mask(nc - 16 * (nv - 1));
      const float* bp = b.data + (j0 / kNb) * b.panel + k0 * b.ld;
      float* cp = c + i0 * ldc + j0;
      auto run = [&](auto nv_tag, auto masked_tag) {
        micro_kernel<decltype(nv_tag)::value, kColsA, decltype(masked_tag)::value>(
            k1 - k0, ap, a_row, a_col, bp, b.ld, cp, ldc, alpha, beta, mr, last);
      };
      using Yes = std::true_type;
      using No = std::false_type;
      // Full-width blocks load their last vector unmasked (a masked load costs more).
      const bool full = nc == 16 * nv;
      switch (nv) {
        case 4:
          full ? run(std::integral_constant<int, 4>(), No())
               : run(std::integral_constant<int, 4>(), Yes());
          break;
        case 3:
          full ? run(std::integral_constant<int, 3>(), No())
               : run(std::integral_constant<int, 3>(), Yes());
          break;
        case 2:
          full ? run(std::integral_constant<int, 2>(), No())
               : run(std::integral_constant<int, 2>(), Yes());
          break;
        default:
          full ? run(std::integral_constant<int, 1>(), No())
               : run(std::integral_constant<int, 1>(), Yes());
      }
    }
  }
}

// op(A) as a dense row-major m x k copy (for A with no unit stride).
template <class T>
std::vector<T> gather_rows(const T* a, int64_t m, int64_t k, int64_t a_row, int64_t a_col) {
  std::vector<T> dense(static_cast<size_t>(m * std::max<int64_t>(k, 0)));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p) dense[i * k + p] = a[i * a_row + p * a_col];
  return dense;
}

// The BLAS route (float64, CPUs without AVX-512), one GEMM per 64-column panel of B; it computes
// the whole product, which the band allows. op(A) is passed as a (transposed) matrix when one of
// its strides is 1 and BLAS accepts the other as leading dimension, else gathered first.
template <class T>
void tile_gemm_blas(int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t a_row,
                    int64_t a_col, const TileB<T>& b, T beta, T* c, int64_t ldc) {
  std::vector<T> dense;
  bool ta = false;
  int64_t lda = a_row;
  if (a_col == 1 && a_row >= std::max<int64_t>(k, 1)) {
    // row-major A as it is
  } else if (a_row == 1 && a_col >= std::max<int64_t>(m, 1)) {
    ta = true, lda = a_col;
  } else {
    dense = gather_rows(a, m, k, a_row, a_col);
    a = dense.data(), lda = std::max<int64_t>(k, 1);
  }
  for (int64_t j0 = 0; j0 < n; j0 += kNb) {
    const int64_t nc = std::min(kNb, n - j0);
    gemm(ta, false, m, nc, k, alpha, a, lda, b.data + (j0 / kNb) * b.panel, std::max(b.ld, nc),
         beta, c + j0, ldc);
  }
}

template <class T>
void transpose_block_scalar(const T* src, int64_t ld, int64_t rows, int64_t cols, T* dst,
                            int64_t dst_ld) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * dst_ld + r] = src[r * ld + c];
}

}  // namespace

void tile_gemm(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t a_row,
               int64_t a_col, const TileB<float>& b, float beta, float* c, int64_t ldc,
               const TileBand& band) {
  if (m <= 0 || n <= 0) return;
  static const bool avx512 = sgemm_avx512_supported();
  // MCORE_GEMM=openblas (or set_sgemm_backend) selects the BLAS route here too, as for gemm().
  if (!avx512 || sgemm_backend() == SgemmBackend::kOpenBlas)
    return tile_gemm_blas(m, n, k, alpha, a, a_row, a_col, b, beta, c, ldc);
  if (a_row == 1 && a_col != 1) {
    tile_gemm_avx512<true>(m, n, k, alpha, a, 1, a_col, b, beta, c, ldc, band);
  } else if (a_col == 1) {
    tile_gemm_avx512<false>(m, n, k, alpha, a, a_row, 1, b, beta, c, ldc, band);
  } else {  // neither stride is 1
    const std::vector<float> dense = gather_rows(a, m, k, a_row, a_col);
    tile_gemm_avx512<false>(m, n, k, alpha, dense.data(), k, 1, b, beta, c, ldc, band);
  }
}

void tile_gemm(int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t a_row,
               int64_t a_col, const TileB<double>& b, double beta, double* c, int64_t ldc,
               const TileBand&) {
  if (m <= 0 || n <= 0) return;
  tile_gemm_blas(m, n, k, alpha, a, a_row, a_col, b, beta, c, ldc);
}

void transpose_block(const float* src, int64_t ld, int64_t rows, int64_t cols, float* dst,
                     int64_t dst_ld) {
  static const bool avx512 = sgemm_avx512_supported();
  if (!avx512) return transpose_block_scalar(src, ld, rows, cols, dst, dst_ld);
  for (int64_t r = 0; r < rows; r += 16) {
    const int n = static_cast<int>(std::min<int64_t>(16, rows - r));
    avx512::pack_transposed(src + r * ld, ld, n, cols, dst + r, dst_ld, n);
  }
}

void transpose_block(const double* src, int64_t ld, int64_t rows, int64_t cols, double* dst,
                     int64_t dst_ld) {
  transpose_block_scalar(src, ld, rows, cols, dst, dst_ld);
}

}  // namespace mcore::ops::cpu

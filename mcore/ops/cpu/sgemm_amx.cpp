#include "mcore/ops/cpu/sgemm_amx.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "mcore/base/error.h"
#include "mcore/ops/cpu/avx512_util.h"
#include "mcore/ops/cpu/gemm_driver.h"
#include "mcore/ops/cpu/sgemm_avx512.h"

#define MCORE_AMX \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,amx-tile,amx-bf16")))

namespace mcore::ops::cpu {

namespace {

using avx512::lane_mask;
using avx512::pack_transposed;
using gemm_driver::Problem;
using gemm_driver::round_up;
using gemm_driver::Scratch;

// Geometry. A tile holds 16 rows of 32 bf16 (an A tile: 16 rows of C by 32 of K; a B tile: 16
// pairs of K by 16 columns of C, the pairs interleaved as TDPBF16PS reads them). The register
// block is 2 x 2 C tiles (32 x 32 of C) in tiles 0-3, with two A tiles (4, 5) and two B tiles
// (6, 7): all eight. A panel is 32 rows of A (or columns of B) packed over a K range, one
// 32-deep chunk after another; a chunk holds the three pieces' tiles for both 16-row halves.
constexpr int64_t kTileK = 32;
constexpr int64_t kPanel = 32;
constexpr int kPieces = 3;
constexpr int64_t kTileElems = 16 * kTileK;
constexpr int64_t kChunkElems = kPieces * 2 * kTileElems;  // 6 KB of bf16

// Cache blocking (Emerald Rapids: L1d 48 KB, L2 2 MB per core). TDPBF16PS keeps its rate only
// with one operand in L1: measured, the 2 x 2 block runs at 85-93% of the AMX peak with its A
// panel in L1 and B panels streaming from L2, and at 45% with both from L2. So a kernel call
// covers 4 chunks (128 of K), whose A panel slice (24 KB) stays in L1 across the row of B
// panels; the B block (K pass x nb columns, ~1 MB) sits in L2, and the C row strip under it
// (32 x nb floats) stays in L1/L2 across the chunk groups of a K pass.
constexpr int64_t kChunksPerCall = 4;
constexpr int64_t kKPassMax = 768;
constexpr int64_t kABlockBytes = int64_t(8) << 20;
constexpr int64_t kBBlockBytes = int64_t(1) << 20;

// Per unit of K, an element of C costs 6 bf16 products at ~460 per cycle (the measured AMX
// rate), and packing an element of A or B (split into three pieces) about half a cycle:
// packing an element weighs ~40 elements of C.
constexpr double kPackWeight = 40.0;

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// The split: x = x0 + x1 + x2 to within 2^-27 |x|, each piece the bf16 rounding (to nearest
// even) of what the previous ones leave. Both forms convert two vectors per instruction and
// get each piece's fp32 value back with shifts and masks of the bf16 vector itself.

// 32 consecutive floats (lo, hi) as the three pieces' rows of 32 bf16, in order.
MCORE_AMX inline void split3_row(__m512 lo, __m512 hi, __m512i out[kPieces]) {
  for (int q = 0; q < kPieces; ++q) {
    out[q] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
    if (q + 1 == kPieces) break;
    const __m512i lo16 = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(out[q]));
    const __m512i hi16 = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(out[q], 1));
    lo = _mm512_sub_ps(lo, _mm512_castsi512_ps(_mm512_slli_epi32(lo16, 16)));
    hi = _mm512_sub_ps(hi, _mm512_castsi512_ps(_mm512_slli_epi32(hi16, 16)));
  }
}

// Two K-adjacent rows of 16 columns (even, odd) as the three pieces' B tile rows: the pair of
// column j in 32-bit lane j, even element in the low half.
MCORE_AMX inline void split3_pairs(__m512 even, __m512 odd, __m512i out[kPieces]) {
  const __m512i interleave =
      _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i high_half = _mm512_set1_epi32(int32_t(0xFFFF0000u));
  for (int q = 0; q < kPieces; ++q) {
    out[q] = _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(odd, even));
    if (q + 1 == kPieces) break;
    even = _mm512_sub_ps(even, _mm512_castsi512_ps(_mm512_slli_epi32(out[q], 16)));
    odd = _mm512_sub_ps(odd, _mm512_castsi512_ps(_mm512_and_si512(out[q], high_half)));
  }
}

// How many pieces a panel needs: its highest piece index that is not all zero. Inputs that are
// exactly bf16 (bf16 tensors widened to fp32) need one piece, 16-bit significands two; the
// kernel then skips the products of zero pieces, which changes no bit of the result.
struct PieceLevel {
  __m512i any1, any2;
  MCORE_AMX PieceLevel() : any1(_mm512_setzero_si512()), any2(_mm512_setzero_si512()) {}
  // Stores the pieces as row r of half h's tiles in the chunk at d, and notes them.
  MCORE_AMX void store(const __m512i pieces[kPieces], uint16_t* d, int h, int r) {
    any1 = _mm512_or_si512(any1, pieces[1]);
    any2 = _mm512_or_si512(any2, pieces[2]);
    for (int q = 0; q < kPieces; ++q)
      _mm512_store_si512(d + (2 * q + h) * kTileElems + r * kTileK, pieces[q]);
  }
  MCORE_AMX int level() const {
    if (_mm512_test_epi32_mask(any2, any2)) return 2;
    return _mm512_test_epi32_mask(any1, any1) ? 1 : 0;
  }
};

// Packs rows [i, i + rows) (rows <= 32) of op(A), K range [p0, p0 + kc), as a panel, and
// returns its piece level. Lanes past the matrix are zeros.
MCORE_AMX int pack_a_panel(const Problem& pr, int64_t i, int64_t rows, int64_t p0, int64_t kc,
                           uint16_t* dst) {
  alignas(64) float staged[16 * kTileK];
  PieceLevel level;
  for (int64_t c = 0; c * kTileK < kc; ++c) {
    const int64_t kw = std::min(kTileK, kc - c * kTileK), p = p0 + c * kTileK;
    const __mmask16 m0 = lane_mask(kw), m1 = lane_mask(kw - 16);
    uint16_t* d = dst + c * kChunkElems;
    for (int h = 0; h < 2; ++h) {
      const int64_t valid = std::clamp<int64_t>(rows - 16 * h, 0, 16);
      const float* src = pr.a + (i + 16 * h) * pr.lda + p;
      int64_t ld = pr.lda;
      if (pr.ta && valid > 0) {
        // A is stored K-major: gather its 32 x 16 block as 16 rows of 32.
        const float* at = pr.a + p * pr.lda + i + 16 * h;
        pack_transposed(at, pr.lda, std::min<int64_t>(kw, 16), valid, staged, kTileK, 16);
        pack_transposed(at + 16 * pr.lda, pr.lda, std::max<int64_t>(kw - 16, 0), valid, staged + 16,
                        kTileK, 16);
        src = staged, ld = kTileK;
      }
      for (int r = 0; r < 16; ++r) {
        __m512 x0 = _mm512_setzero_ps(), x1 = _mm512_setzero_ps();
        if (r < valid) {
          x0 = _mm512_maskz_loadu_ps(m0, src + r * ld);
          x1 = _mm512_maskz_loadu_ps(m1, src + r * ld + 16);
        }
        __m512i pieces[kPieces];
        split3_row(x0, x1, pieces);
        level.store(pieces, d, h, r);
      }
    }
  }
  return level.level();
}

// Packs columns [j, j + cols) (cols <= 32) of op(B), K range [p0, p0 + kc), as a panel: tile
// row r holds the K pair (2r, 2r + 1) of each of 16 columns, interleaved. Returns its piece
// level.
MCORE_AMX int pack_b_panel(const Problem& pr, int64_t j, int64_t cols, int64_t p0, int64_t kc,
                           uint16_t* dst) {
  alignas(64) float staged[2][kTileK * 16];
  PieceLevel level;
  for (int64_t c = 0; c * kTileK < kc; ++c) {
    const int64_t kw = std::min(kTileK, kc - c * kTileK), p = p0 + c * kTileK;
    uint16_t* d = dst + c * kChunkElems;
    const float* src[2];
    int64_t ld = pr.ldb;
    __mmask16 mask[2];
    for (int h = 0; h < 2; ++h) {
      const int64_t valid = std::clamp<int64_t>(cols - 16 * h, 0, 16);
      src[h] = pr.b + p * pr.ldb + j + 16 * h;
      mask[h] = lane_mask(valid);
      if (pr.tb) {
        // B is stored N-major: gather its 16 x 32 block as 32 rows of 16 (zero-padded lanes).
        if (valid > 0)
          pack_transposed(pr.b + (j + 16 * h) * pr.ldb + p, pr.ldb, valid, kw, staged[h], 16, 16);
        src[h] = staged[h], ld = 16, mask[h] = valid > 0 ? 0xFFFF : 0;
      }
    }
    // Both halves of a K pair's rows in turn: 128 contiguous bytes of each row of B.
    for (int r = 0; r < 16; ++r) {
      for (int h = 0; h < 2; ++h) {
        __m512 e = _mm512_setzero_ps(), o = _mm512_setzero_ps();
        if (2 * r < kw) e = _mm512_maskz_loadu_ps(mask[h], src[h] + 2 * r * ld);
        if (2 * r + 1 < kw) o = _mm512_maskz_loadu_ps(mask[h], src[h] + (2 * r + 1) * ld);
        __m512i pieces[kPieces];
        split3_pairs(e, o, pieces);
        level.store(pieces, d, h, r);
      }
    }
  }
  return level.level();
}

// The 32 x 32 block of C at c (row stride ldc) plus the product of an A panel slice and a B
// panel slice over nch chunks; C is read first when load_c, else taken as zero. LA and LB are
// the panels' piece levels: products a_i b_j run for i <= LA, j <= LB, i + j <= 2.
template <int LA, int LB>
MCORE_AMX __attribute__((noinline)) void kernel(int64_t nch, const uint16_t* pa, const uint16_t* pb,
                                                float* c, int64_t ldc, bool load_c) {
  const int64_t stride = ldc * int64_t(sizeof(float));
  if (load_c) {
    _tile_loadd(0, c, stride);
    _tile_loadd(1, c + 16, stride);
    _tile_loadd(2, c + 16 * ldc, stride);
    _tile_loadd(3, c + 16 * ldc + 16, stride);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  constexpr int64_t kRow = kTileK * 2;  // bytes per tile row
  for (int64_t ch = 0; ch < nch; ++ch) {
    const uint16_t* a = pa + ch * kChunkElems;
    const uint16_t* b = pb + ch * kChunkElems;
    // Piece q's half h: offset (2q + h) tiles.
#define MCORE_AMX_LOAD_A(q)                       \
  _tile_loadd(4, a + (2 * q) * kTileElems, kRow); \
  _tile_loadd(5, a + (2 * q + 1) * kTileElems, kRow)
#define MCORE_AMX_LOAD_B(q)                       \
  _tile_loadd(6, b + (2 * q) * kTileElems, kRow); \
  _tile_loadd(7, b + (2 * q + 1) * kTileElems, kRow)
#define MCORE_AMX_DP4      \
  _tile_dpbf16ps(0, 4, 6); \
  _tile_dpbf16ps(1, 4, 7); \
  _tile_dpbf16ps(2, 5, 6); \
  _tile_dpbf16ps(3, 5, 7)
    if constexpr (LA == 2 && LB == 2) {
      // The six products in an order that changes one operand per step (14 tile loads for 24
      // multiplies), smallest first: a0b2, a0b1, a1b1, a1b0, a2b0, a0b0.
      MCORE_AMX_LOAD_A(0);
      MCORE_AMX_LOAD_B(2);
      MCORE_AMX_DP4;
      MCORE_AMX_LOAD_B(1);
      MCORE_AMX_DP4;
      MCORE_AMX_LOAD_A(1);
      MCORE_AMX_DP4;
      MCORE_AMX_LOAD_B(0);
      MCORE_AMX_DP4;
      MCORE_AMX_LOAD_A(2);
      MCORE_AMX_DP4;
      MCORE_AMX_LOAD_A(0);
      MCORE_AMX_DP4;
    } else {
      for (int i = 0; i <= LA; ++i) {
        MCORE_AMX_LOAD_A(i);
        for (int j = 0; j <= std::min(LB, 2 - i); ++j) {
          MCORE_AMX_LOAD_B(j);
          MCORE_AMX_DP4;
        }
      }
    }
#undef MCORE_AMX_LOAD_A
#undef MCORE_AMX_LOAD_B
#undef MCORE_AMX_DP4
  }
  _tile_stored(0, c, stride);
  _tile_stored(1, c + 16, stride);
  _tile_stored(2, c + 16 * ldc, stride);
  _tile_stored(3, c + 16 * ldc + 16, stride);
}

using KernelFn = void (*)(int64_t, const uint16_t*, const uint16_t*, float*, int64_t, bool);
constexpr KernelFn kKernels[3][3] = {{kernel<0, 0>, kernel<0, 1>, kernel<0, 2>},
                                     {kernel<1, 0>, kernel<1, 1>, kernel<1, 2>},
                                     {kernel<2, 0>, kernel<2, 1>, kernel<2, 2>}};

// C[0:rows, 0:cols] = alpha * strip + beta * C (+ bias[j] on column j), from the contiguous
// strip buffer (row stride ld); C is not read when beta is 0. The bias add is a separate rounding,
// so the result equals adding the bias in a second pass.
MCORE_AMX void strip_out(const float* strip, int64_t ld, int64_t rows, int64_t cols, float alpha,
                         float beta, const float* bias, float* c, int64_t ldc) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 m = lane_mask(cols - j);
      __m512 x = _mm512_load_ps(strip + r * ld + j);
      if (alpha != 1.0f) x = _mm512_mul_ps(x, va);
      if (beta != 0.0f) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, c + r * ldc + j), x);
      if (bias) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, bias + j));
      _mm512_mask_storeu_ps(c + r * ldc + j, m, x);
    }
  }
}

// The region [i0, i0+mt) x [j0, j0+nt) of C on this thread.
MCORE_AMX void amx_region(const Problem& pr, int64_t i0, int64_t mt, int64_t j0, int64_t nt) {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) cfg.rows[t] = 16, cfg.colsb[t] = kTileK * 2;
  _tile_loadconfig(&cfg);
  // K passes of near-equal length, each a whole number of chunks.
  const int64_t passes = (pr.k + kKPassMax - 1) / kKPassMax;
  const int64_t pass_k = round_up((pr.k + passes - 1) / passes, kTileK);
  const int64_t pass_chunks = pass_k / kTileK;
  const int64_t panel_elems = pass_chunks * kChunkElems;
  const int64_t panel_bytes = panel_elems * int64_t(sizeof(uint16_t));
  const int64_t mb = std::clamp<int64_t>(kABlockBytes / panel_bytes, 1, (mt + kPanel - 1) / kPanel);
  const int64_t nb = std::clamp<int64_t>(kBBlockBytes / panel_bytes, 1, (nt + kPanel - 1) / kPanel);
  thread_local Scratch a_buf, b_buf, c_buf;
  uint16_t* pa = a_buf.get<uint16_t>(mb * panel_elems);
  uint16_t* pb = b_buf.get<uint16_t>(nb * panel_elems);
  // The product of one A panel and the B block over a K pass, summed from zero in a contiguous
  // strip and then added to C once, as the FMA kernel sums each K block in registers: summing
  // all of K into C directly would add every product to one running total (six rounded adds
  // per k), and the error would grow with K past the FMA kernel's (3x at K = 50304). The strip
  // is contiguous because C's own rows are often a multiple of 4 KB apart (N = 768, 3072, ...),
  // which puts a tile's 16 rows in the same L1 sets: every tile load and store would go to L2.
  float* strip = c_buf.get<float>(kPanel * nb * kPanel);
  thread_local std::vector<uint8_t> a_levels, b_levels;
  a_levels.resize(mb), b_levels.resize(nb);
  for (int64_t p0 = 0; p0 < pr.k; p0 += pass_k) {
    const int64_t kc = std::min(pass_k, pr.k - p0), nch = (kc + kTileK - 1) / kTileK;
    const bool last_pass = p0 + kc == pr.k;
    const float beta = p0 == 0 ? pr.beta : 1.0f;  // later passes add onto the earlier ones
    for (int64_t ic = 0; ic < mt; ic += mb * kPanel) {
      const int64_t mc = std::min(mb * kPanel, mt - ic);
      for (int64_t ir = 0; ir < mc; ir += kPanel)
        a_levels[ir / kPanel] = pack_a_panel(pr, i0 + ic + ir, std::min(kPanel, mc - ir), p0, kc,
                                             pa + ir / kPanel * panel_elems);
      for (int64_t jc = 0; jc < nt; jc += nb * kPanel) {
        const int64_t nc = std::min(nb * kPanel, nt - jc), ld = round_up(nc, kPanel);
        for (int64_t jr = 0; jr < nc; jr += kPanel)
          b_levels[jr / kPanel] = pack_b_panel(pr, j0 + jc + jr, std::min(kPanel, nc - jr), p0, kc,
                                               pb + jr / kPanel * panel_elems);
        for (int64_t ir = 0; ir < mc; ir += kPanel) {
          const int64_t rows = std::min(kPanel, mc - ir);
          const uint16_t* a_panel = pa + ir / kPanel * panel_elems;
          float* c_rows = pr.c + (i0 + ic + ir) * pr.ldc + j0 + jc;
          for (int64_t c0 = 0; c0 < nch; c0 += kChunksPerCall) {
            const int64_t cn = std::min(kChunksPerCall, nch - c0);
            const KernelFn* row = kKernels[a_levels[ir / kPanel]];
            for (int64_t jr = 0; jr < nc; jr += kPanel)
              row[b_levels[jr / kPanel]](cn, a_panel + c0 * kChunkElems,
                                         pb + jr / kPanel * panel_elems + c0 * kChunkElems,
                                         strip + jr, ld, c0 > 0);
          }
          strip_out(strip, ld, rows, nc, pr.alpha, beta,
                    last_pass && pr.bias ? pr.bias + j0 + jc : nullptr, c_rows, pr.ldc);
        }
      }
    }
  }
  _tile_release();
}

bool cpu_has_amx_bf16() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool amx = (d >> 22 & 1) && (d >> 24 & 1);  // AMX-BF16, AMX-TILE
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  const bool avx512_bf16 = a >> 5 & 1;
  return amx && avx512_bf16 && sgemm_avx512_supported();
}

// Linux keeps the 8 KB AMX tile state off until a process asks for it (once; all threads).
bool request_amx_permission() {
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

}  // namespace

bool sgemm_amx_supported() {
  static const bool ok = cpu_has_amx_bf16() && request_amx_permission();
  return ok;
}

void sgemm_amx(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
               const float* bias) {
  if (m <= 0 || n <= 0) return;
  MCORE_CHECK(sgemm_amx_supported())
      << "sgemm_amx: this CPU or kernel offers no AMX-BF16; check sgemm_amx_supported() first";
  const Problem pr{ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias};
  if (k <= 0 || alpha == 0.0f) return gemm_driver::scale_c(pr);
  gemm_driver::run(pr, gemm_driver::threads_for(m, n, k), kPanel, kPanel, kPackWeight, &amx_region);
}

}  // namespace mcore::ops::cpu

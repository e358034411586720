#include "mcore/ops/cpu/sgemm_avx512.h"

#include <immintrin.h>

#include <algorithm>

#include "mcore/base/error.h"
#include "mcore/ops/cpu/avx512_util.h"
#include "mcore/ops/cpu/gemm_driver.h"

namespace mcore::ops::cpu {

namespace {

using avx512::lane_mask;
using avx512::pack_transposed;

// Register tile: MR rows x NR = 16 NV columns of C in MR * NV zmm accumulators (24 of 32), with
// the NV B vectors and the broadcast A values in the rest. Vectors run along N because C and the
// non-transposed B are row-major, so C tiles are stored with plain (masked) row stores. 8 x 48
// measured best in isolation (94% of peak from L1) among 14x32, 12x32, 6x64, 8x48, 9x48, 5x80:
// the broadcast loads, one per row per k, are what costs, so wider rows pay less per FMA; and
// 8 and 48 divide the GPT-2 shapes (M = 4096/512, N = 768/2304/3072/50304) with no edge tiles.
// Hidden sizes that are powers of two (512, 1024, 4096: LLaMA-style models) leave a 32-wide
// edge panel every 48 columns would waste a third of, so those take the 6 x 64 tile instead.
template <int MR, int NV>
struct Tile {
  static constexpr int kMr = MR, kNv = NV, kNr = 16 * NV;
};
using Tile8x48 = Tile<8, 3>;
using Tile6x64 = Tile<6, 4>;

// Cache blocking (Emerald Rapids: L1d 48 KB, L2 2 MB per core). An A micro-panel (kMr x kc, up
// to 24 KB) stays in L1 while the microkernel streams the B block (kc x nc, ~768 KB) from L2;
// the A block (kMc x kc) is read once per B block from L3. The largest kc that fits L1 is best
// (fewer passes over C; K = 768 takes one); nc then shrinks to keep the B block's size, which
// measured best at ~768 KB (both larger and smaller lose a few %).
constexpr int64_t kKcMax = 768;
constexpr int64_t kBBlockBytes = 768 * 1024;
// Rows of C per A block: the transformer shapes (M <= 4096 per thread) take one or two.
constexpr int64_t kMcRows = 2048;

struct Blocking {
  int64_t k_blocks, kc_max, nc;
};
Blocking blocking(int64_t k, int64_t nr) {
  Blocking bl;
  // Split K into near-equal blocks so no block is a short remainder.
  bl.k_blocks = (k + kKcMax - 1) / kKcMax;
  bl.kc_max = (k + bl.k_blocks - 1) / bl.k_blocks;
  bl.nc = std::max<int64_t>(1, kBBlockBytes / (bl.kc_max * 4) / nr) * nr;
  return bl;
}
inline int64_t k_begin(const Blocking& bl, int64_t k, int64_t kb) {
  return k * kb / bl.k_blocks;
}

// Copies a block whose panel rows are contiguous (element (p, i) at src[p * ld + i]) into
// dst[p * dst_ld + i] for i < width, zero-padding lanes [width, pad).
MCORE_AVX512 void pack_direct(const float* src, int64_t ld, int64_t width, int64_t cols, float* dst,
                              int64_t dst_ld, int pad) {
  for (int64_t p = 0; p < cols; ++p) {
    const float* s = src + p * ld;
    float* d = dst + p * dst_ld;
    for (int v = 0; v < pad; v += 16) {
      __m512 x = _mm512_maskz_loadu_ps(lane_mask(width - v), s + v);
      _mm512_mask_storeu_ps(d + v, lane_mask(pad - v), x);
    }
  }
}

// Packs op(A)[i0 : i0+mc, p0 : p0+kc] = A^T[...] (A's rows along K: the weight gradient's dY^T)
// as MR-row panels, each kc x MR (k-major), zero-padded. Walking one MR-wide panel down all kc
// rows would touch kc far-apart rows (a TLB miss each, part of each line used); instead take kPb
// rows at a time across every panel, so each source line is used whole while it is in L1 and only
// kPb rows' pages are live. A non-transposed A is not packed: the microkernel reads its rows.
template <int MR>
MCORE_AVX512 void pack_a_transposed(const float* a, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
                                    int64_t kc, float* dst) {
  constexpr int64_t kPb = 16;
  for (int64_t pc = 0; pc < kc; pc += kPb) {
    const int64_t pn = std::min(kPb, kc - pc);
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int64_t rows = std::min<int64_t>(MR, mc - ir);
      pack_direct(a + (p0 + pc) * lda + i0 + ir, lda, rows, pn, dst + ir * kc + pc * MR, MR, MR);
    }
  }
}

// Packs op(B)[p0 : p0+kc, j0 : j0+nc] as NR-column panels, each kc x NR (k-major), zero-padded.
template <int NV>
MCORE_AVX512 void pack_b(bool tb, const float* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
                         int64_t nc, float* dst) {
  constexpr int kNr = 16 * NV;
  for (int64_t jr = 0; jr < nc; jr += kNr) {
    const int64_t cols = std::min<int64_t>(kNr, nc - jr);
    float* d = dst + jr * kc;
    if (!tb) {
      pack_direct(b + p0 * ldb + j0 + jr, ldb, cols, kc, d, kNr, kNr);
    } else {
      for (int v = 0; v < NV; ++v) {
        const int64_t w = std::min<int64_t>(16, cols - 16 * v);
        if (w <= 0) {
          for (int64_t p = 0; p < kc; ++p)
            _mm512_storeu_ps(d + p * kNr + 16 * v, _mm512_setzero_ps());
        } else {
          pack_transposed(b + (j0 + jr + 16 * v) * ldb + p0, ldb, w, kc, d + 16 * v, kNr, 16);
        }
      }
    }
  }
}

// C[0:mr, 0:nr] = alpha * (A panel @ packed B panel) + beta * C (+ bias[0:nr] on every row when
// bias is given); C is not read when beta is 0.
// pb: kc x NR, k-major. A is either packed (kRowsA false: pa is kc x MR, k-major) or read in
// place (kRowsA true: row i of the panel starts at pa + i * lda, k contiguous). Reading A in
// place saves packing it (a 16x16 transpose per 8 x 16 block, 2-4% of a 512-row GEMM); the
// panel's MR rows are each read sequentially and stay in L1 across the row of B panels, as the
// packed panel does.
template <int MR, int NV, bool kRowsA>
MCORE_AVX512 __attribute__((noinline)) void micro_kernel(int64_t kc, const float* __restrict pa,
                                                         int64_t lda, const float* __restrict pb,
                                                         float* c, int64_t ldc, float alpha,
                                                         float beta, int64_t mr, int64_t nr,
                                                         const float* bias) {
  constexpr int kNr = 16 * NV;
  __m512 acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  // Rows past mr read row 0 (in bounds) and are not stored.
  const float* arow[MR];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) arow[i] = pa + (i < mr ? i : 0) * lda;
    // Fetch the C tile for writing now, so its read-for-ownership misses (C is usually far larger
    // than the caches) overlap the k loop instead of stalling the stores at the end: 24 lines per
    // ~9000 cycles of FMAs, measured +1-3.5% at the 4096-row shapes. No prefetch of B inside the
    // loop: the hardware prefetchers keep up, and prefetches compete with the broadcasts for the
    // load ports (measured 1-5% slower).
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      if (16 * v < nr)
        _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16 * v), _MM_HINT_ET0);
  }
#pragma GCC unroll 2
  for (int64_t p = 0; p < kc; ++p) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(pb + p * kNr + 16 * v);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(kRowsA ? arow[i][p] : pa[p * MR + i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  __mmask16 mask[NV];
  for (int v = 0; v < NV; ++v) mask[v] = lane_mask(nr - 16 * v);
  __m512 vbias[NV];
  for (int v = 0; v < NV; ++v)
    vbias[v] = bias ? _mm512_maskz_loadu_ps(mask[v], bias + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
    float* crow = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      __m512 r = _mm512_mul_ps(va, acc[i][v]);
      if (beta != 0.0f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], crow + 16 * v), r);
      // The explicit-rounding add is never contracted into an FMA with the alpha product, so
      // the result is bit-identical to adding the bias in a second pass.
      if (bias) r = _mm512_add_round_ps(r, vbias[v], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm512_mask_storeu_ps(crow + 16 * v, mask[v], r);
    }
  }
}

using gemm_driver::Problem;
using gemm_driver::round_up;
using gemm_driver::Scratch;

// All microkernel calls for an A block (rows [i0, i0+mc) of C) and a packed B block (columns
// [j0, j0+nc)): the A micro-panel stays in L1 across the row of calls. pa is the packed A block,
// or (kRowsA) op(A)'s element (i0, p0) in place.
template <class T, bool kRowsA>
MCORE_AVX512 void compute_block(const Problem& pr, const float* pa, const float* pb, int64_t kc,
                                float beta, int64_t i0, int64_t mc, int64_t j0, int64_t nc,
                                bool add_bias) {
  for (int64_t ir = 0; ir < mc; ir += T::kMr) {
    float* crow = pr.c + (i0 + ir) * pr.ldc + j0;
    const float* a = kRowsA ? pa + ir * pr.lda : pa + ir * kc;
    for (int64_t jr = 0; jr < nc; jr += T::kNr) {
      micro_kernel<T::kMr, T::kNv, kRowsA>(kc, a, pr.lda, pb + jr * kc, crow + jr, pr.ldc, pr.alpha,
                                           beta, std::min<int64_t>(T::kMr, mc - ir),
                                           std::min<int64_t>(T::kNr, nc - jr),
                                           add_bias ? pr.bias + j0 + jr : nullptr);
    }
  }
}

// The whole blocked algorithm on the C region [i0, i0+mt) x [j0, j0+nt), on one thread. Threads
// pack their own B blocks (and A blocks, when transposed): sharing packed blocks between the
// cores (each thread packing a slice, with barriers) measured 2-10% slower despite the halved
// packing, as reading the other core's slices costs more than packing them.
template <class T>
MCORE_AVX512 void gemm_region(const Problem& pr, int64_t i0, int64_t mt, int64_t j0, int64_t nt) {
  if (mt <= 0 || nt <= 0) return;
  const Blocking bl = blocking(pr.k, T::kNr);
  constexpr int64_t kMc = kMcRows / T::kMr * T::kMr;
  thread_local Scratch a_buf, b_buf;
  float* pa = pr.ta ? a_buf.get<float>(std::min(kMc, round_up(mt, T::kMr)) * bl.kc_max) : nullptr;
  float* pb = b_buf.get<float>(std::min(bl.nc, round_up(nt, T::kNr)) * bl.kc_max);
  for (int64_t kb = 0; kb < bl.k_blocks; ++kb) {
    const int64_t p0 = k_begin(bl, pr.k, kb), kc = k_begin(bl, pr.k, kb + 1) - p0;
    const float beta = kb == 0 ? pr.beta : 1.0f;             // later K blocks accumulate
    const bool add_bias = pr.bias && kb + 1 == bl.k_blocks;  // once, onto the whole sum
    for (int64_t ic = 0; ic < mt; ic += kMc) {
      const int64_t mc = std::min(kMc, mt - ic);
      if (pr.ta) pack_a_transposed<T::kMr>(pr.a, pr.lda, i0 + ic, mc, p0, kc, pa);
      for (int64_t jc = 0; jc < nt; jc += bl.nc) {
        const int64_t nc = std::min(bl.nc, nt - jc);
        pack_b<T::kNv>(pr.tb, pr.b, pr.ldb, p0, kc, j0 + jc, nc, pb);
        if (pr.ta) {
          compute_block<T, false>(pr, pa, pb, kc, beta, i0 + ic, mc, j0 + jc, nc, add_bias);
        } else {
          compute_block<T, true>(pr, pr.a + (i0 + ic) * pr.lda + p0, pb, kc, beta, i0 + ic, mc,
                                 j0 + jc, nc, add_bias);
        }
      }
    }
  }
}

// Padded tile area over C's area: the FMAs spent on edge tiles' zero lanes and rows.
template <class T>
double tile_waste(int64_t m, int64_t n) {
  return double(round_up(m, T::kMr)) * double(round_up(n, T::kNr)) / (double(m) * double(n));
}

// Per unit of K, a region costs rows * cols / 32 cycles of FMAs and about (rows + cols) / 2
// cycles of packing: packing an element weighs 16 elements of C.
constexpr double kPackWeight = 16.0;

template <class T>
void sgemm_tiled(const Problem& pr, int threads) {
  gemm_driver::run(pr, threads, T::kMr, T::kNr, kPackWeight, &gemm_region<T>);
}

}  // namespace

bool sgemm_avx512_supported() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("fma");
}

void sgemm_avx512(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                  const float* bias) {
  if (m <= 0 || n <= 0) return;
  const Problem pr{ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias};
  if (k <= 0 || alpha == 0.0f) return gemm_driver::scale_c(pr);
  const int threads = gemm_driver::threads_for(m, n, k);
  // 8 x 48 unless 6 x 64 wastes clearly less on edge tiles (N = 512, 1024, ...).
  if (tile_waste<Tile6x64>(m, n) < 0.98 * tile_waste<Tile8x48>(m, n))
    return sgemm_tiled<Tile6x64>(pr, threads);
  sgemm_tiled<Tile8x48>(pr, threads);
}

}  // namespace mcore::ops::cpu

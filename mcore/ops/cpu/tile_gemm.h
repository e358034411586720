// Small dense products on the calling thread, for blocked kernels that multiply tiles already in
// cache (the fused attention's 64 x 128 score tiles against 64-wide heads). The general GEMM
// (sgemm_avx512.h) packs both operands into panels on every call, which costs as much as a
// fifth of the arithmetic at these sizes; here A is read in place with any row and column stride
// (so a tile and its transpose are the same operand) and B is read as rows of contiguous floats
// grouped in 64-column panels, a layout callers build once (K^T of a whole head) and reuse for
// every tile. A band limit skips the work a causal mask would discard on diagonal tiles.
#pragma once

#include <cstdint>
#include <limits>

namespace mcore::ops::cpu {

// B for tile_gemm: element (p, j) at data[(j / 64) * panel + p * ld + j % 64]. A row-major
// matrix with row stride ld is {data, ld, 64}; 64-column panels stored one after another are
// {data, 64, 64 * k}.
template <class T>
struct TileB {
  const T* data;
  int64_t ld;
  int64_t panel = 64;
};

// Which parts of a tile product can be skipped (causal diagonal tiles): row i of C is needed
// only in columns j < i + n_end, and row i of op(A) is zero outside columns
// [i + k_begin, i + k_end). Skipped entries of C are left unwritten. The defaults skip nothing.
struct TileBand {
  static constexpr int64_t kNone = std::numeric_limits<int64_t>::max() / 4;
  int64_t n_end = kNone;
  int64_t k_begin = -kNone;
  int64_t k_end = kNone;
};

// C[m, n] = alpha * op(A) B + beta * C, with op(A)(i, p) = a[i * a_row + p * a_col]. When beta
// is 0, C is not read. Runs on the calling thread only (meant for use inside parallel regions);
// AVX-512 where the CPU has it (float), the BLAS GEMM otherwise or when the OpenBLAS backend is
// forced (cpu::set_sgemm_backend, MCORE_GEMM=openblas).
void tile_gemm(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t a_row,
               int64_t a_col, const TileB<float>& b, float beta, float* c, int64_t ldc,
               const TileBand& band = {});
void tile_gemm(int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t a_row,
               int64_t a_col, const TileB<double>& b, double beta, double* c, int64_t ldc,
               const TileBand& band = {});

// dst[c * dst_ld + r] = src[r * ld + c] for r < rows, c < cols: the rows of a row-major block
// become columns (packing K^T for tile_gemm's B). 16x16 register transposes with AVX-512.
void transpose_block(const float* src, int64_t ld, int64_t rows, int64_t cols, float* dst,
                     int64_t dst_ld);
void transpose_block(const double* src, int64_t ld, int64_t rows, int64_t cols, double* dst,
                     int64_t dst_ld);

}  // namespace mcore::ops::cpu

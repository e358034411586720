// The plumbing mcore's two fp32 GEMM kernels share (sgemm_avx512.cpp: FMA register tiles;
// sgemm_amx.cpp: AMX tiles): the BLAS-style problem, per-thread packing buffers, how many
// threads a product is worth, and how the threads divide it. A kernel supplies one function that
// computes a rectangle of C on the calling thread; run() either gives each thread a rectangle of
// a grid over C, or, for long-K products with a small C, a slice of K summed at the end.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mcore::ops::cpu::gemm_driver {

// Row-major C[m, n] = alpha * op(A)[m, k] @ op(B)[k, n] + beta * C (+ bias[j] on column j).
struct Problem {
  bool ta, tb;
  int64_t m, n, k;
  float alpha;
  const float* a;
  int64_t lda;
  const float* b;
  int64_t ldb;
  float beta;
  float* c;
  int64_t ldc;
  const float* bias;  // per column of C, added after the product (nullptr: none)
};

inline int64_t round_up(int64_t x, int64_t to) {
  return (x + to - 1) / to * to;
}

// A packing buffer kept per thread across calls, grown on demand. It is 2 MB aligned and marked
// for transparent huge pages: the kernels stream through hundreds of KB of packed panels per
// call, and 4 KB pages would cost a TLB miss every few k steps.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch();
  template <class T>
  T* get(size_t n) {
    return static_cast<T*>(bytes(n * sizeof(T)));
  }

 private:
  void* bytes(size_t n);
  void* ptr_ = nullptr;
  size_t cap_ = 0;
};

// C = beta * C (+ bias): the whole product when k == 0 or alpha == 0. beta == 0 writes zeros
// without reading C (BLAS semantics: NaNs there are overwritten).
void scale_c(const Problem& pr);

// Threads worth waking for this product: at most the OpenMP pool (1 inside a parallel region),
// and few enough that each gets at least a few MFLOP.
int threads_for(int64_t m, int64_t n, int64_t k);

// Computes the region [i0, i0+mt) x [j0, j0+nt) of pr's C on the calling thread.
using RegionFn = void (*)(const Problem& pr, int64_t i0, int64_t mt, int64_t j0, int64_t nt);

// Runs the product on `threads` threads. Regions are whole multiples of the kernel's tile
// (tile_m x tile_n) except at C's edges. pack_weight is the cost of packing one element of A or
// B relative to the tile's arithmetic per element of C and unit K (it steers the grid's shape).
void run(const Problem& pr, int threads, int64_t tile_m, int64_t tile_n, double pack_weight,
         RegionFn region);

}  // namespace mcore::ops::cpu::gemm_driver

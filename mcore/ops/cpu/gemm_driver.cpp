#include "mcore/ops/cpu/gemm_driver.h"

#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "mcore/base/error.h"

namespace mcore::ops::cpu::gemm_driver {

namespace {

// Below this many flops per thread, waking more threads costs more than it saves.
constexpr double kMinFlopsPerThread = 4e6;

// Long-K products with a small C (the output layer's input gradient, 512 x 768 x 50304): a
// grid split over C makes every thread pack and stream all of one operand from memory (each
// 100+ MB), so the threads split K instead, each summing its share of the K range into its own
// copy of C (thread 0 straight into C), and the copies are added at the end. C is small, so
// the extra buffer and the final pass cost little beside halving the operand traffic.
constexpr int64_t kSplitKRatio = 8;
constexpr int64_t kSplitKMaxC = int64_t(1) << 20;

void split_k(const Problem& pr, int threads, RegionFn region) {
  const int64_t m = pr.m, n = pr.n, k = pr.k;
  thread_local Scratch partial_buf;  // of the calling thread; outlives the parallel region
  float* partial = partial_buf.get<float>(static_cast<size_t>(threads - 1) * m * n);
  auto run_slice = [&](int t) {
    const int64_t k0 = k * t / threads, k1 = k * (t + 1) / threads;
    Problem sub = pr;
    sub.bias = nullptr;  // added once, in the final sum
    sub.k = k1 - k0;
    sub.a = pr.ta ? pr.a + k0 * pr.lda : pr.a + k0;
    sub.b = pr.tb ? pr.b + k0 : pr.b + k0 * pr.ldb;
    if (t > 0) {
      sub.c = partial + static_cast<size_t>(t - 1) * m * n;
      sub.ldc = n;
      sub.beta = 0.0f;
    }
    if (sub.k > 0) {
      region(sub, 0, m, 0, n);
    } else {
      scale_c(sub);
    }
  };
#pragma omp parallel num_threads(threads)
  {
    for (int t = omp_get_thread_num(); t < threads; t += omp_get_num_threads()) run_slice(t);
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t i = 0; i < m; ++i) {
      float* crow = pr.c + i * pr.ldc;
      for (int t = 1; t < threads; ++t) {
        const float* prow = partial + static_cast<size_t>(t - 1) * m * n + i * n;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) crow[j] += prow[j];
      }
      if (pr.bias) {
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) crow[j] += pr.bias[j];
      }
    }
  }
}

// Chooses a tm x tn grid of per-thread C regions: the one that minimizes the work of the largest
// region plus what each thread packs (its rows of A and its columns of B, times K).
void choose_grid(int64_t m, int64_t n, int threads, int64_t tile_m, int64_t tile_n,
                 double pack_weight, int& tm, int& tn) {
  tm = 1, tn = threads;
  double best = -1;
  const int64_t m_tiles = (m + tile_m - 1) / tile_m, n_tiles = (n + tile_n - 1) / tile_n;
  for (int x = 1; x <= threads; ++x) {
    if (threads % x) continue;
    const int y = threads / x;
    if (x > m_tiles || y > n_tiles) continue;
    // Rounded-up region sizes, so a split that leaves one thread a larger share loses.
    const double rows = double((m_tiles + x - 1) / x) * tile_m;
    const double cols = double((n_tiles + y - 1) / y) * tile_n;
    const double cost = rows * cols + pack_weight * (rows + cols);
    if (best < 0 || cost < best) best = cost, tm = x, tn = y;
  }
}

}  // namespace

Scratch::~Scratch() {
  std::free(ptr_);
}

void* Scratch::bytes(size_t n) {
  if (n > cap_) {
    std::free(ptr_);
    constexpr size_t kHuge = size_t(2) << 20;
    const size_t bytes = (n + kHuge - 1) / kHuge * kHuge;
    ptr_ = std::aligned_alloc(kHuge, bytes);
    MCORE_CHECK(ptr_) << "gemm: cannot allocate " << bytes << " bytes of packing buffer";
    madvise(ptr_, bytes, MADV_HUGEPAGE);  // a hint; harmless where THP is off
    cap_ = bytes;
  }
  return ptr_;
}

void scale_c(const Problem& pr) {
#pragma omp parallel for schedule(static) if (pr.m * pr.n > (1 << 16) && !omp_in_parallel())
  for (int64_t i = 0; i < pr.m; ++i) {
    float* row = pr.c + i * pr.ldc;
    if (pr.beta == 0.0f) {
      std::memset(row, 0, pr.n * sizeof(float));
    } else {
      for (int64_t j = 0; j < pr.n; ++j) row[j] *= pr.beta;
    }
    if (pr.bias) {
      for (int64_t j = 0; j < pr.n; ++j) row[j] += pr.bias[j];
    }
  }
}

int threads_for(int64_t m, int64_t n, int64_t k) {
  const int pool = omp_in_parallel() ? 1 : omp_get_max_threads();
  const double flops = 2.0 * m * n * k;
  return static_cast<int>(std::max<double>(1, std::min<double>(pool, flops / kMinFlopsPerThread)));
}

void run(const Problem& pr, int threads, int64_t tile_m, int64_t tile_n, double pack_weight,
         RegionFn region) {
  const int64_t m = pr.m, n = pr.n;
  if (threads > 1 && pr.k >= kSplitKRatio * std::max(m, n) && m * n <= kSplitKMaxC)
    return split_k(pr, threads, region);
  const int64_t m_tiles = (m + tile_m - 1) / tile_m, n_tiles = (n + tile_n - 1) / tile_n;
  int tm, tn;
  choose_grid(m, n, threads, tile_m, tile_n, pack_weight, tm, tn);
  threads = tm * tn;
  auto run_region = [&](int t) {
    const int x = t / tn, y = t % tn;
    const int64_t r0 = std::min(m, m_tiles * x / tm * tile_m);
    const int64_t r1 = std::min(m, m_tiles * (x + 1) / tm * tile_m);
    const int64_t c0 = std::min(n, n_tiles * y / tn * tile_n);
    const int64_t c1 = std::min(n, n_tiles * (y + 1) / tn * tile_n);
    if (r1 > r0 && c1 > c0) region(pr, r0, r1 - r0, c0, c1 - c0);
  };
  if (threads == 1) return run_region(0);
    // The runtime may grant fewer threads than asked for; then threads take several regions.
#pragma omp parallel num_threads(threads)
  for (int t = omp_get_thread_num(); t < threads; t += omp_get_num_threads()) run_region(t);
}

}  // namespace mcore::ops::cpu::gemm_driver

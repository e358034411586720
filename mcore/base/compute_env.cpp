#include "mcore/base/compute_env.h"

#include <omp.h>
#include <xmmintrin.h>

#include <atomic>

namespace mcore {

namespace {
constexpr unsigned kFtz = 0x8000;  // MXCSR flush-to-zero
constexpr unsigned kDaz = 0x0040;  // MXCSR denormals-are-zero

void set_flags() {
  _mm_setcsr(_mm_getcsr() | kFtz | kDaz);
}

std::atomic<int> g_initialized_threads{0};

// Runs at library load so even code that never calls into mcore's kernels gets the setting.
struct LoadTimeInit {
  LoadTimeInit() { init_compute_environment(); }
} g_load_time_init;
}  // namespace

void init_compute_environment() {
  set_flags();
  int want = omp_get_max_threads();
  if (g_initialized_threads.load() >= want) return;
#pragma omp parallel
  set_flags();
  g_initialized_threads = want;
}

bool denormals_flushed() {
  return (_mm_getcsr() & (kFtz | kDaz)) == (kFtz | kDaz);
}

}  // namespace mcore

// Builds without the CUDA backend: the GPU memory API exists but reports that it is absent.
// With the backend, mcore/tensor/cuda/cuda_allocator.cpp and pinned_memory.cpp define these.
#include "mcore/tensor/cuda_memory.h"

#ifndef MCORE_WITH_CUDA

namespace mcore {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  MCORE_FAIL() << what
               << ": mcore was built without CUDA (configure with nvcc on PATH and "
                  "-DMCORE_CUDA=ON)";
  throw 0;  // unreachable
}
}  // namespace

CudaMemoryStats cuda_memory_stats(int) {
  no_cuda("cuda_memory_stats");
}
void cuda_empty_cache() {
  no_cuda("cuda_empty_cache");
}
void reset_peak_cuda_memory_stats(int) {
  no_cuda("reset_peak_cuda_memory_stats");
}
void record_stream(const Tensor&, void*) {
  no_cuda("record_stream");
}
Tensor pin_memory(const Tensor&) {
  no_cuda("pin_memory");
}
bool is_pinned(const Tensor&) {
  return false;
}

}  // namespace mcore

#endif  // MCORE_WITH_CUDA

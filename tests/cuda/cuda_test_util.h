// Helpers for the CUDA tests (binary mcore_cuda_tests, CTest labels `cuda;gpu`). Every test
// starts with MCORE_REQUIRE_GPU(), so on a machine without a GPU (or a build without CUDA) the
// tests report as skipped instead of failing.
#pragma once

#include <gtest/gtest.h>

#include "mcore/tensor/tensor.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/tensor/cuda/cuda_runtime.h"
#define MCORE_REQUIRE_GPU()                                                   \
  do {                                                                        \
    if (::mcore::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
  } while (0)
#else
#define MCORE_REQUIRE_GPU() GTEST_SKIP() << "mcore built without CUDA"
#endif

namespace mcore::testing {

// The tensor on cuda:0.
inline Tensor to_gpu(const Tensor& t) {
  return t.to(Device::cuda(0));
}
// The tensor on the CPU.
inline Tensor to_cpu(const Tensor& t) {
  return t.to(Device::cpu());
}

}  // namespace mcore::testing

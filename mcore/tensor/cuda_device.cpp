// Builds without the CUDA backend: no GPUs. With the backend, mcore/tensor/cuda/cuda_device.cpp
// defines these.
#include "mcore/tensor/cuda_device.h"

#ifndef MCORE_WITH_CUDA

#include "mcore/base/error.h"

namespace mcore {

bool cuda_built() {
  return false;
}
int cuda_device_count() {
  return 0;
}
Device current_cuda_device() {
  MCORE_FAIL() << "current_cuda_device: mcore was built without CUDA (configure with nvcc on "
                  "PATH and -DMCORE_CUDA=ON)";
  return Device::cpu();  // unreachable
}
void set_cuda_device(int index) {
  MCORE_FAIL() << "set_cuda_device(" << index
               << "): mcore was built without CUDA (configure with nvcc on PATH and "
                  "-DMCORE_CUDA=ON)";
}
void cuda_synchronize() {}

}  // namespace mcore

#endif  // MCORE_WITH_CUDA

// The CUDA build's definitions of mcore/tensor/cuda_device.h.
#include "mcore/tensor/cuda_device.h"

#include "mcore/tensor/cuda/cuda_runtime.h"

namespace mcore {

bool cuda_built() {
  return true;
}
int cuda_device_count() {
  return cuda::device_count();
}
Device current_cuda_device() {
  const int n = cuda::device_count();
  MCORE_CHECK(n > 0) << "current_cuda_device: no CUDA device is visible (check "
                        "CUDA_VISIBLE_DEVICES and the driver)";
  return Device::cuda(cuda::current_device());
}
void set_cuda_device(int index) {
  const int n = cuda::device_count();
  MCORE_CHECK(index >= 0 && index < n)
      << "set_cuda_device(" << index << "): " << n << " CUDA device(s) visible";
  cuda::set_device(index);
}
void cuda_synchronize() {
  if (cuda::device_count() > 0) cuda::synchronize();
}

}  // namespace mcore

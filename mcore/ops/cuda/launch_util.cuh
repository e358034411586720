// Small host-side helpers shared by the attention, optimizer and FP8 kernels: run on the
// tensor's device, grid sizes, and the typed device pointer of a tensor.
#pragma once

#include <cstdint>

#include "mcore/tensor/cuda/cuda_runtime.h"
#include "mcore/tensor/tensor.h"

namespace mcore::ops::cuda {

// Makes the tensor's device current for the scope (kernels launch on the current device's
// stream), restoring the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(const Device& d) : prev_(mcore::cuda::current_device()) {
    if (d.index != prev_) mcore::cuda::set_device(d.index);
    now_ = d.index;
  }
  ~DeviceGuard() {
    if (now_ != prev_) mcore::cuda::set_device(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
  int now_ = 0;
};

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Grid for a grid-stride loop over n elements: enough blocks to fill the GPU several times
// over, never more than needed.
inline unsigned grid_for(int64_t n, int threads, int64_t max_blocks = 65535) {
  int64_t blocks = ceil_div(n, threads);
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < max_blocks ? blocks : max_blocks);
}

// The tensor's device memory as T* (T a CUDA element type whose size matches the dtype's).
template <class T>
T* dev_ptr(const Tensor& t) {
  MCORE_CHECK(t.element_size() == sizeof(T))
      << "internal: element size " << t.element_size() << " of " << t.dtype() << " tensor "
      << shape_str(t.shape()) << " does not match the kernel's type";
  return static_cast<T*>(t.data_ptr());
}

// Every tensor defined and on the same CUDA device as the first.
inline void check_same_cuda(std::initializer_list<Tensor> tensors, const char* op) {
  const Tensor* first = nullptr;
  for (const Tensor& t : tensors) {
    MCORE_CHECK(t.defined()) << op << ": undefined tensor argument";
    if (!first) first = &t;
    MCORE_CHECK(t.device() == first->device())
        << op << ": tensors on different devices (" << first->device() << " "
        << shape_str(first->shape()) << " and " << t.device() << " " << shape_str(t.shape())
        << "); move them to one CUDA device";
  }
}

}  // namespace mcore::ops::cuda

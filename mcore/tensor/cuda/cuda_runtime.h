// The CUDA runtime seam every CUDA source of mcore uses: error checking that names the failing
// call, the current device and the current stream. Kernels launch on current_stream(); the
// caching allocator hands out memory per (device, stream), and NCCL follows the same stream
// (comm::set_nccl_caller_stream), so one stream orders a whole training step.
//
// Only CUDA sources (and .cpp files compiled when MCORE_WITH_CUDA is defined) include this.
#pragma once

#include <cuda_runtime.h>

#include "mcore/base/error.h"

// Runs a CUDA runtime call; on failure throws mcore::Error with the call's text, file:line and
// CUDA's own message.
#define MCORE_CUDA_CHECK(expr)                                               \
  do {                                                                       \
    cudaError_t mcore_cuda_err_ = (expr);                                    \
    MCORE_CHECK(mcore_cuda_err_ == cudaSuccess)                              \
        << #expr << " failed: " << cudaGetErrorName(mcore_cuda_err_) << ": " \
        << cudaGetErrorString(mcore_cuda_err_);                              \
  } while (0)

// After a kernel launch: reports launch-configuration errors at the launch site.
#define MCORE_CUDA_CHECK_LAUNCH(name) MCORE_CUDA_CHECK(cudaGetLastError())

namespace mcore::cuda {

// Number of visible CUDA devices; 0 when there is no driver or no GPU (never throws).
int device_count();
bool is_available();
int current_device();
void set_device(int device);

// The stream this thread's kernels run on for the current device. Defaults to a per-device
// non-blocking stream created on first use (not the legacy default stream, which would
// serialize with every other library).
cudaStream_t current_stream();
void set_current_stream(cudaStream_t stream);
// The current stream of this thread for `device` (which need not be the current device).
cudaStream_t current_stream(int device);

// Blocks the host until the current stream's work is done.
void synchronize();

// Makes `device` current for its scope and restores the previous device on exit (no-op when
// it already is current, or when device < 0).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

}  // namespace mcore::cuda

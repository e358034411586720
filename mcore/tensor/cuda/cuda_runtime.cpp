#include "mcore/tensor/cuda/cuda_runtime.h"

#include <mutex>

namespace mcore::cuda {

namespace {

// Enough for any node; indices are checked against device_count() before use.
constexpr int kMaxDevices = 64;

int query_device_count() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver"/"no device" error
    return 0;
  }
  return n < kMaxDevices ? n : kMaxDevices;
}

// The lazily created per-device default streams. Never destroyed: kernels may still be queued
// on them while static destructors run, and the driver tears them down at exit anyway.
struct DefaultStreams {
  std::once_flag once[kMaxDevices];
  cudaStream_t stream[kMaxDevices] = {};
};
DefaultStreams& default_streams() {
  static DefaultStreams* d = new DefaultStreams;
  return *d;
}

// Per thread: the stream set with set_current_stream for each device (a null stream is a valid
// choice, the legacy default stream, hence the separate flag).
thread_local cudaStream_t t_stream[kMaxDevices] = {};
thread_local bool t_stream_set[kMaxDevices] = {};

void check_index(int device, const char* what) {
  const int n = device_count();
  MCORE_CHECK(device >= 0 && device < n)
      << what << ": CUDA device " << device << " does not exist (" << n
      << " visible device(s); check CUDA_VISIBLE_DEVICES)";
}

}  // namespace

int device_count() {
  static const int n = query_device_count();
  return n;
}

bool is_available() {
  return device_count() > 0;
}

int current_device() {
  MCORE_CHECK(is_available()) << "current_device: no CUDA device is available";
  int d = 0;
  MCORE_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

void set_device(int device) {
  check_index(device, "set_device");
  MCORE_CUDA_CHECK(cudaSetDevice(device));
}

cudaStream_t current_stream(int device) {
  check_index(device, "current_stream");
  if (t_stream_set[device]) return t_stream[device];
  DefaultStreams& d = default_streams();
  std::call_once(d.once[device], [&] {
    DeviceGuard guard(device);
    MCORE_CUDA_CHECK(cudaStreamCreateWithFlags(&d.stream[device], cudaStreamNonBlocking));
  });
  return d.stream[device];
}

cudaStream_t current_stream() {
  return current_stream(current_device());
}

void set_current_stream(cudaStream_t stream) {
  const int device = current_device();
  t_stream[device] = stream;
  t_stream_set[device] = true;
}

void synchronize() {
  MCORE_CUDA_CHECK(cudaStreamSynchronize(current_stream()));
}

DeviceGuard::DeviceGuard(int device) {
  if (device < 0) return;
  int cur = 0;
  MCORE_CUDA_CHECK(cudaGetDevice(&cur));
  if (cur != device) {
    MCORE_CUDA_CHECK(cudaSetDevice(device));
    prev_ = cur;
  }
}

DeviceGuard::~DeviceGuard() {
  if (prev_ >= 0) (void)cudaSetDevice(prev_);
}

}  // namespace mcore::cuda

// copy_tensor / fill_tensor when a GPU is involved. Conversions and strided layouts are handled
// on the device; host<->device transfers move contiguous bytes in the source or destination
// dtype, staging through a contiguous temporary only when a layout or dtype differs. Every
// transfer runs on the current stream of the device involved; device-to-host copies wait for
// their data, host-to-device copies return once the source was read (pageable) or stay
// asynchronous (pinned, see pinned_memory.cpp).
#include <cstring>

#include "mcore/tensor/copy.h"
#include "mcore/tensor/cuda/copy_kernels.h"
#include "mcore/tensor/cuda/cuda_runtime.h"
#include "mcore/tensor/cuda/pinned_memory.h"
#include "mcore/tensor/cuda/tensor_cuda.h"
#include "mcore/tensor/factory.h"

namespace mcore::cuda {

namespace {

using detail::StridedLayout;

// The iteration space of `shape` with size-1 dimensions dropped and neighbours merged where
// both operands are contiguous across them, so most copies become 1-3 dimensional.
StridedLayout collapse(const Shape& shape, const Shape& dst_strides, const Shape& src_strides) {
  StridedLayout l;
  int64_t sizes[64], ds[64], ss[64];
  int nd = 0;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    if (nd > 0 && ds[nd - 1] == dst_strides[i] * shape[i] &&
        ss[nd - 1] == src_strides[i] * shape[i]) {
      sizes[nd - 1] *= shape[i];
      ds[nd - 1] = dst_strides[i];
      ss[nd - 1] = src_strides[i];
      continue;
    }
    MCORE_CHECK(nd < 64) << "CUDA copy: too many dimensions in " << shape_str(shape);
    sizes[nd] = shape[i];
    ds[nd] = dst_strides[i];
    ss[nd] = src_strides[i];
    ++nd;
  }
  MCORE_CHECK(nd <= detail::kMaxDims)
      << "CUDA copy: shape " << shape_str(shape) << " has " << nd
      << " non-mergeable dimensions; at most " << detail::kMaxDims << " are supported";
  l.nd = nd;
  for (int i = 0; i < nd; ++i) {
    l.sizes[i] = sizes[i];
    l.dst_strides[i] = ds[i];
    l.src_strides[i] = ss[i];
  }
  return l;
}

// Both tensors on the same GPU (the current device).
void copy_same_device(Tensor& dst, const Tensor& src, bool saturate) {
  cudaStream_t stream = current_stream(dst.device().index);
  const int64_t n = dst.numel();
  if (dst.dtype() == src.dtype()) {
    if (dst.is_contiguous() && src.is_contiguous()) {
      MCORE_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(),
                                       cudaMemcpyDeviceToDevice, stream));
    } else {
      detail::launch_strided_copy(dst.data_ptr(), src.data_ptr(), dst.element_size(),
                                  collapse(dst.shape(), dst.strides(), src.strides()), n, stream);
    }
    return;
  }
  // Conversions run contiguous -> contiguous; strided operands go through a temporary (freed
  // into this stream's pool, so its reuse is ordered after these kernels).
  Tensor s = src;
  if (!s.is_contiguous()) {
    s = empty(src.shape(), {src.dtype(), src.device()});
    copy_same_device(s, src, false);
  }
  if (dst.is_contiguous()) {
    detail::launch_convert(dst.data_ptr(), dst.dtype(), s.data_ptr(), s.dtype(), n, saturate,
                           stream);
    return;
  }
  Tensor d = empty(dst.shape(), {dst.dtype(), dst.device()});
  detail::launch_convert(d.data_ptr(), d.dtype(), s.data_ptr(), s.dtype(), n, saturate, stream);
  copy_same_device(dst, d, false);
}

// A contiguous copy of `t` in `dtype` on t's GPU (t itself when it already is one).
Tensor contiguous_as(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype && t.is_contiguous()) return t;
  Tensor out = empty(t.shape(), {dtype, t.device()});
  copy_same_device(out, t, false);
  return out;
}

}  // namespace

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cuda() && src_device.is_cpu()) {
    DeviceGuard guard(dst_device.index);
    cudaStream_t stream = current_stream(dst_device.index);
    MCORE_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, stream));
    record_pinned_use(src, stream);
  } else if (dst_device.is_cpu() && src_device.is_cuda()) {
    DeviceGuard guard(src_device.index);
    cudaStream_t stream = current_stream(src_device.index);
    MCORE_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, stream));
    MCORE_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host reads dst next
  } else if (dst_device == src_device) {
    DeviceGuard guard(dst_device.index);
    MCORE_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice,
                                     current_stream(dst_device.index)));
  } else {
    // Across GPUs: the source's producers must be done, and the source (possibly a temporary
    // of the source device's stream pool) must stay untouched until the copy has finished.
    MCORE_CHECK(dst_device.is_cuda() && src_device.is_cuda())
        << "copy_bytes: unsupported device pair " << src_device << " -> " << dst_device;
    {
      DeviceGuard guard(src_device.index);
      MCORE_CUDA_CHECK(cudaStreamSynchronize(current_stream(src_device.index)));
    }
    DeviceGuard guard(dst_device.index);
    cudaStream_t stream = current_stream(dst_device.index);
    MCORE_CUDA_CHECK(
        cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, nbytes, stream));
    MCORE_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
}

void copy_tensor(Tensor& dst, const Tensor& src, bool saturate) {
  if (dst.numel() == 0) return;
  const Device dd = dst.device(), sd = src.device();
  if (dd == sd) {
    DeviceGuard guard(dd.index);
    copy_same_device(dst, src, saturate);
    return;
  }
  if (dd.is_cpu() || (dd.is_cuda() && sd.is_cuda())) {
    // Convert and compact on the source GPU, move bytes, then lay out at the destination.
    Tensor s;
    {
      DeviceGuard guard(sd.index);
      s = contiguous_as(src, dst.dtype());
    }
    if (dst.is_contiguous()) {
      copy_bytes(dst.data_ptr(), dd, s.data_ptr(), sd, dst.nbytes());
      return;
    }
    Tensor staged = empty(dst.shape(), {dst.dtype(), dd});
    copy_bytes(staged.data_ptr(), dd, s.data_ptr(), sd, staged.nbytes());
    if (dd.is_cpu()) {
      mcore::copy_tensor(dst, staged, false);
    } else {
      DeviceGuard guard(dd.index);
      copy_same_device(dst, staged, false);
    }
    return;
  }
  // Host -> GPU: upload the source's bytes as they are (compacted on the host if needed), then
  // convert / scatter on the device.
  MCORE_CHECK(sd.is_cpu()) << "copy: unsupported device pair " << sd << " -> " << dd;
  Tensor s = src.is_contiguous() ? src : src.contiguous();
  DeviceGuard guard(dd.index);
  if (s.dtype() == dst.dtype() && dst.is_contiguous()) {
    copy_bytes(dst.data_ptr(), dd, s.data_ptr(), sd, dst.nbytes());
    return;
  }
  Tensor staged = empty(dst.shape(), {s.dtype(), dd});
  copy_bytes(staged.data_ptr(), dd, s.data_ptr(), sd, staged.nbytes());
  copy_same_device(dst, staged, saturate);
}

void fill_tensor(Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  // The value's bit pattern in dst's dtype, converted by the CPU rules.
  Tensor one = empty({}, dst.dtype());
  mcore::fill_tensor(one, value);
  uint64_t bits = 0;
  std::memcpy(&bits, one.data_ptr(), dst.element_size());
  DeviceGuard guard(dst.device().index);
  cudaStream_t stream = current_stream(dst.device().index);
  if (dst.is_contiguous()) {
    // memset when every byte of the pattern is the same (zeros, most of the time).
    const unsigned char* b = static_cast<const unsigned char*>(one.data_ptr());
    bool uniform = true;
    for (size_t i = 1; i < dst.element_size(); ++i) uniform = uniform && b[i] == b[0];
    if (uniform) {
      MCORE_CUDA_CHECK(cudaMemsetAsync(dst.data_ptr(), b[0], dst.nbytes(), stream));
      return;
    }
  }
  detail::launch_fill(dst.data_ptr(), dst.element_size(), bits,
                      collapse(dst.shape(), dst.strides(), dst.strides()), dst.numel(), stream);
}

}  // namespace mcore::cuda

// Copy, dtype conversion and fill kernels for CUDA tensors (driven by copy_cuda.cpp).
// Strided copies move raw elements by size (1/2/4/8 bytes: 4 kernels serve all 13 dtypes);
// conversions run on contiguous buffers only, so the 13 x 13 dtype pairs stay simple
// grid-stride loops. Index math is 32-bit when every offset fits, which halves the cost of the
// per-element div/mod walk.
#include <algorithm>

#include "mcore/tensor/cuda/convert.cuh"
#include "mcore/tensor/cuda/copy_kernels.h"

namespace mcore::cuda::detail {

namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(b, 1), int64_t{1} << 20));
}

template <class IndexT>
struct DeviceLayout {
  int nd;
  IndexT sizes[kMaxDims];
  IndexT dst_strides[kMaxDims];
  IndexT src_strides[kMaxDims];
};

template <class IndexT>
DeviceLayout<IndexT> to_device_layout(const StridedLayout& l) {
  DeviceLayout<IndexT> d{};
  d.nd = l.nd;
  for (int i = 0; i < l.nd; ++i) {
    d.sizes[i] = static_cast<IndexT>(l.sizes[i]);
    d.dst_strides[i] = static_cast<IndexT>(l.dst_strides[i]);
    d.src_strides[i] = static_cast<IndexT>(l.src_strides[i]);
  }
  return d;
}

// Whether every linear index and element offset of the layout fits in 31 bits.
bool fits_int32(const StridedLayout& l, int64_t numel) {
  constexpr int64_t kMax = (int64_t{1} << 31) - 1;
  if (numel > kMax) return false;
  int64_t dmax = 0, smax = 0;
  for (int i = 0; i < l.nd; ++i) {
    if (l.dst_strides[i] < 0 || l.src_strides[i] < 0) return false;
    dmax += (l.sizes[i] - 1) * l.dst_strides[i];
    smax += (l.sizes[i] - 1) * l.src_strides[i];
  }
  return dmax <= kMax && smax <= kMax;
}

template <class E, class IndexT>
__global__ void strided_copy_kernel(E* __restrict__ dst, const E* __restrict__ src,
                                    DeviceLayout<IndexT> l, IndexT n) {
  for (IndexT i = blockIdx.x * static_cast<IndexT>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<IndexT>(gridDim.x) * blockDim.x) {
    IndexT rem = i, od = 0, os = 0;
#pragma unroll
    for (int d = kMaxDims - 1; d >= 0; --d) {
      if (d >= l.nd) continue;
      const IndexT c = rem % l.sizes[d];
      rem /= l.sizes[d];
      od += c * l.dst_strides[d];
      os += c * l.src_strides[d];
    }
    dst[od] = src[os];
  }
}

template <class E, class IndexT>
__global__ void fill_kernel(E* __restrict__ dst, E value, DeviceLayout<IndexT> l, IndexT n) {
  for (IndexT i = blockIdx.x * static_cast<IndexT>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<IndexT>(gridDim.x) * blockDim.x) {
    IndexT rem = i, od = 0;
#pragma unroll
    for (int d = kMaxDims - 1; d >= 0; --d) {
      if (d >= l.nd) continue;
      const IndexT c = rem % l.sizes[d];
      rem /= l.sizes[d];
      od += c * l.dst_strides[d];
    }
    dst[od] = value;
  }
}

template <class D, class S>
__global__ void convert_kernel(D* __restrict__ dst, const S* __restrict__ src, int64_t n,
                               bool saturate) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = dev::convert<D, S>(src[i], saturate);
}

template <class E>
void strided_copy_typed(void* dst, const void* src, const StridedLayout& l, int64_t n,
                        cudaStream_t stream) {
  if (fits_int32(l, n)) {
    strided_copy_kernel<E, uint32_t><<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<E*>(dst), static_cast<const E*>(src), to_device_layout<uint32_t>(l),
        static_cast<uint32_t>(n));
  } else {
    strided_copy_kernel<E, int64_t><<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<E*>(dst), static_cast<const E*>(src), to_device_layout<int64_t>(l), n);
  }
  MCORE_CUDA_CHECK_LAUNCH("strided_copy_kernel");
}

template <class E>
void fill_typed(void* dst, uint64_t bits, const StridedLayout& l, int64_t n, cudaStream_t stream) {
  E value;
  static_assert(sizeof(E) <= sizeof(bits));
  memcpy(&value, &bits, sizeof(E));  // little-endian: the low bytes hold the pattern
  if (fits_int32(l, n)) {
    fill_kernel<E, uint32_t><<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<E*>(dst), value, to_device_layout<uint32_t>(l), static_cast<uint32_t>(n));
  } else {
    fill_kernel<E, int64_t><<<blocks_for(n), kThreads, 0, stream>>>(
        static_cast<E*>(dst), value, to_device_layout<int64_t>(l), n);
  }
  MCORE_CUDA_CHECK_LAUNCH("fill_kernel");
}

// Calls fn(T{}) with T the device storage type of `dtype`.
template <class Fn>
void dispatch_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::F64:
      return fn(double{});
    case DType::F32:
      return fn(float{});
    case DType::BF16:
      return fn(dev::Bf16{});
    case DType::F16:
      return fn(dev::F16{});
    case DType::F8E4M3:
      return fn(dev::E4M3{});
    case DType::F8E5M2:
      return fn(dev::E5M2{});
    case DType::I64:
      return fn(int64_t{});
    case DType::I32:
      return fn(int32_t{});
    case DType::I16:
      return fn(int16_t{});
    case DType::I8:
      return fn(int8_t{});
    case DType::U16:
      return fn(uint16_t{});
    case DType::U8:
      return fn(uint8_t{});
    case DType::BOOL:
      return fn(bool{});
  }
  MCORE_FAIL() << "CUDA copy: unknown dtype " << static_cast<int>(dtype);
}

}  // namespace

void launch_strided_copy(void* dst, const void* src, size_t elem_size, const StridedLayout& l,
                         int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  switch (elem_size) {
    case 1:
      return strided_copy_typed<uint8_t>(dst, src, l, n, stream);
    case 2:
      return strided_copy_typed<uint16_t>(dst, src, l, n, stream);
    case 4:
      return strided_copy_typed<uint32_t>(dst, src, l, n, stream);
    case 8:
      return strided_copy_typed<uint64_t>(dst, src, l, n, stream);
    default:
      MCORE_FAIL() << "CUDA strided copy: unsupported element size " << elem_size;
  }
}

void launch_convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n,
                    bool saturate, cudaStream_t stream) {
  if (n == 0) return;
  dispatch_dtype(dst_dtype, [&](auto d_tag) {
    using D = decltype(d_tag);
    dispatch_dtype(src_dtype, [&](auto s_tag) {
      using S = decltype(s_tag);
      convert_kernel<D, S><<<blocks_for(n), kThreads, 0, stream>>>(
          static_cast<D*>(dst), static_cast<const S*>(src), n, saturate);
      MCORE_CUDA_CHECK_LAUNCH("convert_kernel");
    });
  });
}

void launch_fill(void* dst, size_t elem_size, uint64_t bits, const StridedLayout& l, int64_t n,
                 cudaStream_t stream) {
  if (n == 0) return;
  switch (elem_size) {
    case 1:
      return fill_typed<uint8_t>(dst, bits, l, n, stream);
    case 2:
      return fill_typed<uint16_t>(dst, bits, l, n, stream);
    case 4:
      return fill_typed<uint32_t>(dst, bits, l, n, stream);
    case 8:
      return fill_typed<uint64_t>(dst, bits, l, n, stream);
    default:
      MCORE_FAIL() << "CUDA fill: unsupported element size " << elem_size;
  }
}

}  // namespace mcore::cuda::detail

// Broadcast binary and scalar unary arithmetic on CUDA tensors (see elementwise_cuda.h).
#include <algorithm>
#include <array>

#include "mcore/ops/cuda/acc_type.cuh"
#include "mcore/ops/cuda/elementwise_cuda.h"
#include "mcore/tensor/cuda/convert.cuh"
#include "mcore/tensor/cuda/cuda_runtime.h"

namespace mcore::ops::cuda {

namespace {

namespace dev = mcore::cuda::dev;

constexpr int kThreads = 256;
constexpr int kMaxDims = 10;

template <int Op, class A>
__device__ __forceinline__ A apply_binary(A x, A y, A alpha) {
  if constexpr (Op == static_cast<int>(BinaryOp::kAdd))
    return x + alpha * y;
  else if constexpr (Op == static_cast<int>(BinaryOp::kSub))
    return x - y;
  else if constexpr (Op == static_cast<int>(BinaryOp::kMul))
    return x * y;
  else
    return x / y;
}
template <int Op, class A>
__device__ __forceinline__ A apply_unary(A x, A alpha) {
  if constexpr (Op == static_cast<int>(UnaryOp::kScale))
    return alpha * x;
  else
    return x + alpha;
}

// K operands' strides over one collapsed iteration space; operand 0 is the output.
template <int K, class IndexT>
struct Layout {
  int nd;
  IndexT sizes[kMaxDims];
  IndexT strides[K][kMaxDims];
};

template <int K, class IndexT>
__device__ __forceinline__ void offsets(const Layout<K, IndexT>& l, IndexT i, IndexT (&off)[K]) {
#pragma unroll
  for (int k = 0; k < K; ++k) off[k] = 0;
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d >= l.nd) continue;
    const IndexT c = i % l.sizes[d];
    i /= l.sizes[d];
#pragma unroll
    for (int k = 0; k < K; ++k) off[k] += c * l.strides[k][d];
  }
}

template <class T>
struct alignas(16) Pack {
  static constexpr int N = 16 / sizeof(T);
  T v[N];
};

template <class T, int Op>
__global__ void binary_contig_kernel(T* out, const T* a, const T* b, int64_t n, acc_t<T> alpha,
                                     bool vec) {
  using A = acc_t<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  int64_t done = 0;
  if (vec) {
    constexpr int N = Pack<T>::N;
    const int64_t packs = n / N;
    for (int64_t p = tid; p < packs; p += stride) {
      Pack<T> pa = reinterpret_cast<const Pack<T>*>(a)[p];
      Pack<T> pb = reinterpret_cast<const Pack<T>*>(b)[p];
      Pack<T> po;
#pragma unroll
      for (int j = 0; j < N; ++j)
        po.v[j] = store<T>(apply_binary<Op, A>(load(pa.v[j]), load(pb.v[j]), alpha));
      reinterpret_cast<Pack<T>*>(out)[p] = po;
    }
    done = packs * N;
  }
  for (int64_t i = done + tid; i < n; i += stride)
    out[i] = store<T>(apply_binary<Op, A>(load(a[i]), load(b[i]), alpha));
}

template <class T, int Op, class IndexT>
__global__ void binary_strided_kernel(T* out, const T* a, const T* b, Layout<3, IndexT> l, IndexT n,
                                      acc_t<T> alpha) {
  using A = acc_t<T>;
  for (IndexT i = blockIdx.x * static_cast<IndexT>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<IndexT>(gridDim.x) * blockDim.x) {
    IndexT off[3];
    offsets(l, i, off);
    out[off[0]] = store<T>(apply_binary<Op, A>(load(a[off[1]]), load(b[off[2]]), alpha));
  }
}

template <class T, int Op>
__global__ void unary_contig_kernel(T* out, const T* x, int64_t n, acc_t<T> alpha, bool vec) {
  using A = acc_t<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  int64_t done = 0;
  if (vec) {
    constexpr int N = Pack<T>::N;
    const int64_t packs = n / N;
    for (int64_t p = tid; p < packs; p += stride) {
      Pack<T> px = reinterpret_cast<const Pack<T>*>(x)[p];
#pragma unroll
      for (int j = 0; j < N; ++j) px.v[j] = store<T>(apply_unary<Op, A>(load(px.v[j]), alpha));
      reinterpret_cast<Pack<T>*>(out)[p] = px;
    }
    done = packs * N;
  }
  for (int64_t i = done + tid; i < n; i += stride)
    out[i] = store<T>(apply_unary<Op, A>(load(x[i]), alpha));
}

template <class T, int Op, class IndexT>
__global__ void unary_strided_kernel(T* out, const T* x, Layout<2, IndexT> l, IndexT n,
                                     acc_t<T> alpha) {
  using A = acc_t<T>;
  for (IndexT i = blockIdx.x * static_cast<IndexT>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<IndexT>(gridDim.x) * blockDim.x) {
    IndexT off[2];
    offsets(l, i, off);
    out[off[0]] = store<T>(apply_unary<Op, A>(load(x[off[1]]), alpha));
  }
}

int blocks_for(int64_t work) {
  const int64_t b = (work + kThreads - 1) / kThreads;
  return static_cast<int>(std::clamp<int64_t>(b, 1, int64_t{1} << 20));
}

// Strides of t seen as a tensor of `shape` (0 on broadcast dimensions).
Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape st(shape.size(), 0);
  const size_t lead = shape.size() - t.shape().size();
  for (size_t i = 0; i < t.shape().size(); ++i)
    st[lead + i] = t.shape()[i] == 1 && shape[lead + i] != 1 ? 0 : t.strides()[i];
  return st;
}

// Collapsed layout of K operands (size-1 dims dropped, mergeable neighbours merged); false when
// an offset may not fit IndexT.
template <int K>
struct HostLayout {
  int nd = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[K][kMaxDims] = {};
};
template <int K>
HostLayout<K> collapse(const Shape& shape, const std::array<Shape, K>& st) {
  HostLayout<K> l;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    bool merge = l.nd > 0;
    for (int k = 0; k < K && merge; ++k) merge = l.strides[k][l.nd - 1] == st[k][i] * shape[i];
    if (merge) {
      l.sizes[l.nd - 1] *= shape[i];
      for (int k = 0; k < K; ++k) l.strides[k][l.nd - 1] = st[k][i];
      continue;
    }
    MCORE_CHECK(l.nd < kMaxDims) << "CUDA elementwise: shape " << shape_str(shape)
                                 << " has more than " << kMaxDims << " non-mergeable dimensions";
    l.sizes[l.nd] = shape[i];
    for (int k = 0; k < K; ++k) l.strides[k][l.nd] = st[k][i];
    ++l.nd;
  }
  return l;
}
template <int K>
bool fits_int32(const HostLayout<K>& l, int64_t n) {
  constexpr int64_t kMax = (int64_t{1} << 31) - 1;
  if (n > kMax) return false;
  for (int k = 0; k < K; ++k) {
    int64_t m = 0;
    for (int d = 0; d < l.nd; ++d) {
      if (l.strides[k][d] < 0) return false;
      m += (l.sizes[d] - 1) * l.strides[k][d];
    }
    if (m > kMax) return false;
  }
  return true;
}
template <int K, class IndexT>
Layout<K, IndexT> to_device(const HostLayout<K>& h) {
  Layout<K, IndexT> l{};
  l.nd = h.nd;
  for (int d = 0; d < h.nd; ++d) {
    l.sizes[d] = static_cast<IndexT>(h.sizes[d]);
    for (int k = 0; k < K; ++k) l.strides[k][d] = static_cast<IndexT>(h.strides[k][d]);
  }
  return l;
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <class T, int Op>
void binary_typed(Tensor& out, const Tensor& a, const Tensor& b, double alpha_d) {
  using A = acc_t<T>;
  const A alpha = static_cast<A>(alpha_d);
  const int64_t n = out.numel();
  cudaStream_t stream = mcore::cuda::current_stream(out.device().index);
  T* o = static_cast<T*>(out.data_ptr());
  const T* pa = static_cast<const T*>(a.data_ptr());
  const T* pb = static_cast<const T*>(b.data_ptr());
  if (a.shape() == out.shape() && b.shape() == out.shape() && out.is_contiguous() &&
      a.is_contiguous() && b.is_contiguous()) {
    const bool vec = aligned16(o) && aligned16(pa) && aligned16(pb);
    binary_contig_kernel<T, Op><<<blocks_for(vec ? n / Pack<T>::N + 1 : n), kThreads, 0, stream>>>(
        o, pa, pb, n, alpha, vec);
    MCORE_CUDA_CHECK_LAUNCH("binary_contig_kernel");
    return;
  }
  const HostLayout<3> h = collapse<3>(
      out.shape(),
      {out.strides(), broadcast_strides(a, out.shape()), broadcast_strides(b, out.shape())});
  if (fits_int32(h, n)) {
    binary_strided_kernel<T, Op, uint32_t><<<blocks_for(n), kThreads, 0, stream>>>(
        o, pa, pb, to_device<3, uint32_t>(h), static_cast<uint32_t>(n), alpha);
  } else {
    binary_strided_kernel<T, Op, int64_t>
        <<<blocks_for(n), kThreads, 0, stream>>>(o, pa, pb, to_device<3, int64_t>(h), n, alpha);
  }
  MCORE_CUDA_CHECK_LAUNCH("binary_strided_kernel");
}

template <class T, int Op>
void unary_typed(Tensor& out, const Tensor& x, double alpha_d) {
  using A = acc_t<T>;
  const A alpha = static_cast<A>(alpha_d);
  const int64_t n = out.numel();
  cudaStream_t stream = mcore::cuda::current_stream(out.device().index);
  T* o = static_cast<T*>(out.data_ptr());
  const T* px = static_cast<const T*>(x.data_ptr());
  if (out.is_contiguous() && x.is_contiguous()) {
    const bool vec = aligned16(o) && aligned16(px);
    unary_contig_kernel<T, Op>
        <<<blocks_for(vec ? n / Pack<T>::N + 1 : n), kThreads, 0, stream>>>(o, px, n, alpha, vec);
    MCORE_CUDA_CHECK_LAUNCH("unary_contig_kernel");
    return;
  }
  const HostLayout<2> h = collapse<2>(out.shape(), {out.strides(), x.strides()});
  if (fits_int32(h, n)) {
    unary_strided_kernel<T, Op, uint32_t><<<blocks_for(n), kThreads, 0, stream>>>(
        o, px, to_device<2, uint32_t>(h), static_cast<uint32_t>(n), alpha);
  } else {
    unary_strided_kernel<T, Op, int64_t>
        <<<blocks_for(n), kThreads, 0, stream>>>(o, px, to_device<2, int64_t>(h), n, alpha);
  }
  MCORE_CUDA_CHECK_LAUNCH("unary_strided_kernel");
}

}  // namespace

void binary(Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op, double alpha) {
  if (out.numel() == 0) return;
  mcore::cuda::DeviceGuard guard(out.device().index);
  dispatch_float(out.dtype(), "CUDA binary op", [&](auto tag) {
    using T = decltype(tag);
    switch (op) {
      case BinaryOp::kAdd:
        return binary_typed<T, 0>(out, a, b, alpha);
      case BinaryOp::kSub:
        return binary_typed<T, 1>(out, a, b, alpha);
      case BinaryOp::kMul:
        return binary_typed<T, 2>(out, a, b, alpha);
      case BinaryOp::kDiv:
        return binary_typed<T, 3>(out, a, b, alpha);
    }
  });
}

void unary(Tensor& out, const Tensor& x, UnaryOp op, double alpha) {
  if (out.numel() == 0) return;
  mcore::cuda::DeviceGuard guard(out.device().index);
  dispatch_float(out.dtype(), "CUDA unary op", [&](auto tag) {
    using T = decltype(tag);
    switch (op) {
      case UnaryOp::kScale:
        return unary_typed<T, 0>(out, x, alpha);
      case UnaryOp::kAddScalar:
        return unary_typed<T, 1>(out, x, alpha);
    }
  });
}

}  // namespace mcore::ops::cuda

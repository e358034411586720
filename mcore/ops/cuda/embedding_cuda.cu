#include "mcore/ops/cuda/embedding_cuda.h"

#include <cstdio>

#include "mcore/ops/cuda/row_kernel_util.cuh"
#include "mcore/tensor/factory.h"

namespace mcore::ops::cuda {

namespace {

template <class I>
__device__ __forceinline__ int64_t checked_id(const I* ids, int64_t i, int64_t V, const char* op) {
  const int64_t id = static_cast<int64_t>(ids[i]);
  if (id < 0 || id >= V) {
    printf(
        "%s: id %lld at flat index %lld is out of range for an embedding table of V = %lld "
        "rows\n",
        op, static_cast<long long>(id), static_cast<long long>(i), static_cast<long long>(V));
    __trap();
  }
  return id;
}

// out[i, :] = w[ids[i], :], rows moved as `units` values of U (16-byte vectors or elements).
template <class U, class I>
__global__ void gather_kernel(const U* __restrict__ w, const I* __restrict__ ids,
                              U* __restrict__ out, int64_t n, int64_t units, int64_t V) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const int64_t id = checked_id(ids, i, V, "embedding_forward");
    const U* src = w + id * units;
    U* dst = out + i * units;
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) dst[u] = src[u];
  }
}

// acc[ids[i], :] += g[i, :] in float32.
template <class T, class I>
__global__ void scatter_add_kernel(const T* __restrict__ g, const I* __restrict__ ids,
                                   float* __restrict__ acc, int64_t n, int64_t H, int64_t V) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const int64_t id = checked_id(ids, i, V, "embedding_backward");
    const T* gr = g + i * H;
    float* ar = acc + id * H;
    for (int64_t h = threadIdx.x; h < H; h += blockDim.x) atomicAdd(ar + h, to_float(gr[h]));
  }
}

template <class T>
__global__ void round_kernel(const float* __restrict__ acc, T* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = from_float<T>(acc[i]);
}

template <class Fn>
void dispatch_ids(DType dt, Fn&& fn) {
  if (dt == DType::I64) {
    fn(int64_t{});
  } else {
    fn(int32_t{});
  }
}

template <class U>
void launch_gather(const Tensor& w, const Tensor& ids, Tensor& out, int64_t n, int64_t units,
                   int64_t V, cudaStream_t stream) {
  const RowPlan plan = plan_rows(n, units);
  dispatch_ids(ids.dtype(), [&](auto tag) {
    using I = decltype(tag);
    gather_kernel<U, I><<<plan.grid, plan.block, 0, stream>>>(
        static_cast<const U*>(w.data_ptr()), static_cast<const I*>(ids.data_ptr()),
        static_cast<U*>(out.data_ptr()), n, units, V);
  });
  MCORE_CUDA_CHECK_LAUNCH("embedding_forward");
}

}  // namespace

Tensor embedding_forward(const Tensor& weight_in, const Tensor& ids_in) {
  const Tensor weight = weight_in.contiguous(), ids = ids_in.contiguous();
  const int64_t V = weight.size(0), H = weight.size(1);
  Shape shape = ids.shape();
  shape.push_back(H);
  Tensor out = empty(shape, {weight.dtype(), weight.device()});
  const int64_t n = ids.numel();
  if (out.numel() == 0) return out;
  cudaStream_t stream = mcore::cuda::current_stream();
  const size_t es = weight.element_size();
  // A row copy is dtype-agnostic: 16-byte units when the rows allow, else element-sized ones.
  if (rows_vectorizable(weight.data_ptr(), H, es) && rows_vectorizable(out.data_ptr(), H, es)) {
    launch_gather<uint4>(weight, ids, out, n, static_cast<int64_t>(H * es / 16), V, stream);
  } else if (es == 8) {
    launch_gather<uint64_t>(weight, ids, out, n, H, V, stream);
  } else if (es == 4) {
    launch_gather<uint32_t>(weight, ids, out, n, H, V, stream);
  } else if (es == 2) {
    launch_gather<uint16_t>(weight, ids, out, n, H, V, stream);
  } else {
    launch_gather<uint8_t>(weight, ids, out, n, static_cast<int64_t>(H * es), V, stream);
  }
  return out;
}

Tensor embedding_backward(const Tensor& grad_in, const Tensor& ids_in, int64_t num_embeddings) {
  check_cuda_float(grad_in.dtype(), "embedding_backward");
  const Tensor grad = grad_in.contiguous(), ids = ids_in.contiguous();
  const int64_t V = num_embeddings, H = grad.size(-1), n = ids.numel();
  Tensor out = empty({V, H}, {grad.dtype(), grad.device()});
  if (out.numel() == 0) return out;
  cudaStream_t stream = mcore::cuda::current_stream();
  const bool f32 = grad.dtype() == DType::F32;
  Tensor acc = f32 ? out : empty({V, H}, {DType::F32, grad.device()});
  MCORE_CUDA_CHECK(cudaMemsetAsync(acc.data_ptr(), 0, acc.nbytes(), stream));
  MCORE_DISPATCH_CUDA_FLOAT(grad.dtype(), "embedding_backward", [&] {
    using T = scalar_t;
    if (n > 0 && H > 0) {
      const RowPlan plan = plan_rows(n, H);
      dispatch_ids(ids.dtype(), [&](auto tag) {
        using I = decltype(tag);
        scatter_add_kernel<T, I><<<plan.grid, plan.block, 0, stream>>>(
            static_cast<const T*>(grad.data_ptr()), static_cast<const I*>(ids.data_ptr()),
            static_cast<float*>(acc.data_ptr()), n, H, V);
      });
      MCORE_CUDA_CHECK_LAUNCH("embedding_backward");
    }
    if (!f32) {
      round_kernel<T><<<flat_blocks(V * H, 256), 256, 0, stream>>>(
          static_cast<const float*>(acc.data_ptr()), static_cast<T*>(out.data_ptr()), V * H);
      MCORE_CUDA_CHECK_LAUNCH("embedding_backward");
    }
  });
  return out;
}

}  // namespace mcore::ops::cuda

// Sum / mean / max reductions and the float64 sum of squares on CUDA (see reduction_cuda.h).
// Rows (inner == 1) are reduced by a warp (short rows) or a block (long rows), very long rows
// with few outer indices first in fixed chunks whose partials a second pass adds; columns
// (inner > 1) by 32-column x 8-row tiles that keep loads coalesced. No atomics: the order of
// every sum is fixed, so results are deterministic.
#include <algorithm>

#include "mcore/ops/cuda/acc_type.cuh"
#include "mcore/ops/cuda/reduction_cuda.h"
#include "mcore/tensor/cuda/convert.cuh"
#include "mcore/tensor/cuda/cuda_runtime.h"
#include "mcore/tensor/factory.h"

namespace mcore::ops::cuda {

namespace {

namespace dev = mcore::cuda::dev;

template <class A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32); the result is valid in thread 0.
template <class A>
__device__ __forceinline__ A block_sum(A v) {
  __shared__ A partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? partial[lane] : A(0);
  if (warp == 0) v = warp_sum(v);
  __syncthreads();  // partial may be reused by a following call
  return v;
}

// One warp per row: rows of `len` elements at `in + row * len`.
template <class In, class Out>
__global__ void sum_rows_warp_kernel(const In* in, Out* out, int64_t rows, int64_t len,
                                     acc_t<Out> scale) {
  using A = acc_t<Out>;
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const In* p = in + row * len;
  A s = 0;
  for (int64_t i = lane; i < len; i += 32) s += static_cast<A>(load(p[i]));
  s = warp_sum(s);
  if (lane == 0) out[row] = store<Out>(s * scale);
}

// One block per row.
template <class In, class Out>
__global__ void sum_rows_block_kernel(const In* in, Out* out, int64_t len, acc_t<Out> scale) {
  using A = acc_t<Out>;
  const In* p = in + blockIdx.x * len;
  A s = 0;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s += static_cast<A>(load(p[i]));
  s = block_sum(s);
  if (threadIdx.x == 0) out[blockIdx.x] = store<Out>(s * scale);
}

// Chunk c of row o (grid: chunks x rows) -> partial[o * chunks + c].
template <class T>
__global__ void sum_chunks_kernel(const T* in, acc_t<T>* partial, int64_t len, int64_t chunk) {
  using A = acc_t<T>;
  const int64_t begin = blockIdx.x * chunk, end = min(len, begin + chunk);
  const T* p = in + blockIdx.y * len;
  A s = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) s += load(p[i]);
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.y * gridDim.x + blockIdx.x] = s;
}

// Column sums: block (32, 8) covers 32 columns of one outer index.
template <class T>
__global__ void sum_cols_kernel(const T* in, T* out, int64_t reduce, int64_t inner,
                                acc_t<T> scale) {
  using A = acc_t<T>;
  __shared__ A tile[8][33];
  const int64_t col = blockIdx.x * 32 + threadIdx.x;
  const int64_t o = blockIdx.y;
  A s = 0;
  if (col < inner) {
    const T* p = in + o * reduce * inner + col;
    for (int64_t r = threadIdx.y; r < reduce; r += 8) s += load(p[r * inner]);
  }
  tile[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < inner) {
    A t = 0;
#pragma unroll
    for (int y = 0; y < 8; ++y) t += tile[y][threadIdx.x];
    out[o * inner + col] = store<T>(t * scale);
  }
}

// Whether (v, i) wins over (bv, bi): NaN beats numbers, larger beats smaller, and among equals
// (or two NaNs) the first position wins.
template <class A>
__device__ __forceinline__ bool better(A v, int64_t i, A bv, int64_t bi) {
  const bool vn = v != v, bn = bv != bv;
  if (vn || bn) return vn && bn ? i < bi : vn;
  return v > bv || (v == bv && i < bi);
}

template <class T>
__global__ void max_rows_kernel(const T* in, T* vals, int64_t* idx, int64_t rows, int64_t len) {
  using A = acc_t<T>;
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const T* p = in + row * len;
  A best = 0;
  int64_t bi = -1;
  for (int64_t i = lane; i < len; i += 32) {
    const A v = load(p[i]);
    if (bi < 0 || better(v, i, best, bi)) best = v, bi = i;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A v = __shfl_down_sync(0xffffffffu, best, o);
    const int64_t i = __shfl_down_sync(0xffffffffu, bi, o);
    if (i >= 0 && (bi < 0 || better(v, i, best, bi))) best = v, bi = i;
  }
  if (lane == 0) {
    vals[row] = p[bi];
    idx[row] = bi;
  }
}

template <class T>
__global__ void max_cols_kernel(const T* in, T* vals, int64_t* idx, int64_t outer, int64_t reduce,
                                int64_t inner) {
  using A = acc_t<T>;
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= outer * inner) return;
  const int64_t o = t / inner, i = t % inner;
  const T* p = in + o * reduce * inner + i;
  A best = load(p[0]);
  int64_t bi = 0;
  for (int64_t r = 1; r < reduce; ++r) {
    const A v = load(p[r * inner]);
    if (better(v, r, best, bi)) best = v, bi = r;
  }
  vals[t] = p[bi * inner];
  idx[t] = bi;
}

template <class T>
__global__ void max_scatter_kernel(const T* g, const int64_t* idx, T* gx, int64_t outer,
                                   int64_t reduce, int64_t inner) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= outer * inner) return;
  const int64_t o = t / inner, i = t % inner;
  gx[(o * reduce + idx[t]) * inner + i] = g[t];
}

template <class T>
__global__ void sum_squares_kernel(const T* p, int64_t n, double* partial) {
  double s = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double v = static_cast<double>(load(p[i]));
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

int blocks(int64_t n, int threads) {
  return static_cast<int>(std::max<int64_t>(1, (n + threads - 1) / threads));
}

constexpr int64_t kChunk = 16384;  // elements per block in the split long-row sum

}  // namespace

void sum_dims(const Tensor& src, Tensor& out, int64_t outer, int64_t reduce, int64_t inner,
              double scale) {
  if (out.numel() == 0) return;
  const int device = out.device().index;
  mcore::cuda::DeviceGuard guard(device);
  cudaStream_t stream = mcore::cuda::current_stream(device);
  dispatch_float(src.dtype(), "sum", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* in = static_cast<const T*>(src.data_ptr());
    T* o = static_cast<T*>(out.data_ptr());
    const A sc = static_cast<A>(scale);
    if (reduce == 0) {
      MCORE_CUDA_CHECK(cudaMemsetAsync(o, 0, out.nbytes(), stream));
    } else if (inner > 1) {
      // grid.y holds at most 65535 outer indices: launch in slices.
      for (int64_t o0 = 0; o0 < outer; o0 += 65535) {
        const int64_t no = std::min<int64_t>(65535, outer - o0);
        sum_cols_kernel<T>
            <<<dim3(blocks(inner, 32), static_cast<unsigned>(no)), dim3(32, 8), 0, stream>>>(
                in + o0 * reduce * inner, o + o0 * inner, reduce, inner, sc);
        MCORE_CUDA_CHECK_LAUNCH("sum_cols_kernel");
      }
    } else if (reduce <= 1024) {
      sum_rows_warp_kernel<T, T><<<blocks(outer, 8), 256, 0, stream>>>(in, o, outer, reduce, sc);
      MCORE_CUDA_CHECK_LAUNCH("sum_rows_warp_kernel");
    } else if (outer >= 128 || reduce <= 2 * kChunk) {
      sum_rows_block_kernel<T, T>
          <<<static_cast<unsigned>(outer), 256, 0, stream>>>(in, o, reduce, sc);
      MCORE_CUDA_CHECK_LAUNCH("sum_rows_block_kernel");
    } else {
      const int64_t chunks = (reduce + kChunk - 1) / kChunk;
      // outer < 128 here, so one launch covers every row.
      Tensor partial = empty({outer * chunks}, {dtype_of<A>, out.device()});
      A* pp = static_cast<A*>(partial.data_ptr());
      sum_chunks_kernel<T>
          <<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(outer)), 256, 0, stream>>>(
              in, pp, reduce, kChunk);
      MCORE_CUDA_CHECK_LAUNCH("sum_chunks_kernel");
      sum_rows_block_kernel<A, T>
          <<<static_cast<unsigned>(outer), 256, 0, stream>>>(pp, o, chunks, sc);
      MCORE_CUDA_CHECK_LAUNCH("sum_rows_block_kernel");
    }
  });
}

void max_dims(const Tensor& src, Tensor& values, Tensor& indices, int64_t outer, int64_t reduce,
              int64_t inner) {
  if (values.numel() == 0) return;
  const int device = values.device().index;
  mcore::cuda::DeviceGuard guard(device);
  cudaStream_t stream = mcore::cuda::current_stream(device);
  dispatch_float(src.dtype(), "max", [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(src.data_ptr());
    T* v = static_cast<T*>(values.data_ptr());
    int64_t* ix = static_cast<int64_t*>(indices.data_ptr());
    if (inner == 1) {
      max_rows_kernel<T><<<blocks(outer, 8), 256, 0, stream>>>(in, v, ix, outer, reduce);
    } else {
      max_cols_kernel<T>
          <<<blocks(outer * inner, 256), 256, 0, stream>>>(in, v, ix, outer, reduce, inner);
    }
    MCORE_CUDA_CHECK_LAUNCH("max kernel");
  });
}

void max_backward_scatter(const Tensor& grad, const Tensor& indices, Tensor& gx, int64_t outer,
                          int64_t reduce, int64_t inner) {
  if (grad.numel() == 0) return;
  const int device = gx.device().index;
  mcore::cuda::DeviceGuard guard(device);
  cudaStream_t stream = mcore::cuda::current_stream(device);
  dispatch_float(grad.dtype(), "max_backward", [&](auto tag) {
    using T = decltype(tag);
    max_scatter_kernel<T><<<blocks(outer * inner, 256), 256, 0, stream>>>(
        static_cast<const T*>(grad.data_ptr()), static_cast<const int64_t*>(indices.data_ptr()),
        static_cast<T*>(gx.data_ptr()), outer, reduce, inner);
    MCORE_CUDA_CHECK_LAUNCH("max_scatter_kernel");
  });
}

double sum_squares(const std::vector<Tensor>& tensors) {
  if (tensors.empty()) return 0.0;
  const Device device = tensors[0].device();
  mcore::cuda::DeviceGuard guard(device.index);
  cudaStream_t stream = mcore::cuda::current_stream(device.index);
  // Fixed block counts per tensor, so the partials (and their order) do not depend on timing.
  std::vector<int64_t> grid(tensors.size());
  int64_t total = 0;
  for (size_t k = 0; k < tensors.size(); ++k) {
    grid[k] = std::min<int64_t>(256, std::max<int64_t>(1, (tensors[k].numel() + 4095) / 4096));
    total += grid[k];
  }
  Tensor partial = empty({total}, {DType::F64, device});
  Tensor result = empty({1}, {DType::F64, device});
  double* pp = static_cast<double*>(partial.data_ptr());
  std::vector<Tensor> keep;
  int64_t offset = 0;
  for (size_t k = 0; k < tensors.size(); ++k) {
    keep.push_back(tensors[k].contiguous());
    const Tensor& t = keep.back();
    dispatch_float(t.dtype(), "multi_tensor_l2norm_squared", [&](auto tag) {
      using T = decltype(tag);
      sum_squares_kernel<T><<<static_cast<unsigned>(grid[k]), 256, 0, stream>>>(
          static_cast<const T*>(t.data_ptr()), t.numel(), pp + offset);
      MCORE_CUDA_CHECK_LAUNCH("sum_squares_kernel");
    });
    offset += grid[k];
  }
  sum_rows_block_kernel<double, double>
      <<<1, 256, 0, stream>>>(pp, static_cast<double*>(result.data_ptr()), total, 1.0);
  MCORE_CUDA_CHECK_LAUNCH("sum_rows_block_kernel");
  double host = 0;
  MCORE_CUDA_CHECK(
      cudaMemcpyAsync(&host, result.data_ptr(), sizeof(double), cudaMemcpyDeviceToHost, stream));
  MCORE_CUDA_CHECK(cudaStreamSynchronize(stream));
  return host;
}

}  // namespace mcore::ops::cuda

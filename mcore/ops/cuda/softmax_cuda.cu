#include "mcore/ops/cuda/softmax_cuda.h"

#include "mcore/ops/cuda/row_kernel_util.cuh"
#include "mcore/tensor/factory.h"

namespace mcore::ops::cuda {

namespace {

// Row r of [rows, sk] is query r % sq; with causal it sees keys j <= r % sq + (sk - sq). The
// scaled scores are re-read from L1/L2 for the sum and the output passes.
template <class T, int N>
__global__ void softmax_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows,
                                       int64_t sq, int64_t sk, float scale, bool causal) {
  __shared__ float scratch[33];
  const int64_t packs = sk / N;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const T* xr = x + r * sk;
    T* yr = y + r * sk;
    int64_t valid = sk;
    if (causal) valid = min(sk, max(int64_t(0), r % sq + (sk - sq) + 1));
    const int64_t vpacks = (valid + N - 1) / N;  // packs holding at least one visible key
    float mx = -INFINITY;
    for (int64_t p = threadIdx.x; p < vpacks; p += blockDim.x) {
      float f[N];
      load_pack<T, N>(xr + p * N, f);
#pragma unroll
      for (int i = 0; i < N; ++i)
        if (p * N + i < valid) mx = fmaxf(mx, scale * f[i]);
    }
    mx = row_max(mx, scratch);
    // An all -inf row would give exp(-inf - -inf) = NaN; its max counts as 0 (all exps 0).
    if (mx == -INFINITY) mx = 0.0f;
    float sum = 0.0f;
    for (int64_t p = threadIdx.x; p < vpacks; p += blockDim.x) {
      float f[N];
      load_pack<T, N>(xr + p * N, f);
#pragma unroll
      for (int i = 0; i < N; ++i)
        if (p * N + i < valid) sum += expf(scale * f[i] - mx);
    }
    sum = row_sum(sum, scratch);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      float f[N], o[N];
      if (p < vpacks) load_pack<T, N>(xr + p * N, f);
#pragma unroll
      for (int i = 0; i < N; ++i) o[i] = p * N + i < valid ? expf(scale * f[i] - mx) * inv : 0.0f;
      store_pack<T, N>(yr + p * N, o);
    }
  }
}

// dx = scale * y * (dy - sum_j(dy * y)).
template <class T, int N>
__global__ void softmax_backward_kernel(const T* __restrict__ dy, const T* __restrict__ y,
                                        T* __restrict__ dx, int64_t rows, int64_t sk, float scale) {
  __shared__ float scratch[33];
  const int64_t packs = sk / N;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const T* dyr = dy + r * sk;
    const T* yr = y + r * sk;
    float dot = 0.0f;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      float d[N], f[N];
      load_pack<T, N>(dyr + p * N, d);
      load_pack<T, N>(yr + p * N, f);
#pragma unroll
      for (int i = 0; i < N; ++i) dot += d[i] * f[i];
    }
    dot = row_sum(dot, scratch);
    T* dxr = dx + r * sk;
    for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
      float d[N], f[N], o[N];
      load_pack<T, N>(dyr + p * N, d);
      load_pack<T, N>(yr + p * N, f);
#pragma unroll
      for (int i = 0; i < N; ++i) o[i] = scale * f[i] * (d[i] - dot);
      store_pack<T, N>(dxr + p * N, o);
    }
  }
}

}  // namespace

Tensor softmax_forward(const Tensor& x_in, double scale, bool causal) {
  check_cuda_float(x_in.dtype(), "softmax");
  const Tensor x = x_in.contiguous();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  const int64_t sk = x.size(-1);
  if (x.numel() == 0) return y;
  const int64_t sq = causal ? x.size(-2) : 1, rows = x.numel() / sk;
  cudaStream_t stream = mcore::cuda::current_stream();
  MCORE_DISPATCH_CUDA_FLOAT(x.dtype(), "softmax", [&] {
    using T = scalar_t;
    constexpr int V = kVecWidth<T>;
    const T* xp = static_cast<const T*>(x.data_ptr());
    T* yp = static_cast<T*>(y.data_ptr());
    const bool vec = rows_vectorizable(xp, sk, sizeof(T)) && rows_vectorizable(yp, sk, sizeof(T));
    const RowPlan plan = plan_rows(rows, vec ? sk / V : sk);
    const float s = static_cast<float>(scale);
    if (vec) {
      softmax_forward_kernel<T, V>
          <<<plan.grid, plan.block, 0, stream>>>(xp, yp, rows, sq, sk, s, causal);
    } else {
      softmax_forward_kernel<T, 1>
          <<<plan.grid, plan.block, 0, stream>>>(xp, yp, rows, sq, sk, s, causal);
    }
    MCORE_CUDA_CHECK_LAUNCH("softmax");
  });
  return y;
}

Tensor softmax_backward(const Tensor& dy_in, const Tensor& y_in, double scale) {
  check_cuda_float(y_in.dtype(), "softmax_backward");
  const Tensor dy = dy_in.contiguous(), y = y_in.contiguous();
  Tensor dx = empty(y.shape(), {y.dtype(), y.device()});
  const int64_t sk = y.size(-1);
  if (y.numel() == 0) return dx;
  const int64_t rows = y.numel() / sk;
  cudaStream_t stream = mcore::cuda::current_stream();
  MCORE_DISPATCH_CUDA_FLOAT(y.dtype(), "softmax_backward", [&] {
    using T = scalar_t;
    constexpr int V = kVecWidth<T>;
    const T* dyp = static_cast<const T*>(dy.data_ptr());
    const T* yp = static_cast<const T*>(y.data_ptr());
    T* dxp = static_cast<T*>(dx.data_ptr());
    const bool vec = rows_vectorizable(dyp, sk, sizeof(T)) &&
                     rows_vectorizable(yp, sk, sizeof(T)) && rows_vectorizable(dxp, sk, sizeof(T));
    const RowPlan plan = plan_rows(rows, vec ? sk / V : sk);
    const float s = static_cast<float>(scale);
    if (vec) {
      softmax_backward_kernel<T, V>
          <<<plan.grid, plan.block, 0, stream>>>(dyp, yp, dxp, rows, sk, s);
    } else {
      softmax_backward_kernel<T, 1>
          <<<plan.grid, plan.block, 0, stream>>>(dyp, yp, dxp, rows, sk, s);
    }
    MCORE_CUDA_CHECK_LAUNCH("softmax_backward");
  });
  return dx;
}

}  // namespace mcore::ops::cuda

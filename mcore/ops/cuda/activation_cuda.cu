#include "mcore/ops/cuda/activation_cuda.h"

#include "mcore/ops/cuda/row_kernel_util.cuh"
#include "mcore/tensor/factory.h"

namespace mcore::ops::cuda {

namespace {

enum class Act { kGeluErf, kGeluTanh, kSilu };

constexpr float kAlpha = 0.70710678118654752440f;  // 1 / sqrt(2)
constexpr float kBeta = 0.39894228040143267794f;   // 1 / sqrt(2 pi)
constexpr float kKappa = 0.79788456080286535588f;  // sqrt(2 / pi)
constexpr float kCubic = 0.044715f;

__device__ __forceinline__ float sigmoid(float x) {
  return 1.0f / (1.0f + expf(-x));
}

// As the CPU: the tanh form uses 0.5 (1 + tanh(u)) = sigmoid(2u), 1 - tanh(u)^2 = 4 s (1 - s).
template <Act kAct>
__device__ __forceinline__ float act_forward(float x) {
  if constexpr (kAct == Act::kGeluErf) {
    return 0.5f * x * (1.0f + erff(x * kAlpha));
  } else if constexpr (kAct == Act::kGeluTanh) {
    return x / (1.0f + expf(-2.0f * kKappa * (x + kCubic * x * x * x)));
  } else {
    return x * sigmoid(x);
  }
}

template <Act kAct>
__device__ __forceinline__ float act_derivative(float x) {
  if constexpr (kAct == Act::kGeluErf) {
    return 0.5f * (1.0f + erff(x * kAlpha)) + x * kBeta * expf(-0.5f * x * x);
  } else if constexpr (kAct == Act::kGeluTanh) {
    const float x2 = x * x;
    const float s = 1.0f / (1.0f + expf(-2.0f * kKappa * (x + kCubic * x2 * x)));
    return s + 2.0f * x * s * (1.0f - s) * kKappa * (1.0f + 3.0f * kCubic * x2);
  } else {
    const float s = sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
  }
}

// y = f(x) (dy == nullptr) or dx = dy * f'(x), n elements; the first n / N * N as packs (all
// pointers 16-byte aligned when N > 1), the rest one by one.
template <class T, int N, Act kAct, bool kBackward>
__global__ void unary_kernel(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ y,
                             int64_t n) {
  const int64_t packs = n / N, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  for (int64_t p = tid; p < packs; p += stride) {
    float f[N], o[N];
    load_pack<T, N>(x + p * N, f);
    if constexpr (kBackward) {
      float d[N];
      load_pack<T, N>(dy + p * N, d);
#pragma unroll
      for (int i = 0; i < N; ++i) o[i] = d[i] * act_derivative<kAct>(f[i]);
    } else {
#pragma unroll
      for (int i = 0; i < N; ++i) o[i] = act_forward<kAct>(f[i]);
    }
    store_pack<T, N>(y + p * N, o);
  }
  for (int64_t i = packs * N + tid; i < n; i += stride) {
    const float v = to_float(x[i]);
    y[i] =
        from_float<T>(kBackward ? to_float(dy[i]) * act_derivative<kAct>(v) : act_forward<kAct>(v));
  }
}

// x [rows, 2f] = [gate | up] -> y [rows, f] = silu(gate) * up; backward writes dx [rows, 2f]:
// d gate = dy * up * silu'(gate), d up = dy * silu(gate). Packs of N along f (f % N == 0 and
// aligned pointers when N > 1).
template <class T, int N, bool kBackward>
__global__ void swiglu_kernel(const T* __restrict__ x, const T* __restrict__ dy,
                              T* __restrict__ out, int64_t rows, int64_t f) {
  const int64_t fp = f / N, total = rows * fp;
  for (int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; q < total;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = q / fp, j = (q - r * fp) * N;
    const T* gate = x + r * 2 * f + j;
    float g[N], u[N];
    load_pack<T, N>(gate, g);
    load_pack<T, N>(gate + f, u);
    if constexpr (kBackward) {
      float d[N], dg[N], du[N];
      load_pack<T, N>(dy + r * f + j, d);
#pragma unroll
      for (int i = 0; i < N; ++i) {
        const float s = sigmoid(g[i]);
        dg[i] = d[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        du[i] = d[i] * g[i] * s;
      }
      store_pack<T, N>(out + r * 2 * f + j, dg);
      store_pack<T, N>(out + r * 2 * f + f + j, du);
    } else {
      float o[N];
#pragma unroll
      for (int i = 0; i < N; ++i) o[i] = g[i] * sigmoid(g[i]) * u[i];
      store_pack<T, N>(out + r * f + j, o);
    }
  }
}

constexpr int kThreads = 256;

bool aligned16(std::initializer_list<const void*> ps) {
  for (const void* p : ps) {
    if (p && reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  return true;
}

template <Act kAct>
Tensor unary(const Tensor& x_in, const Tensor& dy_in, const char* op) {
  check_cuda_float(x_in.dtype(), op);
  const Tensor x = x_in.contiguous();
  const Tensor dy = dy_in.defined() ? dy_in.contiguous() : Tensor();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  const int64_t n = x.numel();
  if (n == 0) return y;
  cudaStream_t stream = mcore::cuda::current_stream();
  MCORE_DISPATCH_CUDA_FLOAT(x.dtype(), op, [&] {
    using T = scalar_t;
    constexpr int V = kVecWidth<T>;
    const T* xp = static_cast<const T*>(x.data_ptr());
    const T* dyp = dy.defined() ? static_cast<const T*>(dy.data_ptr()) : nullptr;
    T* yp = static_cast<T*>(y.data_ptr());
    const bool vec = aligned16({xp, dyp, yp});
    const unsigned blocks = flat_blocks(vec ? (n + V - 1) / V : n, kThreads);
    if (dyp) {
      if (vec) {
        unary_kernel<T, V, kAct, true><<<blocks, kThreads, 0, stream>>>(xp, dyp, yp, n);
      } else {
        unary_kernel<T, 1, kAct, true><<<blocks, kThreads, 0, stream>>>(xp, dyp, yp, n);
      }
    } else {
      if (vec) {
        unary_kernel<T, V, kAct, false><<<blocks, kThreads, 0, stream>>>(xp, dyp, yp, n);
      } else {
        unary_kernel<T, 1, kAct, false><<<blocks, kThreads, 0, stream>>>(xp, dyp, yp, n);
      }
    }
    MCORE_CUDA_CHECK_LAUNCH(op);
  });
  return y;
}

template <bool kBackward>
void swiglu(const Tensor& x, const Tensor& dy, Tensor& out, const char* op) {
  const int64_t f = x.size(-1) / 2, rows = f == 0 ? 0 : x.numel() / (2 * f);
  if (rows == 0) return;
  cudaStream_t stream = mcore::cuda::current_stream();
  MCORE_DISPATCH_CUDA_FLOAT(x.dtype(), op, [&] {
    using T = scalar_t;
    constexpr int V = kVecWidth<T>;
    const T* xp = static_cast<const T*>(x.data_ptr());
    const T* dyp = kBackward ? static_cast<const T*>(dy.data_ptr()) : nullptr;
    T* op_ = static_cast<T*>(out.data_ptr());
    const bool vec = f % V == 0 && aligned16({xp, dyp, op_});
    const unsigned blocks = flat_blocks(rows * (vec ? f / V : f), kThreads);
    if (vec) {
      swiglu_kernel<T, V, kBackward><<<blocks, kThreads, 0, stream>>>(xp, dyp, op_, rows, f);
    } else {
      swiglu_kernel<T, 1, kBackward><<<blocks, kThreads, 0, stream>>>(xp, dyp, op_, rows, f);
    }
    MCORE_CUDA_CHECK_LAUNCH(op);
  });
}

}  // namespace

Tensor gelu_forward(const Tensor& x, GeluApproximate approximate) {
  return approximate == GeluApproximate::kTanh ? unary<Act::kGeluTanh>(x, Tensor(), "gelu")
                                               : unary<Act::kGeluErf>(x, Tensor(), "gelu");
}

Tensor gelu_backward(const Tensor& dy, const Tensor& x, GeluApproximate approximate) {
  return approximate == GeluApproximate::kTanh ? unary<Act::kGeluTanh>(x, dy, "gelu_backward")
                                               : unary<Act::kGeluErf>(x, dy, "gelu_backward");
}

Tensor silu_forward(const Tensor& x) {
  return unary<Act::kSilu>(x, Tensor(), "silu");
}

Tensor silu_backward(const Tensor& dy, const Tensor& x) {
  return unary<Act::kSilu>(x, dy, "silu_backward");
}

Tensor swiglu_forward(const Tensor& x_in) {
  check_cuda_float(x_in.dtype(), "swiglu");
  const Tensor x = x_in.contiguous();
  Shape out_shape = x.shape();
  out_shape.back() /= 2;
  Tensor y = empty(out_shape, {x.dtype(), x.device()});
  swiglu<false>(x, Tensor(), y, "swiglu");
  return y;
}

Tensor swiglu_backward(const Tensor& dy_in, const Tensor& x_in) {
  check_cuda_float(x_in.dtype(), "swiglu_backward");
  const Tensor dy = dy_in.contiguous(), x = x_in.contiguous();
  Tensor dx = empty(x.shape(), {x.dtype(), x.device()});
  swiglu<true>(x, dy, dx, "swiglu_backward");
  return dx;
}

}  // namespace mcore::ops::cuda

#include "mcore/ops/activation.h"

#include <cmath>
#include <type_traits>

#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/cpu/vec_math.h"
#include "mcore/ops/device_route.h"
#include "mcore/tensor/factory.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/activation_cuda.h"
#endif

// Routes to the CUDA kernel when the checked arguments live on a GPU.
#ifdef MCORE_WITH_CUDA
#define MCORE_ACT_CUDA(cond, call) \
  if (cond) return call
#else
#define MCORE_ACT_CUDA(cond, call) (void)(cond)
#endif

namespace mcore::ops {

namespace {

// Transcendental per element: worth threads from a few thousand elements on.
constexpr int64_t kParallelMin = 8192;

// The tanh form uses 0.5 (1 + tanh(u)) = sigmoid(2u): one exp, no cancellation, and
// 1 - tanh(u)^2 = 4 s (1 - s) for the derivative.
template <class A, bool kTanh>
struct Gelu {
  static constexpr A kAlpha = A(0.70710678118654752440);  // 1 / sqrt(2)
  static constexpr A kBeta = A(0.39894228040143267794);   // 1 / sqrt(2 pi)
  static constexpr A kKappa = A(0.79788456080286535588);  // sqrt(2 / pi)
  static constexpr A kCubic = A(0.044715);

  static A forward(A x) {
    if constexpr (kTanh) {
      return x / (A(1) + vmath::exp(A(-2) * kKappa * (x + kCubic * x * x * x)));
    } else {
      return A(0.5) * x * (A(1) + vmath::erf(x * kAlpha));
    }
  }
  static A derivative(A x) {
    if constexpr (kTanh) {
      A x2 = x * x;
      A s = A(1) / (A(1) + vmath::exp(A(-2) * kKappa * (x + kCubic * x2 * x)));
      return s + A(2) * x * s * (A(1) - s) * kKappa * (A(1) + A(3) * kCubic * x2);
    } else {
      return A(0.5) * (A(1) + vmath::erf(x * kAlpha)) + x * kBeta * vmath::exp(A(-0.5) * x * x);
    }
  }
};

template <class A>
inline A sigmoid(A x) {
  return A(1) / (A(1) + vmath::exp(-x));
}

// y[i] = f(x[i]) over contiguous memory.
template <class T, class Fn>
void map_kernel(const T* x, T* y, int64_t n, Fn f) {
  using A = acc_t<T>;
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = store<T>(f(static_cast<A>(x[i])));
}

// dx[i] = dy[i] * f'(x[i]) over contiguous memory.
template <class T, class Fn>
void map_backward_kernel(const T* dy, const T* x, T* dx, int64_t n, Fn df) {
  using A = acc_t<T>;
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    dx[i] = store<T>(static_cast<A>(dy[i]) * df(static_cast<A>(x[i])));
}

#if defined(__AVX512F__)
using vmath::tail_mask16;

// sigmoid(g) = 1 / (1 + exp(-g)) on 16 lanes.
inline __m512 sigmoid16(__m512 g) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one,
                       _mm512_add_ps(one, vmath::exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
}
#endif

template <class T>
void swiglu_forward_kernel(const T* x, T* y, int64_t rows, int64_t f) {
  using A = acc_t<T>;
#pragma omp parallel for schedule(static) if (rows * f > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* gate = x + r * 2 * f;
    const T* up = gate + f;
    T* out = y + r * f;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {  // 16 lanes with vmath::exp16
      for (int64_t j = 0; j < f; j += 16) {
        const __mmask16 m = tail_mask16(f - j);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + j);
        const __m512 u = _mm512_maskz_loadu_ps(m, up + j);
        _mm512_mask_storeu_ps(out + j, m, _mm512_mul_ps(_mm512_mul_ps(g, sigmoid16(g)), u));
      }
      continue;
    }
#endif
#pragma omp simd
    for (int64_t j = 0; j < f; ++j) {
      A g = static_cast<A>(gate[j]);
      out[j] = store<T>(g * sigmoid(g) * static_cast<A>(up[j]));
    }
  }
}

// d gate = dy * up * silu'(gate), d up = dy * silu(gate); silu'(g) = s (1 + g (1 - s)).
template <class T>
void swiglu_backward_kernel(const T* dy, const T* x, T* dx, int64_t rows, int64_t f) {
  using A = acc_t<T>;
#pragma omp parallel for schedule(static) if (rows * f > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* gate = x + r * 2 * f;
    const T* up = gate + f;
    const T* g_out = dy + r * f;
    T* d_gate = dx + r * 2 * f;
    T* d_up = d_gate + f;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      const __m512 one = _mm512_set1_ps(1.0f);
      for (int64_t j = 0; j < f; j += 16) {
        const __mmask16 m = tail_mask16(f - j);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + j);
        const __m512 u = _mm512_maskz_loadu_ps(m, up + j);
        const __m512 d = _mm512_maskz_loadu_ps(m, g_out + j);
        const __m512 sg = sigmoid16(g);
        const __m512 ds = _mm512_mul_ps(d, sg);
        const __m512 slope = _mm512_fmadd_ps(g, _mm512_sub_ps(one, sg), one);
        _mm512_mask_storeu_ps(d_gate + j, m, _mm512_mul_ps(_mm512_mul_ps(ds, u), slope));
        _mm512_mask_storeu_ps(d_up + j, m, _mm512_mul_ps(ds, g));
      }
      continue;
    }
#endif
#pragma omp simd
    for (int64_t j = 0; j < f; ++j) {
      A g = static_cast<A>(gate[j]), u = static_cast<A>(up[j]), d = static_cast<A>(g_out[j]);
      A s = sigmoid(g);
      d_gate[j] = store<T>(d * u * s * (A(1) + g * (A(1) - s)));
      d_up[j] = store<T>(d * g * s);
    }
  }
}

#if defined(__AVX512F__)
// The tanh-form GELU on contiguous float32 with vmath::exp16, 16 lanes at a time (the last step
// masked): 2x the simd loop above, whose libmvec exp is 8 lanes wide. The formulas are Gelu's.
template <class F>
void for_each16(int64_t n, F f) {
  const int64_t steps = (n + 15) / 16;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t b = 0; b < steps; ++b) {
    const int64_t i = b * 16;
    f(i, tail_mask16(n - i));
  }
}

// s = sigmoid(2u) = 1 / (1 + exp(-2u)), u = kappa (x + c x^3); x2 = x^2.
inline __m512 gelu_tanh_sigmoid(__m512 x, __m512 x2) {
  using G = Gelu<float, true>;
  const __m512 inner =
      _mm512_mul_ps(x, _mm512_fmadd_ps(_mm512_set1_ps(G::kCubic), x2, _mm512_set1_ps(1.0f)));
  return sigmoid16(_mm512_mul_ps(_mm512_set1_ps(2.0f * G::kKappa), inner));
}

Tensor gelu_tanh_forward_f32(const Tensor& x_in) {
  const Tensor x = x_in.contiguous();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  for_each16(x.numel(), [&](int64_t i, __mmask16 m) {
    const __m512 v = _mm512_maskz_loadu_ps(m, xp + i);
    const __m512 s = gelu_tanh_sigmoid(v, _mm512_mul_ps(v, v));
    _mm512_mask_storeu_ps(yp + i, m, _mm512_mul_ps(v, s));
  });
  return y;
}

// d = s + 2 x s (1 - s) kappa (1 + 3 c x^2), dx = dy d.
Tensor gelu_tanh_backward_f32(const Tensor& dy_in, const Tensor& x_in) {
  using G = Gelu<float, true>;
  const Tensor dy = dy_in.contiguous(), x = x_in.contiguous();
  Tensor dx = empty(x.shape(), {x.dtype(), x.device()});
  const float* xp = x.data<float>();
  const float* gp = dy.data<float>();
  float* dp = dx.data<float>();
  for_each16(x.numel(), [&](int64_t i, __mmask16 m) {
    const __m512 v = _mm512_maskz_loadu_ps(m, xp + i);
    const __m512 x2 = _mm512_mul_ps(v, v);
    const __m512 s = gelu_tanh_sigmoid(v, x2);
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 poly = _mm512_fmadd_ps(_mm512_set1_ps(3.0f * G::kCubic), x2, one);
    const __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(v, s), _mm512_sub_ps(one, s)),
                                   _mm512_mul_ps(_mm512_set1_ps(2.0f * G::kKappa), poly));
    const __m512 d = _mm512_add_ps(s, t);
    _mm512_mask_storeu_ps(dp + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, gp + i), d));
  });
  return dx;
}
#endif

// Returns whether the pair lives on a GPU.
bool check_grad_pair(const Tensor& dy, const Tensor& x, const char* op) {
  const bool on_gpu = on_cuda({dy, x}, op);
  MCORE_CHECK(dy.shape() == x.shape() && dy.dtype() == x.dtype())
      << op << ": gradient " << shape_str(dy.shape()) << " " << dy.dtype()
      << " does not match input " << shape_str(x.shape()) << " " << x.dtype()
      << " (pass the output gradient of the forward call on this input)";
  return on_gpu;
}

template <class MakeFn>
Tensor unary_forward(const Tensor& x_in, const char* op, MakeFn make) {
  check_cpu({x_in}, op);
  Tensor x = x_in.contiguous();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  MCORE_DISPATCH_FLOAT_TYPES(x.dtype(), op, [&] {
    map_kernel<scalar_t>(static_cast<const scalar_t*>(x.data_ptr()),
                         static_cast<scalar_t*>(y.data_ptr()), x.numel(), make(acc_t<scalar_t>{}));
  });
  return y;
}

template <class MakeFn>
Tensor unary_backward(const Tensor& dy_in, const Tensor& x_in, const char* op, MakeFn make) {
  check_grad_pair(dy_in, x_in, op);
  Tensor dy = dy_in.contiguous(), x = x_in.contiguous();
  Tensor dx = empty(x.shape(), {x.dtype(), x.device()});
  MCORE_DISPATCH_FLOAT_TYPES(x.dtype(), op, [&] {
    map_backward_kernel<scalar_t>(
        static_cast<const scalar_t*>(dy.data_ptr()), static_cast<const scalar_t*>(x.data_ptr()),
        static_cast<scalar_t*>(dx.data_ptr()), x.numel(), make(acc_t<scalar_t>{}));
  });
  return dx;
}

void check_swiglu_input(const Tensor& x, const char* op) {
  MCORE_CHECK(x.dim() >= 1 && x.size(-1) % 2 == 0)
      << op << ": input " << shape_str(x.shape())
      << " must have an even last dimension [..., 2F] holding [gate | up]";
}

}  // namespace

Tensor gelu_forward(const Tensor& x, GeluApproximate approx) {
  MCORE_ACT_CUDA(on_cuda({x}, "gelu"), cuda::gelu_forward(x, approx));
#if defined(__AVX512F__)
  if (approx == GeluApproximate::kTanh && x.defined() && x.dtype() == DType::F32 &&
      x.device().is_cpu())
    return gelu_tanh_forward_f32(x);
#endif
  if (approx == GeluApproximate::kTanh) {
    return unary_forward(x, "gelu", [](auto a) {
      return [](decltype(a) v) { return Gelu<decltype(a), true>::forward(v); };
    });
  }
  return unary_forward(x, "gelu", [](auto a) {
    return [](decltype(a) v) { return Gelu<decltype(a), false>::forward(v); };
  });
}

Tensor gelu_backward(const Tensor& dy, const Tensor& x, GeluApproximate approx) {
  MCORE_ACT_CUDA(check_grad_pair(dy, x, "gelu_backward"), cuda::gelu_backward(dy, x, approx));
#if defined(__AVX512F__)
  if (approx == GeluApproximate::kTanh && x.dtype() == DType::F32 && x.device().is_cpu())
    return gelu_tanh_backward_f32(dy, x);
#endif
  if (approx == GeluApproximate::kTanh) {
    return unary_backward(dy, x, "gelu_backward", [](auto a) {
      return [](decltype(a) v) { return Gelu<decltype(a), true>::derivative(v); };
    });
  }
  return unary_backward(dy, x, "gelu_backward", [](auto a) {
    return [](decltype(a) v) { return Gelu<decltype(a), false>::derivative(v); };
  });
}

Tensor silu_forward(const Tensor& x) {
  MCORE_ACT_CUDA(on_cuda({x}, "silu"), cuda::silu_forward(x));
  return unary_forward(x, "silu", [](auto a) {
    using A = decltype(a);
    return [](A v) { return v * sigmoid(v); };
  });
}

Tensor silu_backward(const Tensor& dy, const Tensor& x) {
  MCORE_ACT_CUDA(check_grad_pair(dy, x, "silu_backward"), cuda::silu_backward(dy, x));
  return unary_backward(dy, x, "silu_backward", [](auto a) {
    using A = decltype(a);
    return [](A v) {
      A s = sigmoid(v);
      return s * (A(1) + v * (A(1) - s));
    };
  });
}

Tensor swiglu_forward(const Tensor& x_in) {
  const bool on_gpu = on_cuda({x_in}, "swiglu");
  check_swiglu_input(x_in, "swiglu");
  MCORE_ACT_CUDA(on_gpu, cuda::swiglu_forward(x_in));
  Tensor x = x_in.contiguous();
  const int64_t f = x.size(-1) / 2, rows = f == 0 ? 0 : x.numel() / (2 * f);
  Shape out_shape = x.shape();
  out_shape.back() = f;
  Tensor y = empty(out_shape, {x.dtype(), x.device()});
  MCORE_DISPATCH_FLOAT_TYPES(x.dtype(), "swiglu", [&] {
    swiglu_forward_kernel<scalar_t>(static_cast<const scalar_t*>(x.data_ptr()),
                                    static_cast<scalar_t*>(y.data_ptr()), rows, f);
  });
  return y;
}

Tensor swiglu_backward(const Tensor& dy_in, const Tensor& x_in) {
  const bool on_gpu = on_cuda({dy_in, x_in}, "swiglu_backward");
  check_swiglu_input(x_in, "swiglu_backward");
  Shape expect = x_in.shape();
  expect.back() /= 2;
  MCORE_CHECK(dy_in.shape() == expect && dy_in.dtype() == x_in.dtype())
      << "swiglu_backward: gradient " << shape_str(dy_in.shape()) << " " << dy_in.dtype()
      << " does not match the output " << shape_str(expect) << " " << x_in.dtype() << " of input "
      << shape_str(x_in.shape());
  MCORE_ACT_CUDA(on_gpu, cuda::swiglu_backward(dy_in, x_in));
  Tensor dy = dy_in.contiguous(), x = x_in.contiguous();
  const int64_t f = expect.back(), rows = f == 0 ? 0 : x.numel() / (2 * f);
  Tensor dx = empty(x.shape(), {x.dtype(), x.device()});
  MCORE_DISPATCH_FLOAT_TYPES(x.dtype(), "swiglu_backward", [&] {
    swiglu_backward_kernel<scalar_t>(static_cast<const scalar_t*>(dy.data_ptr()),
                                     static_cast<const scalar_t*>(x.data_ptr()),
                                     static_cast<scalar_t*>(dx.data_ptr()), rows, f);
  });
  return dx;
}

}  // namespace mcore::ops

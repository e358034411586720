#include "mcore/ops/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/cpu/vec_math.h"
#include "mcore/ops/device_route.h"
#include "mcore/tensor/factory.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/softmax_cuda.h"
#endif

namespace mcore::ops {

namespace {

// Rows are independent; each thread takes whole rows. Narrow types keep the exponentials of a
// row in a per-thread float buffer so the output is rounded exactly once.
template <class T>
void softmax_forward_kernel(const T* x, T* y, int64_t rows, int64_t sq, int64_t sk, double scale,
                            bool causal) {
  using A = acc_t<T>;
  const A s = static_cast<A>(scale);
#pragma omp parallel if (rows * sk > 4096)
  {
    std::vector<A> buf(static_cast<size_t>(sk));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * sk;
      T* yr = y + r * sk;
      // Keys visible to query i = r % sq: j <= i + (sk - sq).
      int64_t valid = sk;
      if (causal) valid = std::clamp<int64_t>(r % sq + (sk - sq) + 1, 0, sk);
      A mx = -std::numeric_limits<A>::infinity();
#pragma omp simd reduction(max : mx)
      for (int64_t j = 0; j < valid; ++j) {
        buf[j] = s * static_cast<A>(xr[j]);
        mx = std::max(mx, buf[j]);
      }
      // An all -inf row would give exp(-inf - -inf) = NaN; treat its max as 0 (all exps 0).
      if (mx == -std::numeric_limits<A>::infinity()) mx = 0;
      const A sum = vmath::exp_shift(buf.data(), mx, valid, buf.data());
      const A inv = sum > 0 ? A(1) / sum : A(0);
#pragma omp simd
      for (int64_t j = 0; j < valid; ++j) yr[j] = store<T>(buf[j] * inv);
      for (int64_t j = valid; j < sk; ++j) yr[j] = store<T>(A(0));
    }
  }
}

template <class T>
void softmax_backward_kernel(const T* dy, const T* y, T* dx, int64_t rows, int64_t sk,
                             double scale) {
  using A = acc_t<T>;
  const A s = static_cast<A>(scale);
#pragma omp parallel for schedule(static) if (rows * sk > 4096)
  for (int64_t r = 0; r < rows; ++r) {
    const T* dyr = dy + r * sk;
    const T* yr = y + r * sk;
    T* dxr = dx + r * sk;
    A dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < sk; ++j) dot += static_cast<A>(dyr[j]) * static_cast<A>(yr[j]);
#pragma omp simd
    for (int64_t j = 0; j < sk; ++j)
      dxr[j] = store<T>(s * static_cast<A>(yr[j]) * (static_cast<A>(dyr[j]) - dot));
  }
}

}  // namespace

Tensor softmax_forward(const Tensor& x_in, double scale, bool causal) {
  [[maybe_unused]] const bool on_gpu = on_cuda({x_in}, "softmax");
  MCORE_CHECK(x_in.dim() >= 1) << "softmax: input must have at least one dimension, got "
                               << shape_str(x_in.shape());
  MCORE_CHECK(!causal || x_in.dim() >= 2)
      << "softmax: a causal mask needs scores [..., sq, sk], got " << shape_str(x_in.shape());
#ifdef MCORE_WITH_CUDA
  if (on_gpu) return cuda::softmax_forward(x_in, scale, causal);
#endif
  Tensor x = x_in.contiguous();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  const int64_t sk = x.size(-1);
  if (x.numel() == 0) return y;
  const int64_t sq = causal ? x.size(-2) : 1, rows = x.numel() / sk;
  MCORE_DISPATCH_FLOAT_TYPES(x.dtype(), "softmax", [&] {
    softmax_forward_kernel<scalar_t>(static_cast<const scalar_t*>(x.data_ptr()),
                                     static_cast<scalar_t*>(y.data_ptr()), rows, sq, sk, scale,
                                     causal);
  });
  return y;
}

Tensor softmax_backward(const Tensor& dy_in, const Tensor& y_in, double scale) {
  [[maybe_unused]] const bool on_gpu = on_cuda({dy_in, y_in}, "softmax_backward");
  MCORE_CHECK(dy_in.shape() == y_in.shape() && dy_in.dtype() == y_in.dtype())
      << "softmax_backward: gradient " << shape_str(dy_in.shape()) << " " << dy_in.dtype()
      << " does not match the softmax output " << shape_str(y_in.shape()) << " " << y_in.dtype();
  MCORE_CHECK(y_in.dim() >= 1) << "softmax_backward: 0-d input";
#ifdef MCORE_WITH_CUDA
  if (on_gpu) return cuda::softmax_backward(dy_in, y_in, scale);
#endif
  Tensor dy = dy_in.contiguous(), y = y_in.contiguous();
  Tensor dx = empty(y.shape(), {y.dtype(), y.device()});
  const int64_t sk = y.size(-1);
  if (y.numel() == 0) return dx;
  MCORE_DISPATCH_FLOAT_TYPES(y.dtype(), "softmax_backward", [&] {
    softmax_backward_kernel<scalar_t>(
        static_cast<const scalar_t*>(dy.data_ptr()), static_cast<const scalar_t*>(y.data_ptr()),
        static_cast<scalar_t*>(dx.data_ptr()), y.numel() / sk, sk, scale);
  });
  return dx;
}

}  // namespace mcore::ops

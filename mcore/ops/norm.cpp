#include "mcore/ops/norm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/device_route.h"
#include "mcore/tensor/factory.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/norm_cuda.h"
#endif

namespace mcore::ops {

namespace {

constexpr int64_t kParallelMin = 16384;  // elements; below this a thread team costs more

// Forward, one row at a time. The row (H elements) is read from memory once; the mean and
// variance passes and the output pass re-read it from L1/L2. Variance from deviations instead
// of E[x^2] - E[x]^2 avoids cancellation when |mean| >> std.
template <class T, bool kLayerNorm>
void norm_forward_kernel(const T* x, const T* w, const T* b, T* y, acc_t<T>* mean_out,
                         acc_t<T>* rstd_out, int64_t rows, int64_t h, double eps_d) {
  using A = acc_t<T>;
  const A eps = static_cast<A>(eps_d), inv_h = A(1) / static_cast<A>(h);
#pragma omp parallel for schedule(static) if (rows * h > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * h;
    T* yr = y + r * h;
    A mu = 0;
    if constexpr (kLayerNorm) {
      A s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < h; ++j) s += static_cast<A>(xr[j]);
      mu = s * inv_h;
    }
    // Corrected two-pass: the deviations' own sum `sd` fixes the rounding error of the first
    // mean (large when |mean| >> std), and removes its effect on the variance.
    A sd = 0, ss = 0;
#pragma omp simd reduction(+ : sd, ss)
    for (int64_t j = 0; j < h; ++j) {
      A d = static_cast<A>(xr[j]) - mu;
      sd += d;
      ss += d * d;
    }
    A var = ss * inv_h;
    if constexpr (kLayerNorm) {
      const A c = sd * inv_h;
      mu += c;
      var = std::max(var - c * c, A(0));
    }
    const A rs = A(1) / std::sqrt(var + eps);
    if constexpr (kLayerNorm) {
      mean_out[r] = mu;
      if (b) {
        for (int64_t j = 0; j < h; ++j)
          yr[j] = store<T>((static_cast<A>(xr[j]) - mu) * rs * static_cast<A>(w[j]) +
                           static_cast<A>(b[j]));
      } else {
        for (int64_t j = 0; j < h; ++j)
          yr[j] = store<T>((static_cast<A>(xr[j]) - mu) * rs * static_cast<A>(w[j]));
      }
    } else {
      for (int64_t j = 0; j < h; ++j)
        yr[j] = store<T>(static_cast<A>(xr[j]) * rs * static_cast<A>(w[j]));
    }
    rstd_out[r] = rs;
  }
}

// Backward. With xhat = (x - mean) * rstd (RMSNorm: mean = 0) and g = dy * w:
//   LayerNorm: dx = rstd * (g - mean_j(g) - xhat * mean_j(g * xhat))
//   RMSNorm:   dx = rstd * (g - xhat * mean_j(g * xhat))
//   dweight = sum_rows(dy * xhat), dbias = sum_rows(dy).
// The column sums go to per-thread partial rows, added afterwards in thread order, so a run
// is deterministic for a given thread count.
template <class T, bool kLayerNorm>
void norm_backward_kernel(const T* dy, const T* x, const acc_t<T>* mean, const acc_t<T>* rstd,
                          const T* w, T* dx, T* dw, T* db, int64_t rows, int64_t h) {
  using A = acc_t<T>;
  const A inv_h = A(1) / static_cast<A>(h);
  const bool want_wb = dw || db;
  const int max_threads = rows * h > kParallelMin ? omp_get_max_threads() : 1;
  std::vector<A> partial(want_wb ? static_cast<size_t>(max_threads) * 2 * h : 0, A(0));
#pragma omp parallel num_threads(max_threads) if (max_threads > 1)
  {
    A* pw = want_wb ? partial.data() + static_cast<size_t>(omp_get_thread_num()) * 2 * h : nullptr;
    A* pb = want_wb ? pw + h : nullptr;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* dyr = dy + r * h;
      const T* xr = x + r * h;
      const A mu = kLayerNorm ? mean[r] : A(0), rs = rstd[r];
      if (dx) {
        A sum_g = 0, sum_gx = 0;
#pragma omp simd reduction(+ : sum_g, sum_gx)
        for (int64_t j = 0; j < h; ++j) {
          A g = static_cast<A>(dyr[j]) * static_cast<A>(w[j]);
          A xh = (static_cast<A>(xr[j]) - mu) * rs;
          sum_g += g;
          sum_gx += g * xh;
        }
        const A mg = kLayerNorm ? sum_g * inv_h : A(0), mgx = sum_gx * inv_h;
        T* dxr = dx + r * h;
        for (int64_t j = 0; j < h; ++j) {
          A g = static_cast<A>(dyr[j]) * static_cast<A>(w[j]);
          A xh = (static_cast<A>(xr[j]) - mu) * rs;
          dxr[j] = store<T>(rs * (g - mg - xh * mgx));
        }
      }
      if (want_wb) {
#pragma omp simd
        for (int64_t j = 0; j < h; ++j) {
          A d = static_cast<A>(dyr[j]);
          pw[j] += d * (static_cast<A>(xr[j]) - mu) * rs;
          pb[j] += d;
        }
      }
    }
  }
  if (!want_wb) return;
#pragma omp parallel for schedule(static) if (max_threads > 1 && h > 1024)
  for (int64_t j = 0; j < h; ++j) {
    A sw = 0, sb = 0;
    for (int t = 0; t < max_threads; ++t) {
      sw += partial[static_cast<size_t>(t) * 2 * h + j];
      sb += partial[static_cast<size_t>(t) * 2 * h + h + j];
    }
    if (dw) dw[j] = store<T>(sw);
    if (db) db[j] = store<T>(sb);
  }
}

DType stats_dtype(DType x) {
  return x == DType::F64 ? DType::F64 : DType::F32;
}

// Validates x [..., H] against a [H] parameter of the same dtype.
void check_param(const Tensor& x, const Tensor& p, const char* op, const char* what) {
  MCORE_CHECK(p.dim() == 1 && x.dim() >= 1 && p.size(0) == x.size(-1))
      << op << ": " << what << " of shape " << shape_str(p.shape())
      << " does not match input of shape " << shape_str(x.shape()) << " (expected " << what << " ["
      << (x.dim() >= 1 ? x.size(-1) : 0) << "], the size of the last dimension)";
  MCORE_CHECK(p.dtype() == x.dtype())
      << op << ": " << what << " dtype " << p.dtype() << " " << shape_str(p.shape())
      << " differs from input dtype " << x.dtype() << " " << shape_str(x.shape())
      << " (convert the parameter to the input's dtype)";
}

void check_stats(const Tensor& x, const Tensor& s, const char* op, const char* what) {
  Shape rows_shape(x.shape().begin(), x.shape().end() - 1);
  MCORE_CHECK(s.shape() == rows_shape && s.dtype() == stats_dtype(x.dtype()))
      << op << ": saved " << what << " " << shape_str(s.shape()) << " " << s.dtype()
      << " does not belong to input " << shape_str(x.shape()) << " " << x.dtype() << " (expected "
      << shape_str(rows_shape) << " " << stats_dtype(x.dtype()) << " from the forward call)";
}

template <bool kLayerNorm>
void norm_forward(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, Tensor& mean,
                  Tensor& rstd, double eps, const char* op) {
  const int64_t h = x.size(-1), rows = h == 0 ? 0 : x.numel() / h;
  MCORE_DISPATCH_FLOAT_TYPES(x.dtype(), op, [&] {
    using A = acc_t<scalar_t>;
    norm_forward_kernel<scalar_t, kLayerNorm>(
        static_cast<const scalar_t*>(x.data_ptr()), static_cast<const scalar_t*>(w.data_ptr()),
        b.defined() ? static_cast<const scalar_t*>(b.data_ptr()) : nullptr,
        static_cast<scalar_t*>(y.data_ptr()), mean.defined() ? mean.data<A>() : nullptr,
        rstd.data<A>(), rows, h, eps);
  });
}

template <bool kLayerNorm>
NormGrads norm_backward(const Tensor& dy_in, const Tensor& x_in, const Tensor& mean_in,
                        const Tensor& rstd_in, const Tensor& w_in, bool has_bias, bool need_dx,
                        bool need_dweight, const char* op) {
  [[maybe_unused]] const bool on_gpu = kLayerNorm
                                           ? on_cuda({dy_in, x_in, mean_in, rstd_in, w_in}, op)
                                           : on_cuda({dy_in, x_in, rstd_in, w_in}, op);
  MCORE_CHECK(dy_in.shape() == x_in.shape() && dy_in.dtype() == x_in.dtype())
      << op << ": gradient " << shape_str(dy_in.shape()) << " " << dy_in.dtype()
      << " does not match input " << shape_str(x_in.shape()) << " " << x_in.dtype();
  check_param(x_in, w_in, op, "weight");
  if (kLayerNorm) check_stats(x_in, mean_in, op, "mean");
  check_stats(x_in, rstd_in, op, "rstd");
  if (on_gpu) {
#ifdef MCORE_WITH_CUDA
    return kLayerNorm ? cuda::layer_norm_backward(dy_in, x_in, mean_in, rstd_in, w_in, has_bias,
                                                  need_dx, need_dweight)
                      : cuda::rms_norm_backward(dy_in, x_in, rstd_in, w_in, need_dx, need_dweight);
#endif
  }
  Tensor dy = dy_in.contiguous(), x = x_in.contiguous(), w = w_in.contiguous();
  Tensor rstd = rstd_in.contiguous(), mean = kLayerNorm ? mean_in.contiguous() : Tensor();
  NormGrads out;
  const TensorOptions opts{x.dtype(), x.device()};
  if (need_dx) out.dx = empty(x.shape(), opts);
  if (need_dweight) out.dweight = empty(w.shape(), opts);
  if (has_bias) out.dbias = empty(w.shape(), opts);
  const int64_t h = x.size(-1), rows = h == 0 ? 0 : x.numel() / h;
  if (rows == 0) {
    if (need_dweight) out.dweight.zero_();
    if (has_bias) out.dbias.zero_();
    return out;
  }
  MCORE_DISPATCH_FLOAT_TYPES(x.dtype(), op, [&] {
    using A = acc_t<scalar_t>;
    auto ptr = [](const Tensor& t) {
      return t.defined() ? static_cast<scalar_t*>(t.data_ptr()) : nullptr;
    };
    norm_backward_kernel<scalar_t, kLayerNorm>(
        ptr(dy), ptr(x), kLayerNorm ? mean.data<A>() : nullptr, rstd.data<A>(), ptr(w), ptr(out.dx),
        ptr(out.dweight), ptr(out.dbias), rows, h);
  });
  return out;
}

}  // namespace

LayerNormOutput layer_norm_forward(const Tensor& x_in, const Tensor& weight, const Tensor& bias,
                                   double eps) {
  [[maybe_unused]] const bool on_gpu = on_cuda({x_in, weight}, "layer_norm", {bias});
  check_param(x_in, weight, "layer_norm", "weight");
  if (bias.defined()) check_param(x_in, bias, "layer_norm", "bias");
  MCORE_CHECK(eps >= 0) << "layer_norm: eps must be >= 0, got " << eps;
#ifdef MCORE_WITH_CUDA
  if (on_gpu) return cuda::layer_norm_forward(x_in, weight, bias, eps);
#endif
  Tensor x = x_in.contiguous();
  Shape rows_shape(x.shape().begin(), x.shape().end() - 1);
  LayerNormOutput out;
  out.y = empty(x.shape(), {x.dtype(), x.device()});
  out.mean = empty(rows_shape, {stats_dtype(x.dtype()), x.device()});
  out.rstd = empty(rows_shape, {stats_dtype(x.dtype()), x.device()});
  norm_forward<true>(x, weight.contiguous(), bias.defined() ? bias.contiguous() : Tensor(), out.y,
                     out.mean, out.rstd, eps, "layer_norm");
  return out;
}

NormGrads layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& mean,
                              const Tensor& rstd, const Tensor& weight, bool has_bias, bool need_dx,
                              bool need_dweight) {
  return norm_backward<true>(dy, x, mean, rstd, weight, has_bias, need_dx, need_dweight,
                             "layer_norm_backward");
}

RMSNormOutput rms_norm_forward(const Tensor& x_in, const Tensor& weight, double eps) {
  [[maybe_unused]] const bool on_gpu = on_cuda({x_in, weight}, "rms_norm");
  check_param(x_in, weight, "rms_norm", "weight");
  MCORE_CHECK(eps >= 0) << "rms_norm: eps must be >= 0, got " << eps;
#ifdef MCORE_WITH_CUDA
  if (on_gpu) return cuda::rms_norm_forward(x_in, weight, eps);
#endif
  Tensor x = x_in.contiguous();
  Shape rows_shape(x.shape().begin(), x.shape().end() - 1);
  RMSNormOutput out;
  out.y = empty(x.shape(), {x.dtype(), x.device()});
  out.rstd = empty(rows_shape, {stats_dtype(x.dtype()), x.device()});
  Tensor no_mean;
  norm_forward<false>(x, weight.contiguous(), Tensor(), out.y, no_mean, out.rstd, eps, "rms_norm");
  return out;
}

NormGrads rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& rstd,
                            const Tensor& weight, bool need_dx, bool need_dweight) {
  return norm_backward<false>(dy, x, Tensor(), rstd, weight, false, need_dx, need_dweight,
                              "rms_norm_backward");
}

}  // namespace mcore::ops

#include "mcore/ops/multi_tensor.h"

#include <algorithm>
#include <cmath>

#include "mcore/ops/device_check.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/multi_tensor_cuda.h"
#endif

namespace mcore::ops {

namespace {

// Small tensors (biases, norms) run serially: forking threads costs more than the pass.
constexpr int64_t kParallelMin = 32768;

// A list on a CUDA device goes to the CUDA kernels, which check that all of it is there.
[[maybe_unused]] bool on_cuda(const std::vector<Tensor>& ts) {
  return !ts.empty() && ts.front().defined() && ts.front().device().is_cuda();
}

void check_list(const std::vector<Tensor>& ts, const char* op) {
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = ts[i];
    check_cpu({t}, op);
    MCORE_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64)
        << op << ": tensor " << i << " of shape " << shape_str(t.shape()) << " has dtype "
        << t.dtype() << "; expected float32 or float64 (main gradients are fp32)";
    MCORE_CHECK(t.is_contiguous())
        << op << ": tensor " << i << " of shape " << shape_str(t.shape()) << " is not contiguous";
  }
}

template <class T>
bool unscale_kernel(T* g, int64_t n, float inv_scale) {
  bool found = false;
  const T s = static_cast<T>(inv_scale);
  const bool scale = inv_scale != 1.0f;
#pragma omp parallel for simd schedule(static) reduction(|| : found) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T v = g[i];
    found = found || !std::isfinite(v);
    if (scale) g[i] = v * s;
  }
  return found;
}

template <class T>
void scale_kernel(T* g, int64_t n, float scale) {
  const T s = static_cast<T>(scale);
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] * s;
}

// NaN is tracked apart from the max: max-reductions drop NaN depending on the order.
template <class T>
double max_abs_kernel(const T* g, int64_t n, bool& nan) {
  T m = 0;
  bool has_nan = false;
#pragma omp parallel for simd schedule(static) reduction(max  \
                                                         : m) \
    reduction(||                                              \
              : has_nan) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T a = std::fabs(g[i]);
    has_nan = has_nan || std::isnan(a);
    m = a > m ? a : m;
  }
  nan = nan || has_nan;
  return static_cast<double>(m);
}

template <class T>
int64_t count_zeros_kernel(const T* g, int64_t n) {
  int64_t zeros = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : zeros) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) zeros += g[i] == T(0) ? 1 : 0;
  return zeros;
}

}  // namespace

bool non_finite_check_and_unscale_(std::vector<Tensor>& grads, float inv_scale) {
#ifdef MCORE_WITH_CUDA
  if (on_cuda(grads)) return cuda::non_finite_check_and_unscale_(grads, inv_scale);
#endif
  check_list(grads, "non_finite_check_and_unscale_");
  bool found = false;
  for (Tensor& g : grads) {
    found = (g.dtype() == DType::F64 ? unscale_kernel(g.data<double>(), g.numel(), inv_scale)
                                     : unscale_kernel(g.data<float>(), g.numel(), inv_scale)) ||
            found;
  }
  return found;
}

void multi_tensor_scale_(std::vector<Tensor>& tensors, double scale) {
#ifdef MCORE_WITH_CUDA
  if (on_cuda(tensors)) return cuda::multi_tensor_scale_(tensors, scale);
#endif
  check_list(tensors, "multi_tensor_scale_");
  const float s = static_cast<float>(scale);
  for (Tensor& t : tensors) {
    if (t.dtype() == DType::F64) {
      scale_kernel(t.data<double>(), t.numel(), s);
    } else {
      scale_kernel(t.data<float>(), t.numel(), s);
    }
  }
}

double multi_tensor_max_abs(const std::vector<Tensor>& tensors) {
#ifdef MCORE_WITH_CUDA
  if (on_cuda(tensors)) return cuda::multi_tensor_max_abs(tensors);
#endif
  check_list(tensors, "multi_tensor_max_abs");
  double m = 0.0;
  bool nan = false;
  for (const Tensor& t : tensors) {
    const double tm = t.dtype() == DType::F64 ? max_abs_kernel(t.data<double>(), t.numel(), nan)
                                              : max_abs_kernel(t.data<float>(), t.numel(), nan);
    m = std::max(m, tm);
  }
  return nan ? std::nan("") : m;
}

int64_t multi_tensor_count_zeros(const std::vector<Tensor>& tensors) {
#ifdef MCORE_WITH_CUDA
  if (on_cuda(tensors)) return cuda::multi_tensor_count_zeros(tensors);
#endif
  check_list(tensors, "multi_tensor_count_zeros");
  int64_t zeros = 0;
  for (const Tensor& t : tensors) {
    zeros += t.dtype() == DType::F64 ? count_zeros_kernel(t.data<double>(), t.numel())
                                     : count_zeros_kernel(t.data<float>(), t.numel());
  }
  return zeros;
}

}  // namespace mcore::ops

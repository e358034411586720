#include "mcore/ops/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/cpu/vec_math.h"
#include "mcore/ops/device_route.h"
#include "mcore/tensor/factory.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/cross_entropy_cuda.h"
#endif

namespace mcore::ops {

namespace {

DType loss_dtype(DType logits) {
  return logits == DType::F64 ? DType::F64 : DType::F32;
}

// Checks shapes and dtypes and returns the targets as int64 (validated against V here, serially,
// so the parallel kernels cannot throw). For arguments on a GPU it returns an undefined tensor:
// the CUDA kernels check the target range on the device, without a host sync.
Tensor checked_targets(const Tensor& logits, const Tensor& target, const Tensor& loss_mask,
                       int64_t ignore_index, const char* op) {
  const bool on_gpu = on_cuda({logits, target}, op, {loss_mask});
  MCORE_CHECK(logits.dim() >= 1 && is_floating(logits.dtype()))
      << op << ": logits must be a float tensor [..., V], got " << logits.dtype() << " "
      << shape_str(logits.shape());
  Shape rows(logits.shape().begin(), logits.shape().end() - 1);
  MCORE_CHECK(target.shape() == rows)
      << op << ": target " << shape_str(target.shape()) << " must have the shape of logits "
      << shape_str(logits.shape()) << " without its last (vocab) dimension, i.e. "
      << shape_str(rows);
  MCORE_CHECK(target.dtype() == DType::I64 || target.dtype() == DType::I32)
      << op << ": target must be int64 or int32, got " << target.dtype() << " "
      << shape_str(target.shape());
  if (loss_mask.defined()) {
    MCORE_CHECK(loss_mask.shape() == rows && is_floating(loss_mask.dtype()))
        << op << ": loss_mask " << loss_mask.dtype() << " " << shape_str(loss_mask.shape())
        << " must be a float tensor shaped like target " << shape_str(target.shape());
  }
  if (on_gpu) return Tensor();
  Tensor t = target.to(DType::I64).contiguous();
  const int64_t V = logits.size(-1);
  const int64_t* tp = t.data<int64_t>();
  for (int64_t n = 0; n < t.numel(); ++n) {
    MCORE_CHECK(tp[n] == ignore_index || (tp[n] >= 0 && tp[n] < V))
        << op << ": target " << tp[n] << " at flat index " << n << " is outside the vocabulary [0, "
        << V << ") of logits " << shape_str(logits.shape()) << " (and is not ignore_index "
        << ignore_index << ")";
  }
  return t;
}

template <class T>
void forward_kernel(const Tensor& logits, const int64_t* tp, const Tensor& mask, int64_t ignore,
                    Tensor& loss, Tensor& lse) {
  using A = acc_t<T>;
  const int64_t V = logits.size(-1), N = loss.numel();
  const T* xp = logits.data<T>();
  A* lp = loss.data<A>();
  A* sp = lse.data<A>();
  const A* mp = mask.defined() ? mask.data<A>() : nullptr;
#pragma omp parallel for schedule(static) if (N * V > 32768)
  for (int64_t n = 0; n < N; ++n) {
    const T* x = xp + n * V;
    A mx = -std::numeric_limits<A>::infinity();
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < V; ++j) {
      const A v = static_cast<A>(x[j]);
      mx = v > mx ? v : mx;
    }
    const A sum = vmath::exp_shift(x, mx, V);
    const A l = mx + std::log(sum);
    sp[n] = l;
    const int64_t t = tp[n];
    A v = t == ignore ? A(0) : l - static_cast<A>(x[t]);
    if (mp) v *= mp[n];
    lp[n] = v;
  }
}

template <class T>
void backward_kernel(const Tensor& grad, const Tensor& logits, const int64_t* tp, const Tensor& lse,
                     const Tensor& mask, int64_t ignore, Tensor& dx) {
  using A = acc_t<T>;
  const int64_t V = logits.size(-1), N = grad.numel();
  const T* xp = logits.data<T>();
  const A* gp = grad.data<A>();
  const A* sp = lse.data<A>();
  const A* mp = mask.defined() ? mask.data<A>() : nullptr;
  T* dp = dx.data<T>();
#pragma omp parallel for schedule(static) if (N * V > 32768)
  for (int64_t n = 0; n < N; ++n) {
    const T* x = xp + n * V;
    T* d = dp + n * V;
    const int64_t t = tp[n];
    const A g = t == ignore ? A(0) : gp[n] * (mp ? mp[n] : A(1));
    if (g == A(0)) {
      std::fill(d, d + V, store<T>(A(0)));
      continue;
    }
    const A l = sp[n];
    vmath::exp_shift(x, l, V, d, g);
    d[t] = store<T>(g * (vmath::exp(static_cast<A>(x[t]) - l) - A(1)));
  }
}

}  // namespace

CrossEntropyForwardResult cross_entropy_forward(const Tensor& logits_in, const Tensor& target,
                                                const Tensor& loss_mask, int64_t ignore_index) {
  Tensor t = checked_targets(logits_in, target, loss_mask, ignore_index, "cross_entropy_forward");
#ifdef MCORE_WITH_CUDA
  if (!t.defined()) return cuda::cross_entropy_forward(logits_in, target, loss_mask, ignore_index);
#endif
  const Tensor logits = logits_in.contiguous();
  const DType ldt = loss_dtype(logits.dtype());
  const Tensor mask = loss_mask.defined() ? loss_mask.to(ldt).contiguous() : Tensor();
  CrossEntropyForwardResult r;
  r.loss = empty(target.shape(), {ldt, logits.device()});
  r.logsumexp = empty(target.shape(), {ldt, logits.device()});
  MCORE_CHECK(logits.size(-1) > 0 || r.loss.numel() == 0)
      << "cross_entropy_forward: empty vocabulary in logits " << shape_str(logits.shape());
  MCORE_DISPATCH_FLOAT_TYPES(logits.dtype(), "cross_entropy_forward", [&] {
    forward_kernel<scalar_t>(logits, t.data<int64_t>(), mask, ignore_index, r.loss, r.logsumexp);
  });
  return r;
}

Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits_in,
                              const Tensor& target, const Tensor& logsumexp,
                              const Tensor& loss_mask, int64_t ignore_index) {
  const char* op = "cross_entropy_backward";
  Tensor t = checked_targets(logits_in, target, loss_mask, ignore_index, op);
  on_cuda({logits_in, grad_loss, logsumexp}, op);
  MCORE_CHECK(grad_loss.shape() == target.shape() && logsumexp.shape() == target.shape())
      << op << ": grad_loss " << shape_str(grad_loss.shape()) << " and logsumexp "
      << shape_str(logsumexp.shape()) << " must be shaped like target "
      << shape_str(target.shape());
#ifdef MCORE_WITH_CUDA
  if (!t.defined()) {
    return cuda::cross_entropy_backward(grad_loss, logits_in, target, logsumexp, loss_mask,
                                        ignore_index);
  }
#endif
  const Tensor logits = logits_in.contiguous();
  const DType ldt = loss_dtype(logits.dtype());
  const Tensor grad = grad_loss.to(ldt).contiguous();
  const Tensor lse = logsumexp.to(ldt).contiguous();
  const Tensor mask = loss_mask.defined() ? loss_mask.to(ldt).contiguous() : Tensor();
  Tensor dx = empty(logits.shape(), {logits.dtype(), logits.device()});
  MCORE_DISPATCH_FLOAT_TYPES(logits.dtype(), op, [&] {
    backward_kernel<scalar_t>(grad, logits, t.data<int64_t>(), lse, mask, ignore_index, dx);
  });
  return dx;
}

}  // namespace mcore::ops

#include "mcore/ops/adam.h"

#include <cmath>

#include "mcore/ops/cpu/acc_type.h"
#include "mcore/ops/device_route.h"
#include "mcore/ops/optimizer_coeffs.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/adam_cuda.h"
#endif

namespace mcore::ops {

namespace {

// One fused pass. M is the model-parameter type written from the updated value (void: none).
// The expression is PyTorch's AdamW sequence (mul_, add_ with alpha = one FMA, addcmul_, sqrt,
// div, add eps, addcdiv_) with each rounding where PyTorch rounds: float32 AdamW drifts from the
// exact trajectory by ~1e-5 over 100 steps, so matching PyTorch to 1e-6 needs the same roundings.
// Contraction is therefore off here and the one fused multiply-add is explicit.
template <class P, class G, class M>
__attribute__((optimize("fp-contract=off"))) void adam_kernel(P* p, const G* g, P* m, P* v,
                                                              M* model, int64_t n,
                                                              AdamCoeffs<P> k) {
#pragma omp parallel for simd schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) {
    const P gi = static_cast<P>(g[i]);
    const P mi = std::fma(gi, k.one_minus_beta1, m[i] * k.beta1);
    const P vi = v[i] * k.beta2 + k.one_minus_beta2 * gi * gi;
    const P denom = std::sqrt(vi) / k.bc2_sqrt + k.eps;
    const P pi = p[i] * k.decay + k.neg_step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
    if constexpr (!std::is_void_v<M>) model[i] = M(static_cast<float>(pi));
  }
}

void check_inputs(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                  const Tensor& exp_avg_sq, int64_t step, const char* op) {
  check_devices({param, grad, exp_avg, exp_avg_sq}, op);
  MCORE_CHECK(param.dtype() == DType::F32 || param.dtype() == DType::F64)
      << op << ": parameter of dtype " << param.dtype() << " (shape " << shape_str(param.shape())
      << "); the optimizer updates float32 (or float64) parameters: keep an fp32 main copy and "
      << "use adam_step_with_main_ for bf16/fp16 models";
  MCORE_CHECK(exp_avg.dtype() == param.dtype() && exp_avg_sq.dtype() == param.dtype())
      << op << ": optimizer state dtypes " << exp_avg.dtype() << " / " << exp_avg_sq.dtype()
      << " must match the parameter's " << param.dtype();
  MCORE_CHECK(grad.dtype() == param.dtype() || grad.dtype() == DType::BF16 ||
              grad.dtype() == DType::F16)
      << op << ": gradient dtype " << grad.dtype() << " for a " << param.dtype()
      << " parameter; expected " << param.dtype() << ", bfloat16 or float16";
  const int64_t n = param.numel();
  MCORE_CHECK(grad.numel() == n && exp_avg.numel() == n && exp_avg_sq.numel() == n)
      << op << ": size mismatch: param " << shape_str(param.shape()) << ", grad "
      << shape_str(grad.shape()) << ", exp_avg " << shape_str(exp_avg.shape()) << ", exp_avg_sq "
      << shape_str(exp_avg_sq.shape());
  MCORE_CHECK(param.is_contiguous() && grad.is_contiguous() && exp_avg.is_contiguous() &&
              exp_avg_sq.is_contiguous())
      << op << ": tensors must be contiguous (optimizer buffers are flat); got param "
      << shape_str(param.shape()) << " strides " << shape_str(param.strides()) << ", grad "
      << shape_str(grad.shape()) << " strides " << shape_str(grad.strides());
  MCORE_CHECK(step >= 1) << op << ": step counts updates from 1, got " << step;
}

template <class P, class M>
void run(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, M* model,
         int64_t step, const AdamConfig& config) {
  AdamCoeffs<P> k = adam_coeffs<P>(config, step);
  P* p = param.data<P>();
  P* m = exp_avg.data<P>();
  P* v = exp_avg_sq.data<P>();
  const int64_t n = param.numel();
  switch (grad.dtype()) {
    case DType::BF16:
      adam_kernel<P, BFloat16, M>(p, grad.data<BFloat16>(), m, v, model, n, k);
      break;
    case DType::F16:
      adam_kernel<P, Half, M>(p, grad.data<Half>(), m, v, model, n, k);
      break;
    default:
      adam_kernel<P, P, M>(p, grad.data<P>(), m, v, model, n, k);
      break;
  }
}

}  // namespace

void adam_step_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
                int64_t step, const AdamConfig& config) {
  check_inputs(param, grad, exp_avg, exp_avg_sq, step, "adam_step_");
#ifdef MCORE_WITH_CUDA
  if (param.device().is_cuda())
    return cuda::adam_step_(param, grad, exp_avg, exp_avg_sq, step, config);
#endif
  if (param.dtype() == DType::F64) {
    run<double, void>(param, grad, exp_avg, exp_avg_sq, nullptr, step, config);
  } else {
    run<float, void>(param, grad, exp_avg, exp_avg_sq, nullptr, step, config);
  }
}

void adam_step_with_main_(Tensor& model_param, Tensor& main_param, const Tensor& grad,
                          Tensor& exp_avg, Tensor& exp_avg_sq, int64_t step,
                          const AdamConfig& config) {
  check_inputs(main_param, grad, exp_avg, exp_avg_sq, step, "adam_step_with_main_");
  check_devices({main_param, model_param}, "adam_step_with_main_");
  MCORE_CHECK(main_param.dtype() == DType::F32)
      << "adam_step_with_main_: main parameter must be float32, got " << main_param.dtype();
  MCORE_CHECK(model_param.numel() == main_param.numel() && model_param.is_contiguous())
      << "adam_step_with_main_: model parameter " << shape_str(model_param.shape())
      << " must be contiguous with the numel of the main parameter "
      << shape_str(main_param.shape());
#ifdef MCORE_WITH_CUDA
  if (main_param.device().is_cuda() &&
      (model_param.dtype() == DType::BF16 || model_param.dtype() == DType::F16))
    return cuda::adam_step_with_main_(model_param, main_param, grad, exp_avg, exp_avg_sq, step,
                                      config);
#endif
  switch (model_param.dtype()) {
    case DType::BF16:
      run<float, BFloat16>(main_param, grad, exp_avg, exp_avg_sq, model_param.data<BFloat16>(),
                           step, config);
      break;
    case DType::F16:
      run<float, Half>(main_param, grad, exp_avg, exp_avg_sq, model_param.data<Half>(), step,
                       config);
      break;
    default:
      MCORE_FAIL() << "adam_step_with_main_: model parameter of dtype " << model_param.dtype()
                   << " (shape " << shape_str(model_param.shape())
                   << "); expected bfloat16 or float16 (use adam_step_ for float32 models)";
  }
}

}  // namespace mcore::ops

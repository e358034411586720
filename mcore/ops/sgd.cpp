#include "mcore/ops/sgd.h"

#include <cmath>
#include <type_traits>

#include "mcore/ops/device_route.h"
#include "mcore/ops/optimizer_coeffs.h"

#ifdef MCORE_WITH_CUDA
#include "mcore/ops/cuda/sgd_cuda.h"
#endif

namespace mcore::ops {

namespace {

// PyTorch's add(x, alpha) is one fused multiply-add on CPU (Vectorized::fmadd), mul_ one
// rounding; contraction is off so that nothing else fuses and the roundings match PyTorch's.
template <class P, class G, class M>
__attribute__((optimize("fp-contract=off"))) void sgd_kernel(P* p, const G* g, P* buf, M* model,
                                                             int64_t n, SgdCoeffs<P> k) {
#pragma omp parallel for simd schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) {
    const P pi = p[i];
    P d = static_cast<P>(g[i]);
    if (k.use_wd) d = std::fma(pi, k.weight_decay, d);
    if (k.use_momentum) {
      P b = k.first ? d : std::fma(d, k.one_minus_dampening, buf[i] * k.momentum);
      buf[i] = b;
      d = k.nesterov ? std::fma(b, k.momentum, d) : b;
    }
    const P out = std::fma(d, k.neg_lr, pi);
    p[i] = out;
    if constexpr (!std::is_void_v<M>) model[i] = M(static_cast<float>(out));
  }
}

void check_inputs(const Tensor& param, const Tensor& grad, const Tensor& buf, const SgdConfig& c,
                  const char* op) {
  check_devices({param, grad}, op);
  MCORE_CHECK(param.dtype() == DType::F32 || param.dtype() == DType::F64)
      << op << ": parameter of dtype " << param.dtype() << " (shape " << shape_str(param.shape())
      << "); the optimizer updates float32 (or float64) parameters: keep an fp32 main copy and "
      << "use sgd_step_with_main_ for bf16/fp16 models";
  MCORE_CHECK(grad.dtype() == param.dtype() || grad.dtype() == DType::BF16 ||
              grad.dtype() == DType::F16)
      << op << ": gradient dtype " << grad.dtype() << " for a " << param.dtype()
      << " parameter; expected " << param.dtype() << ", bfloat16 or float16";
  MCORE_CHECK(grad.numel() == param.numel())
      << op << ": size mismatch: param " << shape_str(param.shape()) << ", grad "
      << shape_str(grad.shape());
  MCORE_CHECK(param.is_contiguous() && grad.is_contiguous())
      << op << ": tensors must be contiguous; got param " << shape_str(param.shape()) << " strides "
      << shape_str(param.strides()) << ", grad " << shape_str(grad.shape()) << " strides "
      << shape_str(grad.strides());
  if (c.momentum != 0.0) {
    check_devices({param, buf}, op);
    MCORE_CHECK(buf.dtype() == param.dtype() && buf.numel() == param.numel() && buf.is_contiguous())
        << op << ": momentum buffer " << shape_str(buf.shape()) << " " << buf.dtype()
        << " must be contiguous with the parameter's numel and dtype (" << shape_str(param.shape())
        << " " << param.dtype() << ")";
  }
  MCORE_CHECK(!c.nesterov || (c.momentum > 0.0 && c.dampening == 0.0))
      << op << ": Nesterov momentum requires a momentum and zero dampening (as torch.optim.SGD)";
}

template <class P, class M>
void run(Tensor& param, const Tensor& grad, Tensor& buf, M* model, bool first, const SgdConfig& c) {
  const SgdCoeffs<P> k = sgd_coeffs<P>(c, first);
  P* p = param.data<P>();
  P* b = k.use_momentum ? buf.data<P>() : nullptr;
  const int64_t n = param.numel();
  switch (grad.dtype()) {
    case DType::BF16:
      sgd_kernel<P, BFloat16, M>(p, grad.data<BFloat16>(), b, model, n, k);
      break;
    case DType::F16:
      sgd_kernel<P, Half, M>(p, grad.data<Half>(), b, model, n, k);
      break;
    default:
      sgd_kernel<P, P, M>(p, grad.data<P>(), b, model, n, k);
      break;
  }
}

}  // namespace

void sgd_step_(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, bool first_step,
               const SgdConfig& config) {
  check_inputs(param, grad, momentum_buffer, config, "sgd_step_");
#ifdef MCORE_WITH_CUDA
  if (param.device().is_cuda())
    return cuda::sgd_step_(param, grad, momentum_buffer, first_step, config);
#endif
  if (param.dtype() == DType::F64) {
    run<double, void>(param, grad, momentum_buffer, nullptr, first_step, config);
  } else {
    run<float, void>(param, grad, momentum_buffer, nullptr, first_step, config);
  }
}

void sgd_step_with_main_(Tensor& model_param, Tensor& main_param, const Tensor& grad,
                         Tensor& momentum_buffer, bool first_step, const SgdConfig& config) {
  check_inputs(main_param, grad, momentum_buffer, config, "sgd_step_with_main_");
  check_devices({main_param, model_param}, "sgd_step_with_main_");
  MCORE_CHECK(main_param.dtype() == DType::F32)
      << "sgd_step_with_main_: main parameter must be float32, got " << main_param.dtype();
  MCORE_CHECK(model_param.numel() == main_param.numel() && model_param.is_contiguous())
      << "sgd_step_with_main_: model parameter " << shape_str(model_param.shape())
      << " must be contiguous with the numel of the main parameter "
      << shape_str(main_param.shape());
#ifdef MCORE_WITH_CUDA
  if (main_param.device().is_cuda() &&
      (model_param.dtype() == DType::BF16 || model_param.dtype() == DType::F16))
    return cuda::sgd_step_with_main_(model_param, main_param, grad, momentum_buffer, first_step,
                                     config);
#endif
  switch (model_param.dtype()) {
    case DType::BF16:
      run<float, BFloat16>(main_param, grad, momentum_buffer, model_param.data<BFloat16>(),
                           first_step, config);
      break;
    case DType::F16:
      run<float, Half>(main_param, grad, momentum_buffer, model_param.data<Half>(), first_step,
                       config);
      break;
    default:
      MCORE_FAIL() << "sgd_step_with_main_: model parameter of dtype " << model_param.dtype()
                   << " (shape " << shape_str(model_param.shape())
                   << "); expected bfloat16 or float16 (use sgd_step_ for float32 models)";
  }
}

}  // namespace mcore::ops

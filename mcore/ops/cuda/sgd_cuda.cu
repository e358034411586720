// SGD step on CUDA: one grid-stride pass, four elements per iteration with vector loads when
// aligned; sgd.cpp's arithmetic (PyTorch's fused multiply-adds, nothing else contracted).
#include <type_traits>

#include "mcore/ops/cuda/launch_util.cuh"
#include "mcore/ops/cuda/optim_pack.cuh"
#include "mcore/ops/cuda/scalar_cast.cuh"
#include "mcore/ops/cuda/sgd_cuda.h"
#include "mcore/ops/optimizer_coeffs.h"

namespace mcore::ops::cuda {

namespace {

// d = fma(p, wd, g); buf = first ? d : fma(d, 1-dampening, buf*momentum);
// d = nesterov ? fma(buf, momentum, d) : buf; p = fma(d, -lr, p).
template <class P>
__device__ __forceinline__ P sgd_update(P p, P d, P* buf, const SgdCoeffs<P>& k) {
  if (k.use_wd) d = fma_rn(p, k.weight_decay, d);
  if (k.use_momentum) {
    const P b = k.first ? d : fma_rn(d, k.one_minus_dampening, mul_rn(*buf, k.momentum));
    *buf = b;
    d = k.nesterov ? fma_rn(b, k.momentum, d) : b;
  }
  return fma_rn(d, k.neg_lr, p);
}

template <class P, class G, class M>
__global__ void sgd_kernel(P* __restrict__ p, const G* __restrict__ g, P* __restrict__ buf,
                           M* __restrict__ model, int64_t n, SgdCoeffs<P> k, bool vec) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t start = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    for (int64_t q = tid; q < n4; q += stride) {
      Pack4<P> pp = reinterpret_cast<const Pack4<P>*>(p)[q];
      const Pack4<G> gg = reinterpret_cast<const Pack4<G>*>(g)[q];
      Pack4<P> bb;
      // The buffer is neither read on the first step nor touched without momentum.
      if (k.use_momentum && !k.first) bb = reinterpret_cast<const Pack4<P>*>(buf)[q];
#pragma unroll
      for (int e = 0; e < 4; ++e) pp.v[e] = sgd_update(pp.v[e], grad_as<P>(gg.v[e]), &bb.v[e], k);
      reinterpret_cast<Pack4<P>*>(p)[q] = pp;
      if (k.use_momentum) reinterpret_cast<Pack4<P>*>(buf)[q] = bb;
      if constexpr (!std::is_void_v<M>) {
        Pack4<M> out;
#pragma unroll
        for (int e = 0; e < 4; ++e) out.v[e] = from_float<M>(static_cast<float>(pp.v[e]));
        reinterpret_cast<Pack4<M>*>(model)[q] = out;
      }
    }
    start = n4 * 4;
  }
  for (int64_t i = start + tid; i < n; i += stride) {
    P b = k.use_momentum && !k.first ? buf[i] : P(0);
    const P out = sgd_update(p[i], grad_as<P>(g[i]), &b, k);
    p[i] = out;
    if (k.use_momentum) buf[i] = b;
    if constexpr (!std::is_void_v<M>) model[i] = from_float<M>(static_cast<float>(out));
  }
}

template <class P, class G, class M>
void launch(Tensor& param, const Tensor& grad, Tensor& buf, M* model, bool first,
            const SgdConfig& c) {
  const int64_t n = param.numel();
  if (n == 0) return;
  const SgdCoeffs<P> k = sgd_coeffs<P>(c, first);
  P* p = dev_ptr<P>(param);
  const G* g = dev_ptr<const G>(grad);
  P* b = k.use_momentum ? dev_ptr<P>(buf) : nullptr;
  bool vec = aligned4(p) && aligned4(g) && aligned4(b);
  if constexpr (!std::is_void_v<M>) vec = vec && aligned4(model);
  constexpr int kThreads = 256;
  sgd_kernel<P, G, M>
      <<<grid_for(ceil_div(n, 4), kThreads), kThreads, 0, mcore::cuda::current_stream()>>>(
          p, g, b, model, n, k, vec);
  MCORE_CUDA_CHECK_LAUNCH("sgd_kernel");
}

template <class P, class M>
void run(Tensor& param, const Tensor& grad, Tensor& buf, M* model, bool first, const SgdConfig& c) {
  switch (grad.dtype()) {
    case DType::BF16:
      return launch<P, __nv_bfloat16, M>(param, grad, buf, model, first, c);
    case DType::F16:
      return launch<P, __half, M>(param, grad, buf, model, first, c);
    default:
      return launch<P, P, M>(param, grad, buf, model, first, c);
  }
}

}  // namespace

void sgd_step_(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, bool first_step,
               const SgdConfig& config) {
  check_same_cuda({param, grad}, "sgd_step_");
  if (config.momentum != 0.0) check_same_cuda({param, momentum_buffer}, "sgd_step_");
  DeviceGuard guard(param.device());
  if (param.dtype() == DType::F64) {
    run<double, void>(param, grad, momentum_buffer, nullptr, first_step, config);
  } else {
    run<float, void>(param, grad, momentum_buffer, nullptr, first_step, config);
  }
}

void sgd_step_with_main_(Tensor& model_param, Tensor& main_param, const Tensor& grad,
                         Tensor& momentum_buffer, bool first_step, const SgdConfig& config) {
  check_same_cuda({main_param, model_param, grad}, "sgd_step_with_main_");
  if (config.momentum != 0.0) check_same_cuda({main_param, momentum_buffer}, "sgd_step_with_main_");
  DeviceGuard guard(main_param.device());
  if (model_param.dtype() == DType::BF16) {
    run<float, __nv_bfloat16>(main_param, grad, momentum_buffer,
                              dev_ptr<__nv_bfloat16>(model_param), first_step, config);
  } else {
    run<float, __half>(main_param, grad, momentum_buffer, dev_ptr<__half>(model_param), first_step,
                       config);
  }
}

}  // namespace mcore::ops::cuda

// AdamW step on CUDA: one grid-stride pass over param, grad, exp_avg, exp_avg_sq (and the
// bf16/fp16 model copy), four elements per thread iteration with vector loads when every operand
// is aligned. The per-element arithmetic is adam.cpp's, rounding for rounding.
#include <cmath>
#include <type_traits>

#include "mcore/ops/cuda/adam_cuda.h"
#include "mcore/ops/cuda/launch_util.cuh"
#include "mcore/ops/cuda/optim_pack.cuh"
#include "mcore/ops/cuda/scalar_cast.cuh"
#include "mcore/ops/optimizer_coeffs.h"

namespace mcore::ops::cuda {

namespace {

// PyTorch's AdamW sequence: m = fma(g, 1-b1, m*b1); v = v*b2 + ((1-b2)*g)*g;
// denom = sqrt(v)/sqrt(bc2) + eps; p = p*decay + (-lr/bc1) * (m/denom).
template <class P>
__device__ __forceinline__ P adam_update(P p, P g, P& m, P& v, const AdamCoeffs<P>& k) {
  m = fma_rn(g, k.one_minus_beta1, mul_rn(m, k.beta1));
  v = add_rn(mul_rn(v, k.beta2), mul_rn(mul_rn(k.one_minus_beta2, g), g));
  const P denom = add_rn(div_rn(sqrt_rn(v), k.bc2_sqrt), k.eps);
  return add_rn(mul_rn(p, k.decay), mul_rn(k.neg_step_size, div_rn(m, denom)));
}

// M: model-parameter type written from the updated float32 value (void: none).
template <class P, class G, class M>
__global__ void adam_kernel(P* __restrict__ p, const G* __restrict__ g, P* __restrict__ m,
                            P* __restrict__ v, M* __restrict__ model, int64_t n, AdamCoeffs<P> k,
                            bool vec) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t start = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    for (int64_t q = tid; q < n4; q += stride) {
      Pack4<P> pp = reinterpret_cast<const Pack4<P>*>(p)[q];
      const Pack4<G> gg = reinterpret_cast<const Pack4<G>*>(g)[q];
      Pack4<P> mm = reinterpret_cast<const Pack4<P>*>(m)[q];
      Pack4<P> vv = reinterpret_cast<const Pack4<P>*>(v)[q];
#pragma unroll
      for (int e = 0; e < 4; ++e)
        pp.v[e] = adam_update(pp.v[e], grad_as<P>(gg.v[e]), mm.v[e], vv.v[e], k);
      reinterpret_cast<Pack4<P>*>(p)[q] = pp;
      reinterpret_cast<Pack4<P>*>(m)[q] = mm;
      reinterpret_cast<Pack4<P>*>(v)[q] = vv;
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
    P mi = m[i], vi = v[i];
    const P pi = adam_update(p[i], grad_as<P>(g[i]), mi, vi, k);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
    if constexpr (!std::is_void_v<M>) model[i] = from_float<M>(static_cast<float>(pi));
  }
}

template <class P, class G, class M>
void launch(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, M* model,
            int64_t step, const AdamConfig& config) {
  const int64_t n = param.numel();
  if (n == 0) return;
  P* p = dev_ptr<P>(param);
  const G* g = dev_ptr<const G>(grad);
  P* m = dev_ptr<P>(exp_avg);
  P* v = dev_ptr<P>(exp_avg_sq);
  bool vec = aligned4(p) && aligned4(g) && aligned4(m) && aligned4(v);
  if constexpr (!std::is_void_v<M>) vec = vec && aligned4(model);
  constexpr int kThreads = 256;
  adam_kernel<P, G, M>
      <<<grid_for(ceil_div(n, 4), kThreads), kThreads, 0, mcore::cuda::current_stream()>>>(
          p, g, m, v, model, n, adam_coeffs<P>(config, step), vec);
  MCORE_CUDA_CHECK_LAUNCH("adam_kernel");
}

template <class P, class M>
void run(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, M* model,
         int64_t step, const AdamConfig& config) {
  switch (grad.dtype()) {
    case DType::BF16:
      return launch<P, __nv_bfloat16, M>(param, grad, exp_avg, exp_avg_sq, model, step, config);
    case DType::F16:
      return launch<P, __half, M>(param, grad, exp_avg, exp_avg_sq, model, step, config);
    default:
      return launch<P, P, M>(param, grad, exp_avg, exp_avg_sq, model, step, config);
  }
}

}  // namespace

void adam_step_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
                int64_t step, const AdamConfig& config) {
  check_same_cuda({param, grad, exp_avg, exp_avg_sq}, "adam_step_");
  DeviceGuard guard(param.device());
  if (param.dtype() == DType::F64) {
    run<double, void>(param, grad, exp_avg, exp_avg_sq, nullptr, step, config);
  } else {
    run<float, void>(param, grad, exp_avg, exp_avg_sq, nullptr, step, config);
  }
}

void adam_step_with_main_(Tensor& model_param, Tensor& main_param, const Tensor& grad,
                          Tensor& exp_avg, Tensor& exp_avg_sq, int64_t step,
                          const AdamConfig& config) {
  check_same_cuda({main_param, model_param, grad, exp_avg, exp_avg_sq}, "adam_step_with_main_");
  DeviceGuard guard(main_param.device());
  if (model_param.dtype() == DType::BF16) {
    run<float, __nv_bfloat16>(main_param, grad, exp_avg, exp_avg_sq,
                              dev_ptr<__nv_bfloat16>(model_param), step, config);
  } else {
    run<float, __half>(main_param, grad, exp_avg, exp_avg_sq, dev_ptr<__half>(model_param), step,
                       config);
  }
}

}  // namespace mcore::ops::cuda

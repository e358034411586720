// The per-step scalars of the Adam and SGD updates, shared by the CPU kernels (adam.cpp,
// sgd.cpp) and the CUDA ones (cuda/adam_cuda.cu, cuda/sgd_cuda.cu): computed in double as
// PyTorch does, then rounded once to the parameter's type, so both devices start every update
// from the same bits.
#pragma once

#include <cmath>
#include <cstdint>

#include "mcore/ops/adam.h"
#include "mcore/ops/sgd.h"

namespace mcore::ops {

template <class P>
struct AdamCoeffs {
  P decay, beta1, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps;
};

template <class P>
AdamCoeffs<P> adam_coeffs(const AdamConfig& c, int64_t step) {
  const double t = static_cast<double>(step);
  const double bc1 = c.bias_correction ? 1.0 - std::pow(c.beta1, t) : 1.0;
  const double bc2 = c.bias_correction ? 1.0 - std::pow(c.beta2, t) : 1.0;
  return {static_cast<P>(1.0 - c.lr * c.weight_decay),
          static_cast<P>(c.beta1),
          static_cast<P>(1.0 - c.beta1),
          static_cast<P>(c.beta2),
          static_cast<P>(1.0 - c.beta2),
          static_cast<P>(-(c.lr / bc1)),
          static_cast<P>(std::sqrt(bc2)),
          static_cast<P>(c.eps)};
}

template <class P>
struct SgdCoeffs {
  P neg_lr, momentum, one_minus_dampening, weight_decay;
  bool use_momentum, use_wd, nesterov, first;
};

template <class P>
SgdCoeffs<P> sgd_coeffs(const SgdConfig& c, bool first) {
  return {static_cast<P>(-c.lr),
          static_cast<P>(c.momentum),
          static_cast<P>(1.0 - c.dampening),
          static_cast<P>(c.weight_decay),
          c.momentum != 0.0,
          c.weight_decay != 0.0,
          c.nesterov,
          first};
}

}  // namespace mcore::ops

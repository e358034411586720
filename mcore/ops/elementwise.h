// Elementwise arithmetic with NumPy/PyTorch broadcasting (a bias [N] against [..., N], a
// per-row scale [M, 1], ...). Inputs share one dtype; float32/float64 compute natively,
// bf16/fp16 compute in float32 and round once on store. These are raw kernels: no autograd
// (the differentiable forms live in mcore/nn/functional.h).
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

Shape broadcast_shapes(const Shape& a, const Shape& b);

Tensor add(const Tensor& a, const Tensor& b, double alpha = 1.0);  // a + alpha * b
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, double alpha);       // alpha * x
Tensor add_scalar(const Tensor& x, double value);  // x + value
Tensor neg(const Tensor& x);

// In place on `a` (which must have the broadcast shape): a += alpha * b, a *= b, a *= alpha.
Tensor& add_(Tensor& a, const Tensor& b, double alpha = 1.0);
Tensor& mul_(Tensor& a, const Tensor& b);
Tensor& scale_(Tensor& a, double alpha);
// y += alpha * x (BLAS axpy; same shape).
Tensor& axpy_(Tensor& y, double alpha, const Tensor& x);

// Sums `t` over the dimensions that broadcasting expanded, giving a tensor of `shape`
// (the backward of broadcasting).
Tensor sum_to(const Tensor& t, const Shape& shape);

}  // namespace mcore::ops

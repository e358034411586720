// Differentiable views, arithmetic with broadcasting, and whole-tensor reductions.
#pragma once

#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::F {

Tensor view(const Tensor& x, const Shape& shape);
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor contiguous(const Tensor& x);
// Concatenation and its inverse along `dim`.
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);
// dtype conversion; gradients flow back converted to the input's dtype.
Tensor to(const Tensor& x, DType dtype);

Tensor add(const Tensor& a, const Tensor& b);  // broadcasting
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, double alpha);
// y + alpha * x (BLAS axpy, as torch.add(y, x, alpha=alpha)), broadcasting like add: x may be a
// bias against y or the other way round. Gradients: dy = sum_to(g), dx = alpha * sum_to(g).
Tensor axpy(double alpha, const Tensor& x, const Tensor& y);
Tensor neg(const Tensor& x);

Tensor sum(const Tensor& x);   // all elements -> 0-d
Tensor mean(const Tensor& x);  // all elements -> 0-d

}  // namespace mcore::F

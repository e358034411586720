// CUDA kernels of the broadcast arithmetic in mcore/ops/elementwise.h. Same semantics as the
// CPU kernels: float32/float64 compute natively, bf16/fp16 compute in float32 and round once on
// store (round to nearest even). Contiguous same-shape operands take a 16-byte vectorized path;
// anything else (broadcasts, strided views) a strided path over the collapsed shape.
//
// Plain C++ header (no CUDA includes): elementwise.cpp calls these, after validating shapes and
// dtypes, when the tensors live on a GPU.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops::cuda {

enum class BinaryOp { kAdd, kSub, kMul, kDiv };  // kAdd: a + alpha * b
enum class UnaryOp { kScale, kAddScalar };        // alpha * x; x + alpha

// out = op(a, b) over out's shape (the broadcast shape of a and b); out may alias a.
void binary(Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op, double alpha);
// out = op(x) (same shape); out may alias x.
void unary(Tensor& out, const Tensor& x, UnaryOp op, double alpha);

}  // namespace mcore::ops::cuda

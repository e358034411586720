// Matrix products: 2-D and batched, optional transposes, fp32 accumulation. float32/float64
// call BLAS directly (transposed views are passed as transposes, not copied); bf16/fp16 inputs
// are widened to float32, multiplied, and the result rounded once; fp8 inputs carry per-tensor
// scales (value = stored * scale_inv, as Transformer Engine's scale_inv) and are dequantized
// on the fly.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

// op(a) @ op(b). a: [..., M, K] (or [..., K, M] if trans_a), b: [..., K, N] (or [..., N, K]).
// Batch dims must match, or b may be 2-D and shared by the whole batch.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

// c = alpha * op(a) @ op(b) + beta * c, in place (c contiguous, float32/float64).
void matmul_out(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a = false,
                bool trans_b = false, double alpha = 1.0, double beta = 0.0);

// FP8 GEMM: a, b in float8_e4m3fn / float8_e5m2 with their scale_inv (dequantization
// multipliers); returns `out_dtype` (float32 by default).
Tensor matmul_fp8(const Tensor& a, double a_scale_inv, const Tensor& b, double b_scale_inv,
                  bool trans_a = false, bool trans_b = false, DType out_dtype = DType::F32);

}  // namespace mcore::ops

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

// act(op(a) @ op(b) + bias): the Linear layer's GEMM with its epilogue. On GPUs cuBLASLt fuses
// bias and GELU into the GEMM (one rounding of the result); on the CPU (and where cuBLASLt has
// no fused kernel) it is a matmul, a broadcast add and a GELU. bias: [N] of the operands'
// dtype, or undefined for none. float32/float64/bf16/fp16.
enum class MatmulActivation { kNone, kGeluTanh };  // kGeluTanh: gelu(approximate='tanh')
Tensor matmul_bias_act(const Tensor& a, const Tensor& b, const Tensor& bias,
                       MatmulActivation act = MatmulActivation::kNone, bool trans_a = false,
                       bool trans_b = false);

}  // namespace mcore::ops

namespace mcore::cuda {

// Lets float32 GEMMs on GPUs run on TF32 tensor cores (inputs rounded to a 10-bit mantissa,
// fp32 accumulation), as torch.backends.cuda.matmul.allow_tf32. Off by default; no effect on
// the CPU or in builds without CUDA.
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace mcore::cuda

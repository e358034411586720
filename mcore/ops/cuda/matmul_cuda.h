// GEMMs of CUDA tensors through cuBLASLt (mcore/ops/matmul.h's ops, same arguments and
// semantics): float32 (TF32 tensor cores when mcore::cuda::set_allow_tf32(true)), float64,
// bf16/fp16 with float32 accumulation, FP8 (E4M3/E5M2, per-tensor scales, compute capability
// 8.9+), batched with strided layouts or a shared 2-D b, transposed views read in place, and
// bias / GELU epilogues fused into the GEMM. The workspace comes from the caching allocator and
// the heuristic's algorithm choice is cached per problem.
//
// Plain C++ header (no CUDA includes): matmul.cpp calls these, after validating shapes and
// dtypes, when the operands live on a GPU.
#pragma once

#include "mcore/ops/matmul.h"

namespace mcore::ops::cuda {

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b);
void matmul_out(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
                double alpha, double beta);
Tensor matmul_fp8(const Tensor& a, double a_scale_inv, const Tensor& b, double b_scale_inv,
                  bool trans_a, bool trans_b, DType out_dtype);
Tensor matmul_bias_act(const Tensor& a, const Tensor& b, const Tensor& bias, MatmulActivation act,
                       bool trans_a, bool trans_b);

}  // namespace mcore::ops::cuda

// FP8 casts with a per-tensor scale, as Transformer Engine's cast_to_fp8 / cast_from_fp8 do
// for FP8 GEMM inputs: quantize writes saturate(x * scale) in E4M3 or E5M2 and measures
// amax = max|x| of the unscaled input (for the delayed-scaling history); dequantize reads
// fp8 * scale_inv back into float32, bf16 or fp16 (one rounding).
#pragma once

#include "mcore/base/float_types.h"
#include "mcore/tensor/tensor.h"

namespace mcore::ops {

struct Fp8Quantized {
  Tensor data;  // F8E4M3 or F8E5M2, x's shape, contiguous
  Tensor amax;  // 0-d float32: max |x| (NaN entries ignored, as TE's fmaxf; inf counts)
};

// x: float32, bf16 or fp16 (any layout). scale: a one-element float32 tensor (it lives on the
// device with the recipe state, so no host sync is needed on CUDA). x * scale is computed in
// float32 and rounded to nearest even, clamped to +-448 (E4M3) / +-57344 (E5M2); NaN stays NaN.
Fp8Quantized fp8_quantize(const Tensor& x, const Tensor& scale, Fp8Format format);
Fp8Quantized fp8_quantize(const Tensor& x, float scale, Fp8Format format);

// data: F8E4M3 or F8E5M2. out_dtype: float32, bf16 or fp16. scale_inv: one-element float32.
Tensor fp8_dequantize(const Tensor& data, const Tensor& scale_inv, DType out_dtype = DType::F32);
Tensor fp8_dequantize(const Tensor& data, float scale_inv, DType out_dtype = DType::F32);

}  // namespace mcore::ops

// CUDA kernels of the FP8 casts in mcore/ops/fp8.h, bit-identical to the CPU: the same
// round-to-nearest-even with saturation, the same canonical NaN codes, amax = max|x| with NaN
// ignored. A scale given as a tensor on the device is read by the kernel (no host sync); the
// amax result stays on the device as a 0-d float32 tensor. Plain C++ header: fp8.cpp calls these
// when x (or data) is on a CUDA device.
#pragma once

#include "mcore/ops/fp8.h"

namespace mcore::ops::cuda {

// scale: one-element float32, on x's device or on the CPU.
Fp8Quantized fp8_quantize(const Tensor& x, const Tensor& scale, Fp8Format format);
Fp8Quantized fp8_quantize(const Tensor& x, float scale, Fp8Format format);

Tensor fp8_dequantize(const Tensor& data, const Tensor& scale_inv, DType out_dtype);
Tensor fp8_dequantize(const Tensor& data, float scale_inv, DType out_dtype);

}  // namespace mcore::ops::cuda

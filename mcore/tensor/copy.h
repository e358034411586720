// Element copies between tensors of any dtype and layout (the engine behind contiguous(), clone(),
// to(dtype) and copy_()), fills, and the device-to-device copy hook the CUDA backend installs.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore {

// dst[i] = convert(src[i]); shapes must match. Narrow float targets round to nearest even;
// `saturate` clamps fp8 overflow to the largest finite value instead of NaN/Inf.
void copy_tensor(Tensor& dst, const Tensor& src, bool saturate);
void fill_tensor(Tensor& dst, double value);

// Copies contiguous bytes between devices. CPU<->CPU is memcpy; other pairs go through the hook
// the device backend registers.
void copy_between_devices(Tensor& dst, const Tensor& src);
using DeviceCopyFn = void (*)(void* dst, Device dst_device, const void* src, Device src_device,
                              size_t nbytes);
void set_device_copy(DeviceCopyFn fn);

}  // namespace mcore

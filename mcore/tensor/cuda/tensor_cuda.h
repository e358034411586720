// The tensor layer's CUDA entry points, called from the plain tensor sources (allocator.cpp,
// copy.cpp) under #ifdef MCORE_WITH_CUDA. Plain C++ (no CUDA includes), so those files compile
// with any compiler; the definitions live in this folder's .cpp/.cu files.
#pragma once

#include "mcore/tensor/tensor.h"

namespace mcore::cuda {

// Installs the CUDA caching allocator and the device copy hook (idempotent). Runs from a static
// initializer when libmcore loads and again, harmlessly, on the first CUDA allocation (a static
// libmcore may drop the initializer's object file).
void register_backend();

// copy_tensor / fill_tensor (mcore/tensor/copy.h) when either tensor lives on a GPU: any
// dtypes, any strides, host<->device, device<->device (also across devices).
void copy_tensor(Tensor& dst, const Tensor& src, bool saturate);
void fill_tensor(Tensor& dst, double value);

// Contiguous byte copies between a host and a device or two devices, on the current stream of
// the device involved. Device-to-host copies wait for their data; host-to-device copies from
// pinned memory stay asynchronous.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

}  // namespace mcore::cuda

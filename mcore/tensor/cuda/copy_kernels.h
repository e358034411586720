// Internal to the CUDA tensor backend: the copy, conversion and fill kernels (copy_kernels.cu)
// that copy_cuda.cpp drives. Operands are raw pointers on the current device with element
// strides over a collapsed iteration space of at most kMaxDims dimensions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mcore/base/dtype.h"
#include "mcore/tensor/cuda/cuda_runtime.h"

namespace mcore::cuda::detail {

constexpr int kMaxDims = 16;

struct StridedLayout {
  int nd = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t dst_strides[kMaxDims] = {};
  int64_t src_strides[kMaxDims] = {};
};

// dst[i] = src[i] element by element (same dtype, element size 1, 2, 4, 8 or 16) with strides.
void launch_strided_copy(void* dst, const void* src, size_t elem_size, const StridedLayout& layout,
                         int64_t numel, cudaStream_t stream);

// Contiguous dst[i] = convert(src[i]) between any two dtypes (copy.cpp's rounding rules).
void launch_convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t numel,
                    bool saturate, cudaStream_t stream);

// Every element of dst (layout.dst_strides) := the `elem_size`-byte pattern in `bits`.
void launch_fill(void* dst, size_t elem_size, uint64_t bits, const StridedLayout& layout,
                 int64_t numel, cudaStream_t stream);

}  // namespace mcore::cuda::detail

// NumPy .npy files (format versions 1-3, C order, little-endian). Reference tests exchange
// arrays with Python through them, and Megatron's dataset index caches are .npy files.
// bfloat16 and fp8 have no NumPy type: they are written as uint16 / uint8 bit patterns.
#pragma once

#include <string>

#include "mcore/tensor/tensor.h"

namespace mcore {

Tensor load_npy(const std::string& path);
void save_npy(const std::string& path, const Tensor& tensor);

}  // namespace mcore

// Ops run where their tensors live. Until an op has a CUDA kernel, it names itself and the
// device in a clear error instead of reading device memory from the host.
#pragma once

#include <initializer_list>

#include "mcore/tensor/tensor.h"

namespace mcore::ops {

inline void check_cpu(std::initializer_list<Tensor> tensors, const char* op) {
  for (const Tensor& t : tensors) {
    MCORE_CHECK(t.defined()) << op << ": undefined tensor argument";
    MCORE_CHECK(t.device().is_cpu())
        << op << ": tensor on " << t.device() << " but this op has only a CPU kernel in this build";
  }
}

}  // namespace mcore::ops

// Internal to the CUDA tensor backend: lets host-to-device copies know whether their source is
// pinned (then they stay asynchronous and the block's reuse waits for them).
#pragma once

#include "mcore/tensor/cuda/cuda_runtime.h"

namespace mcore::cuda {

// If `host_ptr` lies in a pin_memory() block, records an event on `stream` that the block's
// reuse waits for and returns true; false for pageable memory.
bool record_pinned_use(const void* host_ptr, cudaStream_t stream);

}  // namespace mcore::cuda

// Which GPUs this process sees and uses, for code that must build with or without the CUDA
// backend (the trainer's --device flag, the device a process group's tensors live on). Plain
// C++: the CUDA build defines these in mcore/tensor/cuda/cuda_device.cpp on top of
// mcore/tensor/cuda/cuda_runtime.h; without it there are no GPUs and selecting one throws.
#pragma once

#include "mcore/tensor/device.h"

namespace mcore {

// Whether this build has the CUDA backend.
bool cuda_built();
// Visible CUDA devices; 0 without the backend, a driver or a GPU (never throws).
int cuda_device_count();
// The calling thread's current GPU, as a Device (cuda:N); throws without a GPU.
Device current_cuda_device();
// Makes cuda:`index` current for the calling thread; throws without the backend or that GPU.
void set_cuda_device(int index);
// Blocks until the current GPU's current stream is idle (no-op without the backend).
void cuda_synchronize();

}  // namespace mcore

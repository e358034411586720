// GPU memory as the caching allocator sees it (torch.cuda.memory_allocated / memory_reserved /
// max_memory_allocated / empty_cache), and page-locked host memory for fast, asynchronous
// host-to-device copies (the data loader's pin_memory). Plain C++: usable from code built with
// or without the CUDA backend; without it every function throws "built without CUDA".
#pragma once

#include <cstdint>

#include "mcore/tensor/tensor.h"

namespace mcore {

struct CudaMemoryStats {
  int64_t allocated_bytes = 0;       // in blocks handed out (rounded block sizes)
  int64_t requested_bytes = 0;       // as requested by callers (before rounding)
  int64_t reserved_bytes = 0;        // held from cudaMalloc (handed out + cached)
  int64_t peak_allocated_bytes = 0;  // high-water marks since the last reset
  int64_t peak_reserved_bytes = 0;
  int64_t num_allocs = 0;        // allocate() calls served
  int64_t num_cuda_mallocs = 0;  // cudaMalloc calls (segments created)
  int64_t num_cuda_frees = 0;    // segments returned by empty_cache or OOM recovery
  int64_t num_ooms = 0;          // allocations that failed even after freeing the cache
};

// Statistics of CUDA device `device` (0 when it was never used).
CudaMemoryStats cuda_memory_stats(int device = 0);
// Returns every cached, unused segment of every device to the driver (cudaFree).
void cuda_empty_cache();
// Peak := current, for `device` (-1: every device).
void reset_peak_cuda_memory_stats(int device = -1);

// Marks t's memory as used by work on `cuda_stream` (a cudaStream_t), a stream other than the
// one it was allocated on: when t is freed, its block is reused only after the work queued on
// that stream by then has finished (torch.Tensor.record_stream).
void record_stream(const Tensor& t, void* cuda_stream);

// A CPU tensor with t's values in page-locked (cudaHostAlloc'ed) memory; copies from it to a
// GPU are asynchronous on the current stream. The memory is cached and reused only after every
// copy that read it has finished.
Tensor pin_memory(const Tensor& t);
// Whether t's storage is page-locked memory from pin_memory().
bool is_pinned(const Tensor& t);

}  // namespace mcore

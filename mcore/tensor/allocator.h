// Memory for tensor storage. The CPU allocator hands out 64-byte aligned blocks (one cache line,
// one AVX-512 vector). Other devices plug in their allocator (the CUDA caching allocator) through
// set_allocator(), so Tensor never needs to know about device APIs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "mcore/tensor/device.h"

namespace mcore {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes, Device device) = 0;
  virtual void deallocate(void* ptr, size_t nbytes, Device device) = 0;
};

Allocator* get_allocator(DeviceType type);

// Bytes the built-in CPU allocator has handed out and not taken back (as requested, before
// alignment rounding), and the high-water mark since the last reset: tests and benchmarks
// measure activation memory with them (torch.cuda.memory_allocated / max_memory_allocated).
struct CpuMemoryStats {
  int64_t allocated_bytes = 0;
  int64_t peak_allocated_bytes = 0;
};
CpuMemoryStats cpu_memory_stats();
void reset_peak_cpu_memory_stats();  // peak := current  // errors clearly when that backend is
                                     // absent
void set_allocator(DeviceType type, Allocator* allocator);

// A block of device memory, freed by its allocator when the last reference goes away.
class StorageImpl {
 public:
  StorageImpl(size_t nbytes, Device device);
  // Wrap memory owned elsewhere (e.g. an mmap'ed file): `deleter` runs on destruction.
  StorageImpl(void* data, size_t nbytes, Device device, void (*deleter)(void*, void*), void* ctx);
  ~StorageImpl();
  StorageImpl(const StorageImpl&) = delete;
  StorageImpl& operator=(const StorageImpl&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
  void (*deleter_)(void*, void*) = nullptr;
  void* deleter_ctx_ = nullptr;
};

using Storage = std::shared_ptr<StorageImpl>;

}  // namespace mcore

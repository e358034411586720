#include "mcore/tensor/allocator.h"

#include <atomic>
#include <cstdlib>

#include "mcore/base/error.h"

namespace mcore {

namespace {

std::atomic<int64_t> g_cpu_allocated{0};
std::atomic<int64_t> g_cpu_peak{0};

void note_allocated(int64_t delta) {
  const int64_t now = g_cpu_allocated.fetch_add(delta, std::memory_order_relaxed) + delta;
  int64_t peak = g_cpu_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_cpu_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes, Device) override {
    if (nbytes == 0) return nullptr;
    size_t rounded = (nbytes + 63) / 64 * 64;  // aligned_alloc needs a multiple of the alignment
    void* p = std::aligned_alloc(64, rounded);
    MCORE_CHECK(p) << "out of CPU memory allocating " << nbytes << " bytes";
    note_allocated(static_cast<int64_t>(nbytes));
    return p;
  }
  void deallocate(void* ptr, size_t nbytes, Device) override {
    if (ptr) note_allocated(-static_cast<int64_t>(nbytes));
    std::free(ptr);
  }
};

Allocator*& slot(DeviceType type) {
  static CpuAllocator cpu;
  static Allocator* slots[2] = {&cpu, nullptr};
  return slots[static_cast<int>(type)];
}

}  // namespace

Allocator* get_allocator(DeviceType type) {
  Allocator* a = slot(type);
  MCORE_CHECK(a) << "no allocator for device type " << static_cast<int>(type)
                 << ": this build of mcore has no CUDA backend or no GPU was initialized "
                    "(rebuild with the CUDA toolkit present, or use Device::cpu())";
  return a;
}

void set_allocator(DeviceType type, Allocator* allocator) {
  slot(type) = allocator;
}

CpuMemoryStats cpu_memory_stats() {
  return {g_cpu_allocated.load(std::memory_order_relaxed),
          g_cpu_peak.load(std::memory_order_relaxed)};
}

void reset_peak_cpu_memory_stats() {
  g_cpu_peak.store(g_cpu_allocated.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

StorageImpl::StorageImpl(size_t nbytes, Device device)
    : nbytes_(nbytes), device_(device), allocator_(get_allocator(device.type)) {
  data_ = allocator_->allocate(nbytes, device);
}

StorageImpl::StorageImpl(void* data, size_t nbytes, Device device, void (*deleter)(void*, void*),
                         void* ctx)
    : data_(data), nbytes_(nbytes), device_(device), deleter_(deleter), deleter_ctx_(ctx) {}

StorageImpl::~StorageImpl() {
  if (deleter_) {
    deleter_(data_, deleter_ctx_);
  } else if (allocator_ && data_) {
    allocator_->deallocate(data_, nbytes_, device_);
  }
}

}  // namespace mcore

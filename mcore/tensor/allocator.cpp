#include "mcore/tensor/allocator.h"

#include <sys/mman.h>
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "mcore/base/error.h"
#ifdef MCORE_WITH_CUDA
#include "mcore/tensor/cuda/tensor_cuda.h"
#endif

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

// Large blocks are cached by exact (64-byte rounded) size instead of going back to glibc: blocks
// above glibc's mmap threshold (32 MiB at most, e.g. the 100 MB logits of a GPT-2 step) are
// otherwise unmapped on free and mapped again on the next allocation, and the page faults of
// touching fresh pages (zeroed by the kernel) measured ~10% of a training step. A training loop
// allocates the same shapes every step, so exact-size reuse hits almost always. The cache is
// bounded (MCORE_CPU_CACHE_MB, default 4096; 0 disables it); past the bound blocks are freed.
class CpuAllocator final : public Allocator {
 public:
  CpuAllocator() {
    const char* env = std::getenv("MCORE_CPU_CACHE_MB");
    if (env) limit_ = static_cast<size_t>(std::max(0L, std::atol(env))) << 20;
  }
  void* allocate(size_t nbytes, Device) override {
    if (nbytes == 0) return nullptr;
    size_t rounded = (nbytes + 63) / 64 * 64;  // aligned_alloc needs a multiple of the alignment
    void* p = nullptr;
    if (rounded >= kMinCached) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(rounded);
      if (it != free_.end() && !it->second.empty()) {
        p = it->second.back();
        it->second.pop_back();
        cached_ -= rounded;
      }
    }
    if (!p) {
      static const bool thp = std::getenv("MCORE_NO_THP") == nullptr;
      if (thp && rounded >= kHugeMin) {
        // Large tensors on transparent huge pages where the kernel allows them on request
        // (THP "madvise" mode, Debian's default): the GEMM reads 8-16 rows of a weight or
        // activation at once, each in its own 4 KB page, and TLB misses then stall it. Measured
        // on the GPT-2-small step: 1282 ms mean with, 1352 without (3 alternating runs each).
        // MCORE_NO_THP=1 keeps 4 KB pages.
        const size_t huge_bytes = (rounded + kHuge - 1) / kHuge * kHuge;
        p = std::aligned_alloc(kHuge, huge_bytes);
        if (p) madvise(p, huge_bytes, MADV_HUGEPAGE);
      } else {
        p = std::aligned_alloc(64, rounded);
      }
    }
    MCORE_CHECK(p) << "out of CPU memory allocating " << nbytes << " bytes";
    note_allocated(static_cast<int64_t>(nbytes));
    return p;
  }
  void deallocate(void* ptr, size_t nbytes, Device) override {
    if (!ptr) return;
    note_allocated(-static_cast<int64_t>(nbytes));
    const size_t rounded = (nbytes + 63) / 64 * 64;
    if (rounded >= kMinCached) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_ + rounded <= limit_) {
        free_[rounded].push_back(ptr);
        cached_ += rounded;
        return;
      }
    }
    std::free(ptr);
  }

 private:
  // glibc serves smaller blocks from its heap; from 128 KiB (its initial mmap threshold) up it
  // may map and unmap them per call.
  static constexpr size_t kMinCached = size_t(128) << 10;
  static constexpr size_t kHuge = size_t(2) << 20;
  static constexpr size_t kHugeMin = size_t(4) << 20;
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
  size_t limit_ = size_t(4096) << 20;
};

Allocator*& slot(DeviceType type) {
  // Never destroyed: storages held by other static objects may be freed after this function's
  // statics would be, and the cache's free lists must outlive them.
  static CpuAllocator* cpu = new CpuAllocator;
  static Allocator* slots[2] = {cpu, nullptr};
  return slots[static_cast<int>(type)];
}

}  // namespace

Allocator* get_allocator(DeviceType type) {
  Allocator* a = slot(type);
#ifdef MCORE_WITH_CUDA
  // A static libmcore may have dropped the object whose initializer registers the backend.
  if (!a && type == DeviceType::CUDA) {
    cuda::register_backend();
    a = slot(type);
  }
#endif
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

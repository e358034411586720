// Page-locked host memory (cudaHostAlloc) for pin_memory(). Copies from it to the GPU are truly
// asynchronous, so a block must not be reused while a copy may still read it: every copy
// records an event on its stream (record_pinned_use), and a freed block returns to the cache
// only for reuse once all its events have completed. Blocks are power-of-two sized so a data
// loader's recurring batch shapes hit the cache; cudaHostAlloc is slow (it pins pages).
#include "mcore/tensor/cuda/pinned_memory.h"

#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "mcore/tensor/cuda_memory.h"

namespace mcore::cuda {

namespace {

struct PinnedBlock {
  void* ptr = nullptr;
  size_t size = 0;
  bool in_use = false;
  std::vector<cudaEvent_t> events;  // copies that may still read the block
};

class PinnedHostCache {
 public:
  void* allocate(size_t nbytes) {
    size_t size = 4096;
    while (size < nbytes) size <<= 1;
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [start, b] : blocks_) {
      if (b.in_use || b.size != size || !events_done(b)) continue;
      b.in_use = true;
      return b.ptr;
    }
    void* p = nullptr;
    MCORE_CUDA_CHECK(cudaHostAlloc(&p, size, cudaHostAllocDefault));
    PinnedBlock& b = blocks_[reinterpret_cast<uintptr_t>(p)];
    b.ptr = p;
    b.size = size;
    b.in_use = true;
    return p;
  }

  void release(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blocks_.find(reinterpret_cast<uintptr_t>(p));
    if (it != blocks_.end()) it->second.in_use = false;
  }

  // The block containing `p` (tensors may view into the middle of one), or nullptr.
  PinnedBlock* find(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    auto it = blocks_.upper_bound(a);
    if (it == blocks_.begin()) return nullptr;
    --it;
    return a < it->first + it->second.size ? &it->second : nullptr;
  }

  bool record_use(const void* p, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    PinnedBlock* b = find(p);
    if (!b) return false;
    events_done(*b);  // drop finished events so the list stays short
    cudaEvent_t e;
    MCORE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    MCORE_CUDA_CHECK(cudaEventRecord(e, stream));
    b->events.push_back(e);
    return true;
  }

  bool contains(const void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    return find(p) != nullptr;
  }

 private:
  // Destroys completed events; true when none is pending.
  static bool events_done(PinnedBlock& b) {
    size_t keep = 0;
    for (cudaEvent_t e : b.events) {
      cudaError_t r = cudaEventQuery(e);
      if (r == cudaErrorNotReady) {
        b.events[keep++] = e;
      } else {
        (void)cudaGetLastError();
        (void)cudaEventDestroy(e);
      }
    }
    b.events.resize(keep);
    return keep == 0;
  }

  std::mutex mu_;
  std::map<uintptr_t, PinnedBlock> blocks_;  // by start address
};

// Never destroyed (pinned tensors may outlive static destruction order).
PinnedHostCache& cache() {
  static PinnedHostCache* c = new PinnedHostCache;
  return *c;
}

void release_pinned(void* data, void*) {
  if (data) cache().release(data);
}

}  // namespace

bool record_pinned_use(const void* host_ptr, cudaStream_t stream) {
  return cache().record_use(host_ptr, stream);
}

}  // namespace mcore::cuda

namespace mcore {

Tensor pin_memory(const Tensor& t) {
  MCORE_CHECK(t.device().is_cpu())
      << "pin_memory: tensor " << t.str() << " is not on the CPU (only host memory can be pinned)";
  MCORE_CHECK(cuda::is_available())
      << "pin_memory: no CUDA device is available (pinned memory needs the CUDA driver)";
  if (is_pinned(t) && t.is_contiguous()) return t;
  Tensor src = t.contiguous();
  const size_t nbytes = src.nbytes();
  void* p = nbytes ? cuda::cache().allocate(nbytes) : nullptr;
  Tensor out(
      std::make_shared<StorageImpl>(p, nbytes, Device::cpu(), &cuda::release_pinned, nullptr),
      t.shape(), contiguous_strides(t.shape()), 0, t.dtype());
  if (nbytes) std::memcpy(p, src.data_ptr(), nbytes);
  return out;
}

bool is_pinned(const Tensor& t) {
  if (!t.defined() || !t.device().is_cpu() || !t.data_ptr()) return false;
  return cuda::cache().contains(t.data_ptr());
}

}  // namespace mcore

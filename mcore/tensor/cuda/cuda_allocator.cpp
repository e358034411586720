// The CUDA caching allocator (the design of PyTorch's CUDACachingAllocator, reduced to what a
// training loop needs). cudaMalloc/cudaFree synchronize the device and cost tens of
// microseconds, so memory is taken from the driver in segments and never given back until
// empty_cache() or an out-of-memory retry:
// - sizes round up to 512 B; requests up to 1 MiB come from 2 MiB "small" segments, larger ones
//   from 20 MiB segments (below 10 MiB) or their own segment rounded to 2 MiB;
// - a free block larger than the request is split, and freed neighbours within a segment merge
//   again, so a segment serves any mix of sizes;
// - free lists are per (device, stream): a freed block is reused without synchronization only by
//   work on the stream that allocated it, which runs after every kernel that used it there.
//   A tensor also used on another stream is marked with record_stream(); its block then waits
//   for an event on that stream before it is reused.
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "mcore/tensor/allocator.h"
#include "mcore/tensor/copy.h"
#include "mcore/tensor/cuda/cuda_runtime.h"
#include "mcore/tensor/cuda/tensor_cuda.h"
#include "mcore/tensor/cuda_memory.h"

namespace mcore::cuda {

namespace {

constexpr size_t kMinBlockSize = 512;
constexpr size_t kSmallSize = size_t(1) << 20;
constexpr size_t kSmallBuffer = size_t(2) << 20;
constexpr size_t kLargeBuffer = size_t(20) << 20;
constexpr size_t kMinLargeAlloc = size_t(10) << 20;
constexpr size_t kRoundLarge = size_t(2) << 20;

struct Block {
  int device = 0;
  cudaStream_t stream = nullptr;
  size_t size = 0;       // bytes this block spans in its segment
  size_t requested = 0;  // bytes the caller asked for (while allocated)
  void* ptr = nullptr;
  bool allocated = false;
  bool small = false;                       // which pool
  std::vector<cudaStream_t> other_streams;  // record_stream: other streams that use the block
  Block* prev = nullptr;                    // neighbours within the segment
  Block* next = nullptr;
};

// Free blocks ordered by (stream, size, address): lower_bound finds the smallest block of the
// stream that fits (best fit).
struct BlockLess {
  bool operator()(const Block* a, const Block* b) const {
    if (a->stream != b->stream)
      return reinterpret_cast<uintptr_t>(a->stream) < reinterpret_cast<uintptr_t>(b->stream);
    if (a->size != b->size) return a->size < b->size;
    return reinterpret_cast<uintptr_t>(a->ptr) < reinterpret_cast<uintptr_t>(b->ptr);
  }
};
using FreeSet = std::set<Block*, BlockLess>;

struct DeviceState {
  FreeSet small_free;
  FreeSet large_free;
  CudaMemoryStats stats;
  FreeSet& pool(bool small) { return small ? small_free : large_free; }
};

size_t round_size(size_t n) {
  return n < kMinBlockSize ? kMinBlockSize
                           : (n + kMinBlockSize - 1) / kMinBlockSize * kMinBlockSize;
}

size_t segment_size(size_t size) {
  if (size <= kSmallSize) return kSmallBuffer;
  if (size < kMinLargeAlloc) return kLargeBuffer;
  return (size + kRoundLarge - 1) / kRoundLarge * kRoundLarge;
}

void update_peaks(CudaMemoryStats& s) {
  if (s.allocated_bytes > s.peak_allocated_bytes) s.peak_allocated_bytes = s.allocated_bytes;
  if (s.reserved_bytes > s.peak_reserved_bytes) s.peak_reserved_bytes = s.reserved_bytes;
}

std::string mib(int64_t bytes) {
  std::ostringstream os;
  os.precision(2);
  os << std::fixed << static_cast<double>(bytes) / (1 << 20) << " MiB";
  return os.str();
}

class CudaCachingAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes, Device device) override {
    if (nbytes == 0) return nullptr;
    const int dev = device.index;
    cudaStream_t stream = current_stream(dev);  // checks the index
    const size_t size = round_size(nbytes);
    const bool small = size <= kSmallSize;
    std::lock_guard<std::mutex> lock(mu_);
    process_pending(false);
    DeviceState& st = state(dev);
    FreeSet& pool = st.pool(small);
    Block key;
    key.stream = stream;
    key.size = size;
    Block* b = nullptr;
    auto it = pool.lower_bound(&key);
    if (it != pool.end() && (*it)->stream == stream) {
      b = *it;
      pool.erase(it);
    } else {
      const size_t seg = segment_size(size);
      void* p = cuda_malloc(st, dev, seg, nbytes);  // may throw: no Block exists yet
      b = new Block;
      b->device = dev;
      b->stream = stream;
      b->size = seg;
      b->small = small;
      b->ptr = p;
    }
    // Split off the tail when it is worth keeping: any 512 B in the small pool, more than a
    // small request in the large pool (smaller tails would only fragment big segments).
    const size_t rest = b->size - size;
    if ((small && rest >= kMinBlockSize) || (!small && rest > kSmallSize)) {
      Block* tail = new Block(*b);
      tail->ptr = static_cast<char*>(b->ptr) + size;
      tail->size = rest;
      tail->prev = b;
      tail->next = b->next;
      if (b->next) b->next->prev = tail;
      b->next = tail;
      b->size = size;
      pool.insert(tail);
    }
    b->allocated = true;
    b->requested = nbytes;
    active_[b->ptr] = b;
    st.stats.allocated_bytes += static_cast<int64_t>(b->size);
    st.stats.requested_bytes += static_cast<int64_t>(nbytes);
    st.stats.num_allocs++;
    update_peaks(st.stats);
    return b->ptr;
  }

  // Never throws (runs in StorageImpl's destructor). The block goes back to its stream's free
  // list, where later work on that stream is ordered after its last use; a block that other
  // streams used (record_stream) waits for events on those streams first.
  void deallocate(void* ptr, size_t, Device) override {
    if (!ptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = active_.find(ptr);
    if (it == active_.end()) return;
    Block* b = it->second;
    active_.erase(it);
    if (!b->other_streams.empty()) {
      Pending pending{b, {}};
      for (cudaStream_t s : b->other_streams) {
        cudaEvent_t e = nullptr;
        if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess ||
            cudaEventRecord(e, s) != cudaSuccess) {
          (void)cudaGetLastError();
          if (e) (void)cudaEventDestroy(e);
          (void)cudaStreamSynchronize(s);  // no event: wait here instead
          continue;
        }
        pending.events.push_back(e);
      }
      b->other_streams.clear();
      if (!pending.events.empty()) {
        pending_.push_back(std::move(pending));
        return;
      }
    }
    free_block(b);
  }

  void record_stream(void* ptr, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = active_.find(ptr);
    MCORE_CHECK(it != active_.end())
        << "record_stream: the tensor's storage was not allocated by the CUDA caching allocator";
    Block* b = it->second;
    if (stream == b->stream) return;
    for (cudaStream_t s : b->other_streams)
      if (s == stream) return;
    b->other_streams.push_back(stream);
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    process_pending(true);
    for (size_t d = 0; d < states_.size(); ++d)
      if (states_[d]) release_cached(*states_[d], static_cast<int>(d));
  }

  CudaMemoryStats stats(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    if (device < 0 || static_cast<size_t>(device) >= states_.size() || !states_[device]) return {};
    return states_[device]->stats;
  }

  void reset_peak(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t d = 0; d < states_.size(); ++d) {
      if (!states_[d] || (device >= 0 && static_cast<int>(d) != device)) continue;
      CudaMemoryStats& s = states_[d]->stats;
      s.peak_allocated_bytes = s.allocated_bytes;
      s.peak_reserved_bytes = s.reserved_bytes;
    }
  }

 private:
  struct Pending {
    Block* block;
    std::vector<cudaEvent_t> events;
  };

  // Returns a freed block to its pool: merges it with free neighbours in its segment.
  void free_block(Block* b) {
    DeviceState& st = state(b->device);
    st.stats.allocated_bytes -= static_cast<int64_t>(b->size);
    st.stats.requested_bytes -= static_cast<int64_t>(b->requested);
    b->allocated = false;
    b->requested = 0;
    FreeSet& pool = st.pool(b->small);
    if (Block* n = b->next; n && !n->allocated) {
      pool.erase(n);
      b->size += n->size;
      b->next = n->next;
      if (n->next) n->next->prev = b;
      delete n;
    }
    if (Block* p = b->prev; p && !p->allocated) {
      pool.erase(p);
      p->size += b->size;
      p->next = b->next;
      if (b->next) b->next->prev = p;
      delete b;
      b = p;
    }
    pool.insert(b);
  }

  // Frees the pending blocks whose streams are done (all of them, waiting, when `wait`). Until
  // then they count as allocated.
  void process_pending(bool wait) {
    size_t keep = 0;
    for (Pending& p : pending_) {
      bool done = true;
      for (cudaEvent_t e : p.events) {
        cudaError_t r = wait ? cudaEventSynchronize(e) : cudaEventQuery(e);
        if (r == cudaErrorNotReady) {
          done = false;
          break;
        }
        (void)cudaGetLastError();  // an error here means the context is gone: free anyway
      }
      if (!done) {
        pending_[keep++] = std::move(p);
        continue;
      }
      for (cudaEvent_t e : p.events) (void)cudaEventDestroy(e);
      free_block(p.block);
    }
    pending_.resize(keep);
  }

  DeviceState& state(int dev) {
    if (static_cast<size_t>(dev) >= states_.size()) states_.resize(dev + 1);
    if (!states_[dev]) states_[dev] = std::make_unique<DeviceState>();
    return *states_[dev];
  }

  // Frees every cached block that spans a whole segment. cudaFree synchronizes the device, so
  // no queued kernel can still be using the memory.
  void release_cached(DeviceState& st, int dev) {
    DeviceGuard guard(dev);
    for (FreeSet* pool : {&st.small_free, &st.large_free}) {
      for (auto it = pool->begin(); it != pool->end();) {
        Block* b = *it;
        if (b->prev || b->next) {
          ++it;
          continue;
        }
        MCORE_CUDA_CHECK(cudaFree(b->ptr));
        st.stats.reserved_bytes -= static_cast<int64_t>(b->size);
        st.stats.num_cuda_frees++;
        it = pool->erase(it);
        delete b;
      }
    }
  }

  void* cuda_malloc(DeviceState& st, int dev, size_t seg, size_t requested) {
    DeviceGuard guard(dev);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, seg);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      release_cached(st, dev);  // give the cache back and try once more
      e = cudaMalloc(&p, seg);
    }
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      st.stats.num_ooms++;
      size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      (void)cudaGetLastError();
      MCORE_FAIL() << "CUDA out of memory: tried to allocate " << mib(requested) << " ("
                   << requested << " bytes, segment " << mib(seg) << ") on cuda:" << dev
                   << "; the GPU has " << mib(total_b) << " in total, " << mib(free_b)
                   << " free; mcore holds " << mib(st.stats.allocated_bytes) << " in tensors and "
                   << mib(st.stats.reserved_bytes)
                   << " reserved in all. Reduce the batch size or sequence length, enable "
                      "activation recompute, or shard more (tensor/pipeline parallelism)";
    }
    MCORE_CUDA_CHECK(e);
    st.stats.reserved_bytes += static_cast<int64_t>(seg);
    st.stats.num_cuda_mallocs++;
    update_peaks(st.stats);
    return p;
  }

  std::mutex mu_;
  std::vector<std::unique_ptr<DeviceState>> states_;
  std::unordered_map<void*, Block*> active_;
  std::vector<Pending> pending_;  // freed blocks waiting for other streams (record_stream)
};

// Never destroyed: storages owned by other static objects may be freed after this file's
// statics would be.
CudaCachingAllocator* caching_allocator() {
  static CudaCachingAllocator* a = new CudaCachingAllocator;
  return a;
}

void device_copy_hook(void* dst, Device dst_device, const void* src, Device src_device,
                      size_t nbytes) {
  copy_bytes(dst, dst_device, src, src_device, nbytes);
}

const bool kRegistered = (register_backend(), true);

}  // namespace

void register_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    set_allocator(DeviceType::CUDA, caching_allocator());
    set_device_copy(&device_copy_hook);
  });
}

}  // namespace mcore::cuda

namespace mcore {

CudaMemoryStats cuda_memory_stats(int device) {
  return cuda::caching_allocator()->stats(device);
}
void cuda_empty_cache() {
  cuda::caching_allocator()->empty_cache();
}
void reset_peak_cuda_memory_stats(int device) {
  cuda::caching_allocator()->reset_peak(device);
}
void record_stream(const Tensor& t, void* cuda_stream) {
  MCORE_CHECK(t.defined() && t.device().is_cuda())
      << "record_stream: " << t.str() << " is not a CUDA tensor";
  if (!t.storage() || !t.storage()->data()) return;
  cuda::caching_allocator()->record_stream(t.storage()->data(),
                                           static_cast<cudaStream_t>(cuda_stream));
}

}  // namespace mcore

#include "mcore/comm/cuda/nccl_backend.h"

#include "mcore/base/error.h"

#if __has_include(<nccl.h>)

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <thread>

#include "mcore/comm/checks.h"
#include "mcore/comm/distributed.h"
#include "mcore/tensor/cuda/cuda_runtime.h"
#include "mcore/tensor/factory.h"

namespace mcore::comm {

namespace {

std::atomic<void*> g_caller_stream{nullptr};

// Unset: the stream mcore's kernels run on (mcore::cuda::current_stream of the current device,
// a non-blocking stream that the legacy default stream would not order with).
cudaStream_t caller_stream() {
  void* s = g_caller_stream.load();
  return s ? static_cast<cudaStream_t>(s) : mcore::cuda::current_stream();
}

void check_cuda(cudaError_t e, const char* what) {
  MCORE_CHECK(e == cudaSuccess) << what << ": " << cudaGetErrorString(e);
}

void check_nccl(ncclResult_t r, const char* what, ncclComm_t comm = nullptr) {
  if (r == ncclSuccess) return;
  const char* last = ncclGetLastError(comm);
  MCORE_FAIL() << what << ": " << ncclGetErrorString(r) << (last && *last ? " (" : "")
               << (last ? last : "") << (last && *last ? ")" : "");
}

ncclDataType_t nccl_type(DType d, const char* op) {
  switch (d) {
    case DType::F64:
      return ncclFloat64;
    case DType::F32:
      return ncclFloat32;
    case DType::BF16:
      return ncclBfloat16;
    case DType::F16:
      return ncclFloat16;
    case DType::F8E4M3:
      return ncclFloat8e4m3;
    case DType::F8E5M2:
      return ncclFloat8e5m2;
    case DType::I64:
      return ncclInt64;
    case DType::I32:
      return ncclInt32;
    case DType::I8:
      return ncclInt8;
    case DType::U8:
    case DType::BOOL:
      return ncclUint8;
    default:
      break;
  }
  MCORE_FAIL() << op << ": NCCL cannot reduce dtype " << d
               << " (use float64/32, bfloat16, float16, fp8, int64/32/8 or uint8)";
  return ncclUint8;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  return ncclSum;
}

void check_tensor(const Tensor& t, int device, const char* op) {
  MCORE_CHECK(t.defined()) << op << ": undefined tensor";
  MCORE_CHECK(t.device().is_cuda() && t.device().index == device)
      << op << ": the nccl backend needs tensors on cuda:" << device << ", got " << t.str()
      << " (use the mpi backend for CPU tensors)";
  MCORE_CHECK(t.is_contiguous()) << op << ": the nccl backend needs contiguous tensors, got "
                                 << t.str() << "; call .contiguous() first";
}

char* bytes(const Tensor& t) {
  return static_cast<char*>(t.data_ptr());
}

// The GPU of this process: local rank (from the launcher) modulo the visible devices.
int default_device() {
  int count = 0;
  check_cuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  MCORE_CHECK(count > 0) << "nccl backend: no CUDA device is visible";
  int local = 0;
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                           "PMIX_LOCAL_RANK", "LOCAL_RANK"}) {
    if (const char* v = std::getenv(name); v && *v) {
      local = std::atoi(v);
      break;
    }
  }
  return local % count;
}

// A completion event that several Works can share (all p2p ops launched in one NCCL group).
struct Event {
  cudaEvent_t event = nullptr;
  ~Event() {
    if (event) cudaEventDestroy(event);
  }
};

// One communicator and its stream.
struct Comm {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr;  // recorded on the caller's stream before each launch
  int device = 0;
  std::atomic<bool> aborted{false};
  void* scratch = nullptr;  // 4 bytes for barrier

  ~Comm() {
    cudaSetDevice(device);
    if (comm && !aborted) ncclCommDestroy(comm);
    if (ready) cudaEventDestroy(ready);
    if (stream) cudaStreamDestroy(stream);
    if (scratch) cudaFree(scratch);
  }
  void abort() {
    if (!aborted.exchange(true)) ncclCommAbort(comm);
  }
};

}  // namespace

class NcclProcessGroup;

class NcclWork final : public Work {
 public:
  NcclWork(std::shared_ptr<NcclProcessGroup> group, std::string op, uint64_t seq,
           std::vector<Tensor> keep, std::shared_ptr<Event> event)
      : group_(std::move(group)),
        op_(std::move(op)),
        seq_(seq),
        keep_(std::move(keep)),
        event_(std::move(event)) {}
  // Never let the buffers go while NCCL may still use them (unless unwinding to an abort).
  ~NcclWork() override {
    if (!done_ && std::uncaught_exceptions() == 0) wait();
  }

  bool is_completed() override;
  void wait() override;

 private:
  std::shared_ptr<NcclProcessGroup> group_;
  std::string op_;
  uint64_t seq_;
  std::vector<Tensor> keep_;  // the buffers NCCL reads and writes stay alive until done
  std::shared_ptr<Event> event_;
  bool done_ = false;
};

class NcclProcessGroup final : public ProcessGroup,
                               public std::enable_shared_from_this<NcclProcessGroup> {
 public:
  NcclProcessGroup(std::shared_ptr<Comm> comm, std::vector<int> global_ranks)
      : comm_(std::move(comm)), global_ranks_(std::move(global_ranks)) {
    check_nccl(ncclCommUserRank(comm_->comm, &rank_), "ncclCommUserRank", comm_->comm);
    check_nccl(ncclCommCount(comm_->comm, &size_), "ncclCommCount", comm_->comm);
    MCORE_CHECK(size_ == static_cast<int>(global_ranks_.size()))
        << "nccl: communicator of " << size_ << " ranks for " << global_ranks_.size()
        << " global ranks";
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::vector<int>& global_ranks() const override { return global_ranks_; }
  std::string backend_name() const override { return "nccl"; }
  Comm& comm() { return *comm_; }

  WorkPtr all_reduce_async(Tensor& t, ReduceOp op) override {
    check_tensor(t, comm_->device, "all_reduce");
    const ncclDataType_t type = nccl_type(t.dtype(), "all_reduce");
    const std::string what = std::string("all_reduce(") + reduce_op_name(op) + ")";
    return launch(what, {t}, [=, this](cudaStream_t s) {
      return ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), type, nccl_op(op), comm_->comm,
                           s);
    });
  }

  WorkPtr all_gather_async(Tensor& output, const Tensor& input) override {
    check_tensor(output, comm_->device, "all_gather");
    check_tensor(input, comm_->device, "all_gather");
    detail::check_all_gather(output, input, size_, "all_gather");
    // Moves bytes only; NCCL handles the in-place case (input at this rank's slot of output).
    return launch("all_gather", {output, input}, [=, this](cudaStream_t s) {
      return ncclAllGather(input.data_ptr(), output.data_ptr(), input.nbytes(), ncclUint8,
                           comm_->comm, s);
    });
  }

  WorkPtr reduce_scatter_async(Tensor& output, const Tensor& input, ReduceOp op) override {
    check_tensor(output, comm_->device, "reduce_scatter");
    check_tensor(input, comm_->device, "reduce_scatter");
    detail::check_reduce_scatter(output, input, size_, "reduce_scatter");
    const ncclDataType_t type = nccl_type(input.dtype(), "reduce_scatter");
    const std::string what = std::string("reduce_scatter(") + reduce_op_name(op) + ")";
    return launch(what, {output, input}, [=, this](cudaStream_t s) {
      return ncclReduceScatter(input.data_ptr(), output.data_ptr(), output.numel(), type,
                               nccl_op(op), comm_->comm, s);
    });
  }

  WorkPtr broadcast_async(Tensor& t, int root) override {
    check_tensor(t, comm_->device, "broadcast");
    detail::check_peer(root, size_, "broadcast", "root");
    return launch("broadcast", {t}, [=, this](cudaStream_t s) {
      return ncclBroadcast(t.data_ptr(), t.data_ptr(), t.nbytes(), ncclUint8, root, comm_->comm, s);
    });
  }

  WorkPtr all_to_all_single_async(Tensor& output, const Tensor& input,
                                  const std::vector<int64_t>& out_splits,
                                  const std::vector<int64_t>& in_splits) override {
    check_tensor(output, comm_->device, "all_to_all_single");
    check_tensor(input, comm_->device, "all_to_all_single");
    detail::AllToAllSplits sp =
        detail::resolve_all_to_all(output, input, out_splits, in_splits, size_);
    const size_t row_bytes = static_cast<size_t>(sp.row_numel) * input.element_size();
    return launch("all_to_all_single", {output, input}, [=, this](cudaStream_t s) {
      // One send and one receive per peer, fused so that they progress together.
      ncclResult_t r = ncclGroupStart();
      size_t in_off = 0, out_off = 0;
      for (int p = 0; p < size_ && r == ncclSuccess; ++p) {
        const size_t in_n = sp.in_rows[p] * row_bytes, out_n = sp.out_rows[p] * row_bytes;
        r = ncclSend(bytes(input) + in_off, in_n, ncclUint8, p, comm_->comm, s);
        if (r == ncclSuccess)
          r = ncclRecv(bytes(output) + out_off, out_n, ncclUint8, p, comm_->comm, s);
        in_off += in_n;
        out_off += out_n;
      }
      const ncclResult_t end = ncclGroupEnd();
      return r != ncclSuccess ? r : end;
    });
  }

  WorkPtr send_async(const Tensor& t, int dst, int /*tag*/) override {
    check_tensor(t, comm_->device, "send");
    detail::check_peer(dst, size_, "send", "destination");
    return queue_p2p("send", t, [=, this](cudaStream_t s) {
      return ncclSend(t.data_ptr(), t.nbytes(), ncclUint8, dst, comm_->comm, s);
    });
  }

  WorkPtr recv_async(Tensor& t, int src, int /*tag*/) override {
    check_tensor(t, comm_->device, "recv");
    detail::check_peer(src, size_, "recv", "source");
    return queue_p2p("recv", t, [=, this](cudaStream_t s) {
      return ncclRecv(t.data_ptr(), t.nbytes(), ncclUint8, src, comm_->comm, s);
    });
  }

  // NCCL has no barrier: a one-element all-reduce on a scratch word.
  WorkPtr barrier_async() override {
    if (!comm_->scratch) {
      check_cuda(cudaSetDevice(comm_->device), "cudaSetDevice");
      check_cuda(cudaMalloc(&comm_->scratch, sizeof(int32_t)), "cudaMalloc");
      check_cuda(cudaMemset(comm_->scratch, 0, sizeof(int32_t)), "cudaMemset");
      check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");  // legacy-stream memset
    }
    return launch("barrier", {}, [this](cudaStream_t s) {
      return ncclAllReduce(comm_->scratch, comm_->scratch, 1, ncclInt32, ncclSum, comm_->comm, s);
    });
  }

  std::shared_ptr<ProcessGroup> split(int color, int key) override {
    flush();
    check_cuda(cudaSetDevice(comm_->device), "cudaSetDevice");
    // Members of the new group, in its rank order: gather (color, key, global rank) of all.
    std::vector<int32_t> mine = {color, key, global_ranks_[rank_]};
    std::vector<int32_t> all(3 * size_);
    void* buf = nullptr;
    check_cuda(cudaMalloc(&buf, all.size() * sizeof(int32_t)), "cudaMalloc");
    // On our stream and waited for: a pageable cudaMemcpy may return before its DMA lands, and
    // the legacy stream it would use does not order with our non-blocking stream.
    check_cuda(cudaMemcpyAsync(static_cast<int32_t*>(buf) + 3 * rank_, mine.data(),
                               3 * sizeof(int32_t), cudaMemcpyHostToDevice, comm_->stream),
               "cudaMemcpyAsync");
    check_cuda(cudaStreamSynchronize(comm_->stream), "cudaStreamSynchronize");
    auto gather = launch("split", {}, [&](cudaStream_t s) {
      return ncclAllGather(static_cast<int32_t*>(buf) + 3 * rank_, buf, 3, ncclInt32, comm_->comm,
                           s);
    });
    gather->wait();
    check_cuda(cudaMemcpy(all.data(), buf, all.size() * sizeof(int32_t), cudaMemcpyDeviceToHost),
               "cudaMemcpy");
    cudaFree(buf);

    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    ncclComm_t child = nullptr;
    check_nccl(
        ncclCommSplit(comm_->comm, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &child, &config),
        "ncclCommSplit", comm_->comm);
    if (color < 0) return nullptr;
    // NCCL orders the new communicator by key, then by parent rank.
    std::vector<std::pair<std::pair<int, int>, int>> members;  // ((key, parent rank), global)
    for (int r = 0; r < size_; ++r)
      if (all[3 * r] == color) members.push_back({{all[3 * r + 1], r}, all[3 * r + 2]});
    std::sort(members.begin(), members.end());
    std::vector<int> ranks;
    for (const auto& m : members) ranks.push_back(m.second);
    return std::make_shared<NcclProcessGroup>(make_comm(child, comm_->device), std::move(ranks));
  }

  static std::shared_ptr<Comm> make_comm(ncclComm_t c, int device) {
    auto comm = std::make_shared<Comm>();
    comm->comm = c;
    comm->device = device;
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
    check_cuda(cudaStreamCreateWithFlags(&comm->stream, cudaStreamNonBlocking),
               "cudaStreamCreateWithFlags");
    check_cuda(cudaEventCreateWithFlags(&comm->ready, cudaEventDisableTiming), "cudaEventCreate");
    return comm;
  }

  // Launches the queued send/recv ops as one NCCL group.
  void flush() {
    if (pending_.empty()) return;
    auto pending = std::move(pending_);
    pending_.clear();
    auto event = pending.front().event;
    enqueue(
        [&](cudaStream_t s) {
          ncclResult_t r = ncclGroupStart();
          for (auto& p : pending)
            if (r == ncclSuccess) r = p.fn(s);
          const ncclResult_t end = ncclGroupEnd();
          return r != ncclSuccess ? r : end;
        },
        *event, "send/recv");
  }

 private:
  using LaunchFn = std::function<ncclResult_t(cudaStream_t)>;
  struct PendingP2P {
    LaunchFn fn;
    std::shared_ptr<Event> event;
    Tensor keep;  // alive until launched, even if its Work is dropped
  };

  // Orders `fn` after the caller's stream, runs it on our stream, records `event` after it.
  void enqueue(const LaunchFn& fn, Event& event, const std::string& op) {
    check_cuda(cudaSetDevice(comm_->device), "cudaSetDevice");
    check_cuda(cudaEventRecord(comm_->ready, caller_stream()), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(comm_->stream, comm_->ready, 0), "cudaStreamWaitEvent");
    check_nccl(fn(comm_->stream), (op + " on group '" + name() + "'").c_str(), comm_->comm);
    if (!event.event)
      check_cuda(cudaEventCreateWithFlags(&event.event, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventRecord(event.event, comm_->stream), "cudaEventRecord");
  }

  WorkPtr launch(const std::string& op, std::vector<Tensor> keep, const LaunchFn& fn) {
    flush();  // earlier p2p ops go first, as issued
    auto event = std::make_shared<Event>();
    enqueue(fn, *event, op);
    return std::make_shared<NcclWork>(shared_from_this(), op, ++seq_, std::move(keep), event);
  }

  WorkPtr queue_p2p(const char* op, const Tensor& t, LaunchFn fn) {
    // All ops queued together share the completion event of their NCCL group.
    std::shared_ptr<Event> event =
        pending_.empty() ? std::make_shared<Event>() : pending_.front().event;
    pending_.push_back({std::move(fn), event, t});
    return std::make_shared<NcclWork>(shared_from_this(), op, ++p2p_seq_, std::vector<Tensor>{t},
                                      event);
  }

  std::shared_ptr<Comm> comm_;
  std::vector<int> global_ranks_;
  int rank_ = 0;
  int size_ = 1;
  uint64_t seq_ = 0;
  uint64_t p2p_seq_ = 0;
  std::vector<PendingP2P> pending_;
};

bool NcclWork::is_completed() {
  if (done_) return true;
  group_->flush();
  const cudaError_t e = cudaEventQuery(event_->event);
  if (e == cudaErrorNotReady) return false;
  check_cuda(e, ("nccl " + op_ + " on group '" + group_->name() + "'").c_str());
  done_ = true;
  keep_.clear();
  return true;
}

void NcclWork::wait() {
  if (done_) return;
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto timeout = get_timeout();
  for (uint64_t spin = 0;; ++spin) {
    if (is_completed()) return;
    // A failed peer or network shows up as the communicator's asynchronous error.
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(group_->comm().comm, &async);
    if (async != ncclSuccess && async != ncclInProgress) {
      group_->comm().abort();
      abort_job("nccl " + op_ + " on group '" + group_->name() + "' sequence #" +
                std::to_string(seq_) + " failed: " + ncclGetErrorString(async));
    }
    const auto waited = Clock::now() - start;
    if (waited > timeout) {
      group_->comm().abort();  // stops the kernels that wait for the missing peer
      abort_on_timeout(op_, group_->name(), group_->global_ranks(), seq_,
                       std::chrono::duration<double>(waited).count());
    }
    if (spin > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

ProcessGroupPtr make_nccl_world_group(const ProcessGroupPtr& bootstrap, int device) {
  MCORE_CHECK(bootstrap) << "make_nccl_world_group: no bootstrap group";
  if (device < 0) device = default_device();
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
  // The unique id travels as 128 bytes over the bootstrap (CPU) group.
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  Tensor buf = zeros({static_cast<int64_t>(sizeof(id))}, DType::U8);
  if (bootstrap->rank() == 0) {
    check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    std::memcpy(buf.data_ptr(), &id, sizeof(id));
  }
  bootstrap->broadcast(buf, 0);
  std::memcpy(&id, buf.data_ptr(), sizeof(id));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  ncclComm_t comm = nullptr;
  check_nccl(ncclCommInitRankConfig(&comm, bootstrap->size(), id, bootstrap->rank(), &config),
             "ncclCommInitRankConfig");
  return std::make_shared<NcclProcessGroup>(NcclProcessGroup::make_comm(comm, device),
                                            bootstrap->global_ranks());
}

void set_nccl_caller_stream(void* cuda_stream) {
  g_caller_stream.store(cuda_stream);
}

void register_nccl_backend() {
  register_backend("nccl", [](const ProcessGroupPtr& bootstrap, const InitOptions& options) {
    // Device::cuda() without an index means "this rank's GPU".
    const int device =
        options.device.is_cuda() && options.device.index > 0 ? options.device.index : -1;
    return make_nccl_world_group(bootstrap, device);
  });
}

namespace {
// libmcore registers its CUDA backend when it loads, so init_distributed finds it.
const bool kRegistered = (register_nccl_backend(), true);
}  // namespace

}  // namespace mcore::comm

#else  // no nccl.h: CUDA without NCCL

namespace mcore::comm {
void register_nccl_backend() {}
ProcessGroupPtr make_nccl_world_group(const ProcessGroupPtr&, int) {
  MCORE_FAIL() << "this build of mcore found no NCCL (nccl.h); rebuild with NCCL installed";
  return nullptr;
}
void set_nccl_caller_stream(void*) {}
}  // namespace mcore::comm

#endif

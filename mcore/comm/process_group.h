// ProcessGroup: a set of ranks that run collectives together (torch.distributed's
// ProcessGroup, MLX's Group). Backends implement the virtual ops; callers see one interface:
//   local  - one process; every op is the identity or a copy
//   mpi    - OpenMPI, CPU tensors, sub-communicators per group
//   nccl   - CUDA tensors, bootstrapped over MPI, subgroups by ncclCommSplit
// Every op has an async form returning a Work handle; the blocking form is `op(...)->wait()`.
// No wait is unbounded: after the distributed timeout (--distributed-timeout-minutes, default
// 10) the rank prints the operation, the group, the op's sequence number in that group and how
// long it waited, and aborts the whole job.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::comm {

enum class ReduceOp { kSum, kAvg, kMax, kMin };
const char* reduce_op_name(ReduceOp op);

// Handle to an operation in flight.
class Work {
 public:
  virtual ~Work() = default;
  // Blocks until done; aborts the job with a clear message after the distributed timeout.
  virtual void wait() = 0;
  // Non-blocking completion test (also drives progress for MPI).
  virtual bool is_completed() = 0;
};
using WorkPtr = std::shared_ptr<Work>;

// One point-to-point op for batch_isend_irecv (torch.distributed.P2POp).
struct P2POp {
  enum Kind { kSend, kRecv } kind;
  Tensor tensor;
  int peer;  // rank within the group
  int tag = 0;
};

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Global (world) ranks of the members, in group-rank order.
  virtual const std::vector<int>& global_ranks() const = 0;
  virtual std::string backend_name() const = 0;
  // A readable name for error messages ("tensor", "data", ...); set by parallel_state.
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }

  // In place on `tensor`.
  virtual WorkPtr all_reduce_async(Tensor& tensor, ReduceOp op = ReduceOp::kSum) = 0;
  // output: [size * n, ...] gathering each rank's input [n, ...] along dim 0.
  virtual WorkPtr all_gather_async(Tensor& output, const Tensor& input) = 0;
  // output: [n, ...]; input: [size * n, ...]; rank r receives the reduced chunk r.
  virtual WorkPtr reduce_scatter_async(Tensor& output, const Tensor& input,
                                       ReduceOp op = ReduceOp::kSum) = 0;
  virtual WorkPtr broadcast_async(Tensor& tensor, int root) = 0;
  // Sends input rows [in_splits[0]] to rank 0, the next in_splits[1] rows to rank 1, ...;
  // receives out_splits[r] rows from rank r, in rank order. Empty splits mean equal parts.
  virtual WorkPtr all_to_all_single_async(Tensor& output, const Tensor& input,
                                          const std::vector<int64_t>& out_splits = {},
                                          const std::vector<int64_t>& in_splits = {}) = 0;
  virtual WorkPtr send_async(const Tensor& tensor, int dst, int tag = 0) = 0;
  virtual WorkPtr recv_async(Tensor& tensor, int src, int tag = 0) = 0;
  virtual WorkPtr barrier_async() = 0;

  // Ranks that call split with the same color form a new group, ordered by key (then by rank).
  // Collective over this group: every member must call it. color < 0: not in any new group
  // (returns nullptr).
  virtual std::shared_ptr<ProcessGroup> split(int color, int key) = 0;

  // Blocking conveniences.
  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::kSum) { all_reduce_async(t, op)->wait(); }
  void all_gather(Tensor& out, const Tensor& in) { all_gather_async(out, in)->wait(); }
  // Gather into a list: outputs[r] receives rank r's input.
  void all_gather(std::vector<Tensor>& outputs, const Tensor& input);
  void reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op = ReduceOp::kSum) {
    reduce_scatter_async(out, in, op)->wait();
  }
  void broadcast(Tensor& t, int root) { broadcast_async(t, root)->wait(); }
  void all_to_all_single(Tensor& out, const Tensor& in, const std::vector<int64_t>& out_splits = {},
                         const std::vector<int64_t>& in_splits = {}) {
    all_to_all_single_async(out, in, out_splits, in_splits)->wait();
  }
  void send(const Tensor& t, int dst, int tag = 0) { send_async(t, dst, tag)->wait(); }
  void recv(Tensor& t, int src, int tag = 0) { recv_async(t, src, tag)->wait(); }
  void barrier() { barrier_async()->wait(); }
  // Starts all ops; the returned handles complete independently.
  std::vector<WorkPtr> batch_isend_irecv(std::vector<P2POp>& ops);

 private:
  std::string name_ = "world";
};
using ProcessGroupPtr = std::shared_ptr<ProcessGroup>;

// The device a group's tensors must live on: the calling thread's current GPU for the nccl
// backend, the CPU for the others. Code that communicates small host values (loss sums,
// grad-norm scalars, flags, metadata) allocates them here and reads them back with item().
Device group_device(const ProcessGroup& group);

}  // namespace mcore::comm

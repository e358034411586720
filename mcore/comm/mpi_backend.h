// The `mpi` backend: CPU tensors over OpenMPI. Each group owns an MPI communicator (the world
// group a duplicate of MPI_COMM_WORLD, subgroups from MPI_Comm_split). Every op is a
// non-blocking MPI call (MPI_Iallreduce, MPI_Iallgather, MPI_Ireduce_scatter_block, MPI_Ibcast,
// MPI_Ialltoall(v), MPI_Isend/Irecv, MPI_Ibarrier) wrapped in a Work whose wait() polls MPI_Test
// until done or until the distributed timeout, when it aborts the job naming the op, the group
// and the op's sequence number. bf16/fp16 reductions use user-defined MPI ops that combine each
// pair in fp32 (mpi_ops.h). kAvg is a sum followed by a division.
//
// Progress: OpenMPI advances non-blocking collectives only inside MPI calls, so an async op
// overlaps with computation only as far as someone calls is_completed() (or wait()) on it.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "mcore/comm/process_group.h"

namespace mcore::comm {

class MpiProcessGroup : public ProcessGroup {
 public:
  // Wraps `comm` (errors are returned, not fatal). global_ranks: world rank of each member in
  // group-rank order. When `owned`, the destructor frees the communicator.
  MpiProcessGroup(MPI_Comm comm, bool owned, std::vector<int> global_ranks);
  ~MpiProcessGroup() override;
  MpiProcessGroup(const MpiProcessGroup&) = delete;
  MpiProcessGroup& operator=(const MpiProcessGroup&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::vector<int>& global_ranks() const override { return *global_ranks_; }
  std::string backend_name() const override { return "mpi"; }
  MPI_Comm comm() const { return comm_; }
  // Collectives issued on this group so far (the number the next one gets is this plus one).
  uint64_t sequence() const { return seq_; }

  WorkPtr all_reduce_async(Tensor& tensor, ReduceOp op = ReduceOp::kSum) override;
  WorkPtr all_gather_async(Tensor& output, const Tensor& input) override;
  WorkPtr reduce_scatter_async(Tensor& output, const Tensor& input,
                               ReduceOp op = ReduceOp::kSum) override;
  WorkPtr broadcast_async(Tensor& tensor, int root) override;
  WorkPtr all_to_all_single_async(Tensor& output, const Tensor& input,
                                  const std::vector<int64_t>& out_splits = {},
                                  const std::vector<int64_t>& in_splits = {}) override;
  WorkPtr send_async(const Tensor& tensor, int dst, int tag = 0) override;
  WorkPtr recv_async(Tensor& tensor, int src, int tag = 0) override;
  WorkPtr barrier_async() override;
  std::shared_ptr<ProcessGroup> split(int color, int key) override;

 private:
  class OpWork;
  std::shared_ptr<OpWork> new_work(const char* op, bool collective);

  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0;
  int size_ = 1;
  int tag_ub_ = 32767;
  std::shared_ptr<const std::vector<int>> global_ranks_;
  uint64_t seq_ = 0;
  uint64_t p2p_seq_ = 0;
};

// The world group over a duplicate of MPI_COMM_WORLD. MPI must be initialized.
ProcessGroupPtr make_mpi_world_group();

}  // namespace mcore::comm

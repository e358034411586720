// The `local` backend: a group of one process, used when the program was not started by a
// launcher. Collectives are the identity or a copy; send/recv to oneself work through a mailbox
// (a recv must be matched by a send posted before its wait, else it errors instead of hanging).
#pragma once

#include <deque>
#include <memory>
#include <vector>

#include "mcore/comm/process_group.h"

namespace mcore::comm {

class LocalProcessGroup : public ProcessGroup {
 public:
  // global_rank: this process's rank in the world it belongs to (0 for a lone process).
  explicit LocalProcessGroup(int global_rank = 0);

  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::vector<int>& global_ranks() const override { return global_ranks_; }
  std::string backend_name() const override { return "local"; }

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

  struct Mailbox;

 private:
  std::vector<int> global_ranks_;
  std::shared_ptr<Mailbox> mailbox_;
};

ProcessGroupPtr make_local_group(int global_rank = 0);

}  // namespace mcore::comm

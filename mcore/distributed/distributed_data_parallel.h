// DistributedDataParallel: Megatron Core's DDP wrapper for CPU (and later CUDA) ranks.
//
// It gives every trainable parameter a `main_grad` view into a contiguous gradient buffer (fp32
// with grad_reduce_in_fp32, else the parameter dtype), and hooks each parameter so that, the
// moment autograd has accumulated the parameter's gradient, the hook adds it into main_grad and
// drops `grad`. Buckets of the buffer are reduced over the data-parallel group (with context
// parallelism, as Megatron) and averaged: by default each bucket is scaled by 1/dp and then
// summed (Megatron's gradient_scaling_factor), or averaged inside the collective with
// average_in_collective.
//
// With overlap_grad_reduce the hook counts ready parameters per bucket and launches the
// bucket's asynchronous all-reduce (reduce-scatter with use_distributed_optimizer) as soon as it
// is complete, while backward continues; each hook also polls the buckets in flight, because
// OpenMPI only moves a non-blocking collective forward inside MPI calls. finish_grad_sync()
// waits for them (and runs all reductions, blocking, when overlap is off).
//
// A training step:
//   ddp.zero_grad_buffer();
//   { auto guard = ddp.no_sync(); for each microbatch but the last: forward, backward }
//   last microbatch: forward, backward      // buckets launch here when overlap is on
//   finalize_model_grads({&ddp});           // finish_grad_sync + TP/PP grad reductions
//   optimizer.step() reading p->main_grad
#pragma once

#include <memory>
#include <vector>

#include "mcore/distributed/distributed_data_parallel_config.h"
#include "mcore/distributed/param_and_grad_buffer.h"
#include "mcore/nn/module.h"

namespace mcore::distributed {

struct DistributedDataParallelOptions {
  // nullptr: parallel_state's data-parallel group with context parallel (or a one-rank local
  // group when parallel_state is not initialized).
  comm::ProcessGroupPtr data_parallel_group;
  // Put every parameter in one bucket (Megatron's disable_bucketing, used for model chunks
  // after the first under the interleaved schedule).
  bool disable_bucketing = false;
  // Pipeline rank; bucketing is off on stages after the first (their reduction is not on the
  // critical path). -1: ask parallel_state (0 when not initialized).
  int pipeline_model_parallel_rank = -1;
};

class DistributedDataParallel {
 public:
  DistributedDataParallel(std::shared_ptr<nn::Module> module, DistributedDataParallelConfig config,
                          DistributedDataParallelOptions options = {});
  ~DistributedDataParallel();
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  const std::shared_ptr<nn::Module>& module() const { return module_; }
  const DistributedDataParallelConfig& ddp_config() const { return config_; }
  const comm::ProcessGroupPtr& data_parallel_group() const { return dp_group_; }
  // The group expert weights (allreduce = false) are reduced over; null without them.
  const comm::ProcessGroupPtr& expert_data_parallel_group() const { return expert_dp_group_; }
  // Elements per bucket in use (unset: one bucket per buffer).
  std::optional<int64_t> bucket_size() const { return bucket_size_; }

  // Starts every reduction not yet started (async when overlap_grad_reduce is on).
  void start_grad_sync();
  // Waits for every reduction; with overlap off, runs them now. force_all_reduce: all-reduce even
  // with the distributed optimizer.
  void finish_grad_sync(bool force_all_reduce = false);
  // Zeros the buffers (every main_grad) and readies the buckets for a new step. Call at the
  // start of each iteration.
  void zero_grad_buffer();
  // Multiplies every gradient in the buffers (per-token loss normalization).
  void scale_gradients(double factor);
  // Copies rank 0's parameters to every data-parallel rank.
  void broadcast_params();

  // While a NoSync object lives, gradients accumulate locally and no bucket is launched
  // (Megatron's no_sync context: every microbatch but the last).
  class NoSync {
   public:
    explicit NoSync(DistributedDataParallel& ddp);
    ~NoSync();
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    DistributedDataParallel& ddp_;
  };
  [[nodiscard]] NoSync no_sync() { return NoSync(*this); }

  // Introspection (tests, logging).
  const std::vector<std::unique_ptr<ParamAndGradBuffer>>& buffers() const { return buffers_; }
  const std::vector<std::unique_ptr<ParamAndGradBucketGroup>>& bucket_groups() const {
    return bucket_groups_;
  }
  // The bucket group of a parameter (by identity); nullptr if the parameter is not trained here.
  ParamAndGradBucketGroup* bucket_group_of(const nn::Parameter* param) const;

 private:
  void on_grad_accumulated(nn::Parameter& param, Tensor& var);
  void set_last_microbatch(bool last);

  std::shared_ptr<nn::Module> module_;
  DistributedDataParallelConfig config_;
  comm::ProcessGroupPtr dp_group_;
  comm::ProcessGroupPtr expert_dp_group_;  // set when the module has expert-parallel weights
  std::optional<int64_t> bucket_size_;
  std::vector<nn::ParameterPtr> params_;
  std::vector<std::unique_ptr<ParamAndGradBuffer>> buffers_;
  std::vector<std::unique_ptr<ParamAndGradBucketGroup>> bucket_groups_;
  std::unordered_map<const nn::Parameter*, ParamAndGradBucketGroup*> param_to_bucket_group_;
  // The hooks live on the parameters, which may outlive this object: they hold this token
  // weakly and do nothing once it is gone.
  std::shared_ptr<DistributedDataParallel*> alive_;
};

}  // namespace mcore::distributed

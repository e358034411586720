// The contiguous gradient buffer behind DistributedDataParallel (Megatron Core's
// param_and_grad_buffer.py). All parameters of one (param dtype, grad dtype) pair share one
// flat buffer; each parameter's `main_grad` is a view into it, so backward accumulates straight
// into memory that is reduced in a few large collectives instead of one per parameter.
//
// Layout, exactly as Megatron: parameters are laid out in *reverse* registration order (the
// order backward produces their gradients), and the buffer is cut into buckets of about
// `bucket_size` elements (a bucket closes once it holds at least that many). The last layers'
// bucket therefore fills first and its reduction can start while backward still runs through the
// earlier layers. With the distributed optimizer each parameter starts on a 64-element boundary,
// bucket ends are padded to a multiple of lcm(dp, 128) so every bucket splits evenly into dp
// shards, and a shared (tied) embedding gets a bucket of its own.
//
// A ParamAndGradBucketGroup tracks which of its parameters have their gradient for this step
// and launches the bucket's reduction (all-reduce, or reduce-scatter for the distributed
// optimizer) when all have; its finish_grad_sync waits for it.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mcore/comm/process_group.h"
#include "mcore/distributed/distributed_data_parallel_config.h"
#include "mcore/nn/parameter.h"

namespace mcore::distributed {

// Megatron's padding rules for the distributed optimizer's layout.
int64_t pad_param_start(int64_t param_start_index);  // to a multiple of 64
int64_t pad_bucket_end(int64_t bucket_end_index, int data_parallel_world_size,
                       bool pad_for_high_nccl_busbw);  // to lcm(dp, 128[, 2^16])

// Where every parameter's gradient sits in the buffer.
struct ParamRange {
  int64_t start = 0;
  int64_t end = 0;
  int bucket_id = 0;
};
struct ParamLayout {
  std::vector<ParamRange>
      param_ranges;  // indexed like the parameter list given (registration order)
  std::vector<std::pair<int64_t, int64_t>> bucket_indices;  // [start, end) incl. padding
  std::vector<int64_t> per_bucket_numel_unpadded;
  int64_t numel() const { return bucket_indices.empty() ? 0 : bucket_indices.back().second; }
};

// Megatron's _compute_default_per_buffer_param_layout (no padding) or, with
// use_distributed_optimizer, DistributedOptimizer._compute_per_buffer_param_layout (padding and a
// bucket of its own for `shared_embedding` parameters). bucket_size unset: a single bucket.
ParamLayout compute_param_layout(const std::vector<nn::ParameterPtr>& params,
                                 std::optional<int64_t> bucket_size, int data_parallel_world_size,
                                 bool use_distributed_optimizer, bool pad_for_high_nccl_busbw);

// A slice of the buffer and the parameters whose gradients live in it.
struct ParamAndGradBucket {
  std::vector<nn::ParameterPtr> params;  // in buffer order (reverse registration order)
  Tensor grad_data;                      // 1-D view of the buffer, padding included
  int64_t offset = 0;                    // of grad_data within the buffer
  int64_t numel_unpadded = 0;
  double gradient_scaling_factor = 1.0;  // applied before the reduction (1/dp by default)
  int bucket_id = 0;
};

class ParamAndGradBuffer {
 public:
  // `params` in registration order, all of dtype `param_dtype`. Sets each parameter's main_grad
  // to its view of the (zeroed) buffer.
  ParamAndGradBuffer(const DistributedDataParallelConfig& config, DType param_dtype,
                     DType grad_dtype, std::vector<nn::ParameterPtr> params,
                     comm::ProcessGroupPtr data_parallel_group, std::optional<int64_t> bucket_size,
                     double gradient_scaling_factor);
  ParamAndGradBuffer(const ParamAndGradBuffer&) = delete;
  ParamAndGradBuffer& operator=(const ParamAndGradBuffer&) = delete;

  DType param_dtype() const { return param_dtype_; }
  DType grad_dtype() const { return grad_dtype_; }
  const Tensor& grad_data() const { return grad_data_; }
  int64_t numel() const { return layout_.numel(); }
  int64_t numel_unpadded() const;
  const ParamLayout& layout() const { return layout_; }
  const std::vector<nn::ParameterPtr>& params() const { return params_; }
  std::vector<ParamAndGradBucket>& buckets() { return buckets_; }
  const std::vector<ParamAndGradBucket>& buckets() const { return buckets_; }
  const comm::ProcessGroupPtr& data_parallel_group() const { return data_parallel_group_; }
  // Bucket holding `param` (by identity), or -1.
  int bucket_of(const nn::Parameter* param) const;

  void reset();                         // zero the whole buffer
  void scale_gradients(double factor);  // grad_data *= factor

 private:
  DType param_dtype_;
  DType grad_dtype_;
  std::vector<nn::ParameterPtr> params_;
  comm::ProcessGroupPtr data_parallel_group_;
  ParamLayout layout_;
  Tensor grad_data_;
  std::vector<ParamAndGradBucket> buckets_;
  std::unordered_map<const nn::Parameter*, int> param_to_bucket_;
};

// One or more buckets reduced together. The ready bookkeeping follows Megatron: in the first
// step the number of hook calls per parameter is recorded (a parameter used twice, e.g. under
// activation recompute, may report twice) and the reduction is launched by finish_grad_sync; from
// the second step on, the reduction starts as soon as every parameter has reported as often as
// in the first step. Only the last microbatch of a step (is_last_microbatch, see
// DistributedDataParallel::no_sync) counts.
class ParamAndGradBucketGroup {
 public:
  ParamAndGradBucketGroup(std::vector<ParamAndGradBucket*> buckets,
                          const DistributedDataParallelConfig& config,
                          comm::ProcessGroupPtr collective_group);

  const std::vector<ParamAndGradBucket*>& buckets() const { return buckets_; }
  bool contains(const nn::Parameter* param) const { return param_index_.count(param) != 0; }

  // Called by the gradient hook when `param`'s gradient has been added to its main_grad.
  void register_grad_ready(const nn::Parameter* param, bool force_all_reduce = false);
  // Scales the buckets and launches their reduction (async when overlap_grad_reduce is on).
  void start_grad_sync(bool force_all_reduce = false);
  // Waits for the reduction; with overlap off, runs it now (blocking).
  void finish_grad_sync(bool force_all_reduce = false);
  // Drives progress of an in-flight reduction (OpenMPI only advances non-blocking collectives
  // inside MPI calls); returns true when nothing is in flight any more.
  bool poll();
  // Ready for the next step: counts cleared, first-step counts recorded.
  void reset();

  bool is_last_microbatch = true;
  bool is_first_batch() const { return is_first_batch_; }
  bool grad_sync_launched() const { return launched_; }
  bool grad_sync_in_flight() const { return !works_.empty(); }

 private:
  void check_grads_finite() const;

  std::vector<ParamAndGradBucket*> buckets_;
  DistributedDataParallelConfig config_;
  comm::ProcessGroupPtr group_;
  std::unordered_map<const nn::Parameter*, size_t> param_index_;
  std::vector<const nn::Parameter*> params_;
  std::vector<int> ready_counts_;
  std::vector<int> golden_counts_;
  int64_t ready_total_ = 0;
  int64_t golden_total_ = 0;
  bool is_first_batch_ = true;
  bool launched_ = false;
  bool finished_ = false;
  std::vector<comm::WorkPtr> works_;
};

}  // namespace mcore::distributed

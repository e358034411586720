// DistributedDataParallelConfig: the knobs of Megatron Core's DistributedDataParallel, with
// its defaults (megatron/core/distributed/distributed_data_parallel_config.py). pretrain_gpt
// fills it from --accumulate-allreduce-grads-in-fp32, --overlap-grad-reduce,
// --use-distributed-optimizer, --ddp-bucket-size, --ddp-average-in-collective and
// --check-for-nan-in-loss-and-grad.
#pragma once

#include <cstdint>
#include <optional>

namespace mcore::distributed {

struct DistributedDataParallelConfig {
  // Gradients are accumulated and reduced in fp32 whatever the parameter dtype.
  bool grad_reduce_in_fp32 = false;
  // Launch each bucket's reduction asynchronously as soon as its gradients are complete.
  bool overlap_grad_reduce = false;
  // Reduce-scatter instead of all-reduce (each rank keeps only its shard of the reduced grads);
  // the buffer is padded so that every bucket divides evenly over the data-parallel ranks.
  bool use_distributed_optimizer = false;
  // Error out (naming the rank and the parameter) when a gradient holds NaN/Inf before the
  // reduction.
  bool check_for_nan_in_grad = false;
  // Elements per bucket. Unset: max(40,000,000, 1,000,000 x dp size), as Megatron. Ignored (one
  // bucket) when overlap_grad_reduce is off, and on pipeline stages after the first.
  std::optional<int64_t> bucket_size;
  // Average inside the collective (ReduceOp::kAvg) instead of Megatron's default: scale by
  // 1/dp before a sum reduction.
  bool average_in_collective = false;
  // Per-token loss (Megatron's calculate_per_token_loss): gradients are summed over the
  // data-parallel ranks, not averaged; finalize_model_grads divides by the global token count.
  bool calculate_per_token_loss = false;
  // Pad buckets (distributed optimizer only) to a multiple of 2^16 elements as well.
  bool pad_buckets_for_high_nccl_busbw = false;
};

}  // namespace mcore::distributed

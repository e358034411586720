// The distributed optimizer's sharding (Megatron Core's DistributedOptimizer, ZeRO stage 1):
// which elements of each parameter this data-parallel rank updates, and the collectives that join
// the ranks' shards again.
//
// DDP built with use_distributed_optimizer pads its grad buffers so that every bucket splits into
// dp equal, contiguous shards, and reduce-scatters each bucket: rank r ends the step with the
// reduced gradient of shard r only. A parameter's elements fall into one or more shards; rank r
// keeps optimizer state (Adam moments, the fp32 main copy of a bf16/fp16 weight) for the part of
// each parameter inside its own shard and updates only that part. all_gather_params() then gives
// every rank the whole updated weights. The optimizer state per rank thus shrinks by dp, as in
// Megatron, at the cost of one all-gather of the weights per step.
//
// Checkpoints stay layout-free: gather() assembles a per-parameter quantity (a state tensor) from
// all ranks' shards, so a saved optimizer state is the same whether or not the run sharded it,
// and loads under any data-parallel size, with or without --use-distributed-optimizer.
#pragma once

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

#include "mcore/distributed/distributed_data_parallel.h"

namespace mcore::optimizer {

class DistributedOptimizerShards {
 public:
  // The model chunks' DDP wrappers (one per virtual pipeline chunk), all built with
  // use_distributed_optimizer over the same data-parallel group.
  explicit DistributedOptimizerShards(std::vector<distributed::DistributedDataParallel*> chunks);

  struct Range {
    int64_t begin = 0, end = 0;  // of the parameter's flattened elements
    int64_t size() const { return end - begin; }
  };
  // The part of `param` this rank updates (possibly empty). Errors for a parameter that no DDP
  // buffer holds.
  Range local_range(const nn::Parameter& param) const;
  const comm::ProcessGroupPtr& data_parallel_group() const { return group_; }

  // Every rank's updated part of every parameter, joined into the parameters (collective over
  // the data-parallel group). Where the grad buffer has the parameters' dtype it is used as the
  // staging area, so call this only once the step has consumed the gradients.
  void all_gather_params() const;

  // Assembles a per-parameter quantity from the ranks' parts: `local(param)` returns this rank's
  // part (a tensor of local_range(param).size() elements, any dtype castable to `dtype`), and
  // `full(param, t)` receives the whole flattened quantity. Collective over the data-parallel
  // group; every rank must call it the same way.
  void gather(DType dtype, const std::function<Tensor(const nn::Parameter&)>& local,
              const std::function<void(const nn::Parameter&, const Tensor&)>& full) const;

 private:
  // flat: the staging tensor (the buffer's layout, `dtype`), or undefined to allocate one.
  void gather_buffer(const distributed::ParamAndGradBuffer& buffer, DType dtype,
                     const std::function<Tensor(const nn::Parameter&)>& local,
                     const std::function<void(const nn::Parameter&, const Tensor&)>& full,
                     Tensor flat = Tensor()) const;

  struct Entry {
    const distributed::ParamAndGradBuffer* buffer;
    int64_t buffer_start;  // of the parameter in its buffer
    Range range;
  };
  std::vector<distributed::DistributedDataParallel*> chunks_;
  comm::ProcessGroupPtr group_;
  std::unordered_map<const nn::Parameter*, Entry> entries_;
  // all_gather_params' staging per buffer whose grads are not in the params' dtype.
  mutable std::unordered_map<const distributed::ParamAndGradBuffer*, Tensor> staging_;
};

}  // namespace mcore::optimizer

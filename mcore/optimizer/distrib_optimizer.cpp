#include "mcore/optimizer/distrib_optimizer.h"

#include <algorithm>

#include "mcore/base/error.h"
#include "mcore/tensor/factory.h"

namespace mcore::optimizer {

DistributedOptimizerShards::DistributedOptimizerShards(
    std::vector<distributed::DistributedDataParallel*> chunks)
    : chunks_(std::move(chunks)) {
  MCORE_CHECK(!chunks_.empty()) << "distributed optimizer: no model chunks";
  for (auto* ddp : chunks_) {
    MCORE_CHECK(ddp) << "distributed optimizer: null DDP chunk";
    MCORE_CHECK(ddp->ddp_config().use_distributed_optimizer)
        << "distributed optimizer: the model's DistributedDataParallel was built without "
           "use_distributed_optimizer, so its gradients are all-reduced, not sharded; build it "
           "with DistributedDataParallelConfig::use_distributed_optimizer = true";
    if (!group_) group_ = ddp->data_parallel_group();
    MCORE_CHECK(ddp->data_parallel_group()->size() == group_->size())
        << "distributed optimizer: model chunks reduce over data-parallel groups of different "
           "sizes";
  }
  for (auto* ddp : chunks_) {
    for (const auto& buffer : ddp->buffers()) {
      // Each buffer is sharded over the group it is reduced over: the data-parallel one, or the
      // expert-data-parallel one for expert weights.
      const comm::ProcessGroupPtr& g = buffer->data_parallel_group();
      const int64_t dp = g->size(), rank = g->rank();
      const distributed::ParamLayout& layout = buffer->layout();
      const auto& params = buffer->params();
      for (size_t k = 0; k < params.size(); ++k) {
        const distributed::ParamRange& r = layout.param_ranges[k];
        const auto [bucket_start, bucket_end] = layout.bucket_indices[r.bucket_id];
        const int64_t shard = (bucket_end - bucket_start) / dp;
        const int64_t s0 = bucket_start + rank * shard, s1 = s0 + shard;
        Range range;
        range.begin = std::clamp(s0, r.start, r.end) - r.start;
        range.end = std::clamp(s1, r.start, r.end) - r.start;
        if (range.end < range.begin) range.end = range.begin;
        entries_[params[k].get()] = {buffer.get(), r.start, range};
      }
    }
  }
}

DistributedOptimizerShards::Range DistributedOptimizerShards::local_range(
    const nn::Parameter& param) const {
  auto it = entries_.find(&param);
  MCORE_CHECK(it != entries_.end())
      << "distributed optimizer: parameter " << shape_str(param.shape())
      << " is in no DistributedDataParallel grad buffer (give the optimizer the parameters of "
         "the DDP-wrapped model chunks)";
  return it->second.range;
}

void DistributedOptimizerShards::gather_buffer(
    const distributed::ParamAndGradBuffer& buffer, DType dtype,
    const std::function<Tensor(const nn::Parameter&)>& local,
    const std::function<void(const nn::Parameter&, const Tensor&)>& full, Tensor flat) const {
  const distributed::ParamLayout& layout = buffer.layout();
  if (layout.numel() == 0) return;
  const comm::ProcessGroupPtr& group = buffer.data_parallel_group();
  const int64_t dp = group->size(), rank = group->rank();
  NoGradGuard no_grad;
  if (!flat.defined()) flat = zeros({layout.numel()}, {dtype, buffer.grad_data().device()});
  const auto& params = buffer.params();
  for (size_t k = 0; k < params.size(); ++k) {
    const Range range = entries_.at(params[k].get()).range;
    if (range.size() == 0) continue;
    Tensor part = local(*params[k]);
    MCORE_CHECK(part.numel() == range.size())
        << "distributed optimizer: a local part of " << part.numel()
        << " elements for a parameter whose shard here has " << range.size();
    Tensor dst = flat.narrow(0, layout.param_ranges[k].start + range.begin, range.size());
    dst.copy_(part.reshape({range.size()}));
  }
  for (const auto& [start, end] : layout.bucket_indices) {
    const int64_t shard = (end - start) / dp;
    if (shard == 0) continue;
    // In place: this rank's shard already sits at its slot of the bucket.
    const Tensor mine = flat.narrow(0, start + rank * shard, shard);
    Tensor all = flat.narrow(0, start, end - start);
    group->all_gather(all, mine);
  }
  for (size_t k = 0; k < params.size(); ++k) {
    const distributed::ParamRange& r = layout.param_ranges[k];
    full(*params[k], flat.narrow(0, r.start, r.end - r.start));
  }
}

void DistributedOptimizerShards::gather(
    DType dtype, const std::function<Tensor(const nn::Parameter&)>& local,
    const std::function<void(const nn::Parameter&, const Tensor&)>& full) const {
  for (auto* ddp : chunks_) {
    for (const auto& buffer : ddp->buffers()) gather_buffer(*buffer, dtype, local, full);
  }
}

void DistributedOptimizerShards::all_gather_params() const {
  auto local = [&](const nn::Parameter& p) {
    const Range r = entries_.at(&p).range;
    return p.detach().reshape({p.numel()}).narrow(0, r.begin, r.size());
  };
  auto full = [](const nn::Parameter& p, const Tensor& t) {
    Tensor dst = p.detach();
    dst.copy_(t.view(p.shape()));
  };
  // The step has consumed the gradients: where the grad buffer has the parameters' dtype (fp32
  // training) it is the staging area, as Megatron reuses it, so the gather needs no second
  // model-sized buffer. zero_grad_buffer() clears it before the next backward.
  for (auto* ddp : chunks_) {
    for (const auto& buffer : ddp->buffers()) {
      const bool reuse = buffer->grad_dtype() == buffer->param_dtype();
      Tensor staging = reuse ? buffer->grad_data() : Tensor();
      if (!reuse) {
        // bf16/fp16 params over an fp32 grad buffer: a staging buffer kept across steps.
        Tensor& kept = staging_[buffer.get()];
        if (!kept.defined())
          kept = empty({buffer->layout().numel()},
                       {buffer->param_dtype(), buffer->grad_data().device()});
        staging = kept;
      }
      gather_buffer(*buffer, buffer->param_dtype(), local, full, staging);
    }
  }
}

}  // namespace mcore::optimizer

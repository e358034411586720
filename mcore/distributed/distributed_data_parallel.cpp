#include "mcore/distributed/distributed_data_parallel.h"

#include <algorithm>

#include "mcore/comm/local_backend.h"
#include "mcore/ops/elementwise.h"
#include "mcore/parallel_state/parallel_state.h"

namespace mcore::distributed {

DistributedDataParallel::DistributedDataParallel(std::shared_ptr<nn::Module> module,
                                                 DistributedDataParallelConfig config,
                                                 DistributedDataParallelOptions options)
    : module_(std::move(module)), config_(config) {
  MCORE_CHECK(module_) << "DistributedDataParallel: module is null";
  const bool ps_ready = parallel_state::model_parallel_is_initialized();
  dp_group_ = options.data_parallel_group;
  if (!dp_group_) {
    dp_group_ = ps_ready ? parallel_state::get_data_parallel_group(/*with_context_parallel=*/true)
                         : comm::make_local_group();
  }
  // Megatron's default: larger DP needs larger buckets to stay bandwidth-bound. Without overlap
  // there is nothing to gain from several buckets.
  if (!config_.bucket_size) {
    config_.bucket_size = std::max<int64_t>(40000000, int64_t{1000000} * dp_group_->size());
  }
  if (!config_.overlap_grad_reduce) config_.bucket_size.reset();
  bucket_size_ = config_.bucket_size;
  int pp_rank = options.pipeline_model_parallel_rank;
  if (pp_rank < 0) pp_rank = ps_ready ? parallel_state::get_pipeline_model_parallel_rank() : 0;
  if (options.disable_bucketing || pp_rank > 0) bucket_size_.reset();

  for (auto& [name, p] : module_->named_parameters()) {
    if (p->requires_grad()) params_.push_back(p);
  }

  // One buffer per (param dtype, grad dtype), in order of first appearance, as Megatron's
  // group_params_for_buffers; expert weights (allreduce = false) in buffers of their own,
  // reduced over the expert-data-parallel group (Megatron's expert_parallel_buffers).
  struct Group {
    DType dtype;
    bool expert;
    std::vector<nn::ParameterPtr> params;
  };
  std::vector<Group> groups;
  for (const auto& p : params_) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) {
      return g.dtype == p->dtype() && g.expert == !p->allreduce;
    });
    if (it == groups.end()) {
      groups.push_back({p->dtype(), !p->allreduce, {}});
      it = std::prev(groups.end());
    }
    it->params.push_back(p);
  }
  const bool has_experts =
      std::any_of(groups.begin(), groups.end(), [](const Group& g) { return g.expert; });
  if (has_experts) {
    MCORE_CHECK(ps_ready) << "DistributedDataParallel: expert-parallel parameters "
                             "(allreduce = false) need parallel_state's expert groups";
    expert_dp_group_ = parallel_state::get_expert_data_parallel_group();
  }
  MCORE_CHECK(!(config_.average_in_collective && config_.calculate_per_token_loss))
      << "DistributedDataParallel: average_in_collective and calculate_per_token_loss exclude "
         "each other (per-token loss needs summed gradients)";
  // Gradients end as the mean over the data-parallel ranks. An expert's gradient already sums
  // the tokens of every expert-parallel rank (they are data-parallel ranks too), so its buffer
  // is scaled by 1/dp as well, and by edp/dp when the collective averages over edp ranks.
  const double dp = dp_group_->size();
  auto scaling_for = [&](bool expert) {
    if (config_.calculate_per_token_loss) return 1.0;
    if (!config_.average_in_collective) return 1.0 / dp;
    return expert ? expert_dp_group_->size() / dp : 1.0;
  };
  std::vector<bool> expert_buffer;
  for (auto& g : groups) {
    expert_buffer.push_back(g.expert);
    const DType grad_dtype = config_.grad_reduce_in_fp32 ? DType::F32 : g.dtype;
    buffers_.push_back(std::make_unique<ParamAndGradBuffer>(
        config_, g.dtype, grad_dtype, std::move(g.params), g.expert ? expert_dp_group_ : dp_group_,
        bucket_size_, scaling_for(g.expert)));
  }
  // No fp8 buffers: one bucket per group, or everything over one reduction group in one
  // bucket group without bucketing.
  if (options.disable_bucketing) {
    for (const bool expert : {false, true}) {
      std::vector<ParamAndGradBucket*> all;
      for (size_t i = 0; i < buffers_.size(); ++i)
        if (expert_buffer[i] == expert)
          for (auto& b : buffers_[i]->buckets()) all.push_back(&b);
      if (!all.empty())
        bucket_groups_.push_back(std::make_unique<ParamAndGradBucketGroup>(
            all, config_, expert ? expert_dp_group_ : dp_group_));
    }
  } else {
    for (auto& buf : buffers_)
      for (auto& b : buf->buckets())
        bucket_groups_.push_back(std::make_unique<ParamAndGradBucketGroup>(
            std::vector{&b}, config_, buf->data_parallel_group()));
  }
  for (auto& g : bucket_groups_)
    for (ParamAndGradBucket* b : g->buckets())
      for (const auto& p : b->params) param_to_bucket_group_[p.get()] = g.get();

  alive_ = std::make_shared<DistributedDataParallel*>(this);
  std::weak_ptr<DistributedDataParallel*> token = alive_;
  for (const auto& p : params_) {
    // The raw pointer is safe: the hook runs only while this object (which owns the module and
    // so the parameter) is alive.
    nn::Parameter* raw = p.get();
    p->register_post_accumulate_grad_hook([token, raw](Tensor& var) {
      auto self = token.lock();
      if (self) (*self)->on_grad_accumulated(*raw, var);
    });
  }
}

DistributedDataParallel::~DistributedDataParallel() {
  // Never free buffers that a collective in flight still writes into.
  for (auto& g : bucket_groups_) {
    if (g->grad_sync_in_flight()) g->finish_grad_sync();
  }
}

void DistributedDataParallel::on_grad_accumulated(nn::Parameter& param, Tensor& var) {
  const Tensor& g = var.grad();
  if (g.defined()) {
    if (g.dtype() == param.main_grad.dtype()) {
      ops::add_(param.main_grad, g);
    } else {
      ops::add_(param.main_grad, g.to(param.main_grad.dtype()));
    }
    var.set_grad(Tensor());
  }
  if (config_.overlap_grad_reduce) {
    auto it = param_to_bucket_group_.find(&param);
    if (it != param_to_bucket_group_.end()) it->second->register_grad_ready(&param);
    // Let OpenMPI progress the buckets already launched while backward computes.
    for (auto& group : bucket_groups_) {
      if (group->grad_sync_in_flight()) group->poll();
    }
  }
}

void DistributedDataParallel::start_grad_sync() {
  for (auto& g : bucket_groups_) {
    if (!g->grad_sync_launched()) g->start_grad_sync();
  }
}

void DistributedDataParallel::finish_grad_sync(bool force_all_reduce) {
  for (auto& g : bucket_groups_) g->finish_grad_sync(force_all_reduce);
}

void DistributedDataParallel::zero_grad_buffer() {
  for (const auto& p : params_) p->set_grad(Tensor());
  for (auto& b : buffers_) b->reset();
  for (auto& g : bucket_groups_) g->reset();
}

void DistributedDataParallel::scale_gradients(double factor) {
  for (auto& b : buffers_) b->scale_gradients(factor);
}

void DistributedDataParallel::broadcast_params() {
  NoGradGuard no_grad;
  for (const auto& p : module_->parameters()) {
    Tensor t = p->detach();
    (p->allreduce ? dp_group_ : expert_dp_group_)->broadcast(t, 0);
  }
}

void DistributedDataParallel::set_last_microbatch(bool last) {
  for (auto& g : bucket_groups_) g->is_last_microbatch = last;
}

DistributedDataParallel::NoSync::NoSync(DistributedDataParallel& ddp) : ddp_(ddp) {
  ddp_.set_last_microbatch(false);
}
DistributedDataParallel::NoSync::~NoSync() {
  ddp_.set_last_microbatch(true);
}

ParamAndGradBucketGroup* DistributedDataParallel::bucket_group_of(
    const nn::Parameter* param) const {
  auto it = param_to_bucket_group_.find(param);
  return it == param_to_bucket_group_.end() ? nullptr : it->second;
}

}  // namespace mcore::distributed

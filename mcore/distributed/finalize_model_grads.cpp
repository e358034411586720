#include "mcore/distributed/finalize_model_grads.h"

#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor/factory.h"
#include "mcore/timers/timers.h"

namespace mcore::distributed {

namespace {

namespace ps = parallel_state;

// Megatron's _get_main_grad_attr: main_grad when DDP gave one, else grad.
Tensor grad_of(const nn::Parameter& p) {
  return p.main_grad.defined() ? p.main_grad : p.grad();
}

// All-reduce (sum) of several gradients as one flat message, copied back in place (Megatron's
// _flatten_dense_tensors / _unflatten_dense_tensors); one message per dtype.
void all_reduce_coalesced(std::vector<Tensor>& grads, const comm::ProcessGroupPtr& group) {
  while (!grads.empty()) {
    const DType dtype = grads.front().dtype();
    std::vector<Tensor> same, rest;
    int64_t total = 0;
    for (auto& g : grads) {
      if (g.dtype() == dtype) {
        same.push_back(g);
        total += g.numel();
      } else {
        rest.push_back(g);
      }
    }
    Tensor flat = empty({total}, {dtype, same.front().device()});
    int64_t off = 0;
    for (auto& g : same) {
      flat.narrow(0, off, g.numel()).view(g.shape()).copy_(g);
      off += g.numel();
    }
    group->all_reduce(flat);
    off = 0;
    for (auto& g : same) {
      g.copy_(flat.narrow(0, off, g.numel()).view(g.shape()));
      off += g.numel();
    }
    grads = std::move(rest);
  }
}

void allreduce_sequence_parallel_grads(const std::vector<DistributedDataParallel*>& model) {
  auto tp = ps::get_tensor_model_parallel_group();
  if (tp->size() <= 1) return;
  std::vector<Tensor> grads;
  for (auto* chunk : model) {
    for (const auto& p : chunk->module()->parameters()) {
      if (!p->requires_grad() || !p->sequence_parallel) continue;
      Tensor g = grad_of(*p);
      if (g.defined()) grads.push_back(g);
    }
  }
  all_reduce_coalesced(grads, tp);
}

void allreduce_word_embedding_grads(const std::vector<DistributedDataParallel*>& model) {
  if (!ps::is_rank_in_embedding_group()) return;
  auto group = ps::get_embedding_group();
  if (group->size() <= 1) return;
  DistributedDataParallel* chunk = ps::is_pipeline_first_stage()  ? model.front()
                                   : ps::is_pipeline_last_stage() ? model.back()
                                                                  : model.front();
  for (const auto& p : chunk->module()->parameters()) {
    if (!p->requires_grad() || !p->shared_embedding) continue;
    Tensor g = grad_of(*p);
    MCORE_CHECK(g.defined()) << "the shared embedding weight of shape " << shape_str(p->shape())
                             << " has no gradient to all-reduce across pipeline stages";
    group->all_reduce(g);
  }
}

}  // namespace

void finalize_model_grads(const std::vector<DistributedDataParallel*>& model,
                          std::optional<double> num_tokens, bool force_all_reduce) {
  MCORE_CHECK(!model.empty()) << "finalize_model_grads: no model chunks";
  {
    timers::ScopedTimer t("all-grads-sync", 1);
    for (auto* chunk : model) {
      MCORE_CHECK(chunk) << "finalize_model_grads: null model chunk";
      chunk->finish_grad_sync(force_all_reduce);
    }
  }
  const bool ps_ready = ps::model_parallel_is_initialized();
  if (ps_ready) {
    {
      timers::ScopedTimer t("layernorm-grads-all-reduce", 1);
      allreduce_sequence_parallel_grads(model);
    }
    timers::ScopedTimer t("embedding-grads-all-reduce", 1);
    allreduce_word_embedding_grads(model);
  }
  if (num_tokens) {
    // The count is known on the last pipeline stage; share it, then sum over DP ranks.
    Tensor n = scalar_tensor(*num_tokens, DType::F64)
                   .reshape({1})
                   .to(comm::group_device(*model.front()->data_parallel_group()));
    if (ps_ready) {
      auto pp = ps::get_pipeline_model_parallel_group();
      if (pp->size() > 1) pp->broadcast(n, pp->size() - 1);
    }
    model.front()->data_parallel_group()->all_reduce(n);
    const double total = std::max(n.item(), 1.0);  // Megatron clamps to avoid division by 0
    for (auto* chunk : model) chunk->scale_gradients(1.0 / total);
  }
}

}  // namespace mcore::distributed

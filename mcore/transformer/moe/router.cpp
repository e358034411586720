#include "mcore/transformer/moe/router.h"

#include <algorithm>
#include <numeric>

#include "mcore/autograd/checkpoint.h"
#include "mcore/nn/functional.h"
#include "mcore/nn/init.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/utils.h"
#include "mcore/transformer/moe/moe_utils.h"

namespace mcore::transformer::moe {

namespace {

// Row t's entries at columns idx[t * k + j] of x [rows, cols], as [rows, k], differentiable.
Tensor gather_columns(const Tensor& x, const std::vector<int64_t>& idx, int64_t k) {
  const int64_t rows = x.size(0), cols = x.size(1);
  std::vector<int64_t> flat(idx.size());
  for (size_t i = 0; i < idx.size(); ++i) flat[i] = static_cast<int64_t>(i) / k * cols + idx[i];
  const Tensor ids = from_vector<int64_t>(flat).to(x.device());
  return F::reshape(F::embedding(ids, F::reshape(x, {rows * cols, 1})), {rows, k});
}

}  // namespace

TopKRouter::TopKRouter(const SlotArgs& args)
    : config_(args.config), layer_number_(args.layer_number) {
  const TransformerConfig& c = *config_;
  nn::InitSpec init;
  init.seed = c.seed;
  init.stream = nn::stream_for_name(args.param_name("weight"));
  init.std = c.init_method_std;
  weight_ = register_parameter(
      "weight", c.perform_initialization
                    ? nn::init_normal({c.num_moe_experts, c.hidden_size}, init, c.params_dtype)
                    : zeros({c.num_moe_experts, c.hidden_size}, c.params_dtype));
  if (c.tensor_model_parallel_size > 1) {
    tp_group_ = tensor_parallel::resolve_tp_group(args.tp_group);
    weight_->sequence_parallel = true;
  }
}

Routing TopKRouter::forward(const Tensor& x) const {
  const TransformerConfig& c = *config_;
  const int64_t tokens = x.size(0), experts = c.num_moe_experts, k = c.moe_router_topk;
  Tensor logits = F::to(F::linear(x, *weight_), DType::F32);  // [tokens, experts]
  const int64_t tp = tp_group_ ? tp_group_->size() : 1;
  if (is_training() && c.moe_z_loss_coeff > 0) {
    // Megatron's apply_z_loss: each TP rank's mean over its slice of the tokens, the
    // coefficient divided by the TP size, so the ranks' losses sum to the whole sequence's mean.
    const double coeff = c.moe_z_loss_coeff / static_cast<double>(tp);
    const Tensor z = z_loss(logits, coeff);
    logits = attach_aux_loss(
        logits, c.calculate_per_token_loss ? F::scale(z, static_cast<double>(tokens * tp)) : z);
    if (!autograd::in_recompute())
      record_aux_loss("z_loss", layer_number_,
                      z.detach().to(Device::cpu()).item() / c.moe_z_loss_coeff);
  }

  // The top-k experts of each token by logit (softmax keeps the order), larger index last on
  // ties, as a stable descending sort.
  Routing r;
  r.experts.resize(static_cast<size_t>(tokens * k));
  r.tokens_per_expert.assign(static_cast<size_t>(experts), 0);
  {
    const Tensor host = logits.detach().to(Device::cpu()).contiguous();
    const float* l = host.data<float>();
    std::vector<int64_t> order(static_cast<size_t>(experts));
    for (int64_t t = 0; t < tokens; ++t) {
      const float* row = l + t * experts;
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return row[a] > row[b]; });
      for (int64_t j = 0; j < k; ++j) {
        r.experts[t * k + j] = order[j];
        ++r.tokens_per_expert[order[j]];
      }
    }
  }
  Tensor scores;  // softmax over all experts, when needed
  if (c.moe_router_pre_softmax) {
    scores = F::softmax(logits);
    r.probs = gather_columns(scores, r.experts, k);
  } else {
    r.probs = F::softmax(gather_columns(logits, r.experts, k));
  }
  if (c.moe_router_topk_scaling_factor != 1.0)
    r.probs = F::scale(r.probs, c.moe_router_topk_scaling_factor);
  if (is_training() && c.moe_router_load_balancing_type == "aux_loss" && c.moe_aux_loss_coeff > 0) {
    if (!scores.defined()) scores = F::softmax(logits);
    std::vector<int64_t> counts = r.tokens_per_expert;
    int64_t total = tokens;
    if (tp_group_) {
      // The whole sequence's counts: every rank of the TP group holds a slice of it.
      Tensor t = from_vector<int64_t>(counts).to(comm::group_device(*tp_group_));
      tp_group_->all_reduce(t);
      counts = to_vector<int64_t>(t.to(Device::cpu()));
      total *= tp_group_->size();
    }
    const Tensor aux = switch_load_balancing_loss(scores, counts, k, c.moe_aux_loss_coeff, total);
    // Megatron's apply_load_balancing_loss: with a per-token loss the main loss is a sum over
    // tokens (divided by the global token count in finalize_model_grads), so the aux loss is
    // scaled by this microbatch's tokens (the whole sequence's) to keep its weight.
    r.probs = attach_aux_loss(
        r.probs, c.calculate_per_token_loss ? F::scale(aux, static_cast<double>(total)) : aux);
    if (!autograd::in_recompute())
      record_aux_loss("load_balancing_loss", layer_number_,
                      aux.detach().to(Device::cpu()).item() / c.moe_aux_loss_coeff);
  }
  return r;
}

}  // namespace mcore::transformer::moe

// The mixture-of-experts router (Megatron Core's TopKRouter, transformer/moe/router.py): a
// bias-free linear layer [num_moe_experts, hidden] scores every token against every expert, each
// token goes to its moe_router_topk best experts, and its routing probabilities weight their
// outputs. By default the top-k logits are softmaxed among themselves (Mixtral's
// softmax-then-renormalize gives the same numbers); with moe_router_pre_softmax the softmax runs
// over all experts first and the top-k probabilities are used as they are.
//
// With moe_router_load_balancing_type "aux_loss" and moe_aux_loss_coeff > 0 the Switch
// Transformer load-balancing loss is attached to the probabilities (moe_utils.h): it adds its
// gradient in backward without changing any activation, as Megatron's MoEAuxLossAutoScaler.
// With moe_z_loss_coeff > 0 the ST-MoE z-loss on the router logits is attached the same way.
//
// With tensor (and so sequence) parallelism each rank routes its slice of the sequence: the
// weight is replicated and its gradients are partial sums (marked sequence_parallel, so
// finalize_model_grads all-reduces them over the TP group), and the aux loss counts the tokens
// per expert over the whole sequence, as Megatron's tp_cp reduction does.
#pragma once

#include <cstdint>
#include <vector>

#include "mcore/nn/module.h"
#include "mcore/transformer/spec.h"

namespace mcore::transformer::moe {

struct Routing {
  Tensor probs;                            // [tokens, topk], differentiable, fp32
  std::vector<int64_t> experts;            // [tokens * topk]: expert of (token, slot), row-major
  std::vector<int64_t> tokens_per_expert;  // [num_moe_experts]
};

class TopKRouter : public nn::Module {
 public:
  explicit TopKRouter(const SlotArgs& args);
  // x: [tokens, hidden].
  Routing forward(const Tensor& x) const;
  const nn::ParameterPtr& weight() const { return weight_; }

 private:
  const TransformerConfig* config_;
  int64_t layer_number_;
  comm::ProcessGroupPtr tp_group_;  // under sequence parallelism: the ranks sharing a sequence
  nn::ParameterPtr weight_;
};

}  // namespace mcore::transformer::moe

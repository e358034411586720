// The mixture-of-experts MLP (Megatron Core's MoELayer with the SequentialMLP experts,
// transformer/moe/moe_layer.py and experts.py): in the layer's mlp slot, each token goes through
// the moe_router_topk experts its router picks, and their outputs are summed weighted by the
// routing probabilities:
//
//   y[t] = sum_j probs[t, j] * Expert_{e(t, j)}(x[t])
//
// Tokens are permuted so that each expert's tokens are contiguous (stable by token), every
// expert - an MLP of moe_ffn_hidden_size, registered as experts.local_experts.<e> with
// Megatron's parameter names - runs once on its rows, and the rows are un-permuted and weighted.
// The permutations are row gathers, differentiable (their backward is a scatter-add), so the
// router learns through the probabilities and the aux loss. Every expert runs, on zero rows
// too, so each expert weight has a gradient in every step. With
// moe_shared_expert_intermediate_size a shared expert (shared_experts: a dense MLP of
// the layer's config) processes every token and its output is added (Megatron's
// SharedExpertMLP).
//
// Expert parallelism (expert_model_parallel_size ep > 1; Megatron's alltoall token dispatcher):
// rank e of the expert-model-parallel group holds experts [e E/ep, (e + 1) E/ep), registered
// under their global index (local_experts.<global e>, so checkpoints name every expert the same
// whatever ep is). Each rank routes its own tokens; the rows for another rank's experts are sent
// there with an all-to-all, run through the expert, and sent back with a second all-to-all.
// Expert weights carry allreduce = false: their gradients are reduced over the
// expert-data-parallel group.
//
// With tensor parallelism (sequence parallelism on, expert_tensor_parallel_size 1) each rank
// routes its slice of the sequence and runs whole experts: the experts are built for one rank
// (expert_config_), and their weights, replicated over the TP ranks too, are reduced over the
// expert-data-parallel group, which then spans them. Tensor-parallel experts are not here (the
// config validation says so).
#pragma once

#include <memory>
#include <vector>

#include "mcore/nn/module.h"
#include "mcore/transformer/mlp.h"
#include "mcore/transformer/moe/router.h"
#include "mcore/transformer/spec.h"

namespace mcore::transformer::moe {

// Megatron's SequentialMLP: the local experts, each a transformer::MLP.
class SequentialMLP : public nn::Module {
 public:
  // Experts [first_expert, first_expert + num_local_experts) of the layer; expert_parallel marks
  // their weights allreduce = false.
  SequentialMLP(const MLPArgs& args, const MLPSubmodules& submodules, int64_t num_local_experts,
                int64_t first_expert = 0, bool expert_parallel = false);
  // permuted: [rows, hidden], expert e's rows contiguous and counts[e] of them, in expert order.
  Tensor forward(const Tensor& permuted, const std::vector<int64_t>& counts) const;

 private:
  std::vector<std::shared_ptr<MLP>> experts_;
};

class MoELayer : public nn::Module {
 public:
  MoELayer(const MLPArgs& args, const MLPSubmodules& submodules);
  // hidden [s, b, h] -> {output [s, b, h], no bias}.
  LinearOutput forward(const Tensor& hidden) const;

 private:
  // permuted: this rank's (token, slot) rows sorted by global expert, counts[e] for expert e.
  // Returns the experts' outputs in the same order, exchanging rows over the expert-parallel
  // group when ep > 1.
  Tensor run_experts(const Tensor& permuted, const std::vector<int64_t>& counts) const;

  const TransformerConfig* config_;
  // The config the experts are built with: no tensor or sequence parallelism.
  std::unique_ptr<TransformerConfig> expert_config_;
  comm::ProcessGroupPtr ep_group_;  // null without expert parallelism
  std::shared_ptr<TopKRouter> router_;
  std::shared_ptr<SequentialMLP> experts_;
  std::shared_ptr<MLP> shared_experts_;  // null without moe_shared_expert_intermediate_size
};

}  // namespace mcore::transformer::moe

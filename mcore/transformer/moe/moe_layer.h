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
// router learns through the probabilities and the aux loss.
//
// Expert parallelism and tensor-parallel experts are not here yet (the config validation says
// so): every rank holds all experts, and data and pipeline parallelism apply as to dense layers.
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
  SequentialMLP(const MLPArgs& args, const MLPSubmodules& submodules, int64_t num_local_experts);
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
  const TransformerConfig* config_;
  std::shared_ptr<TopKRouter> router_;
  std::shared_ptr<SequentialMLP> experts_;
};

}  // namespace mcore::transformer::moe

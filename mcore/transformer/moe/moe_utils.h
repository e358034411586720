// Pieces of Megatron Core's transformer/moe/moe_utils.py: the Switch Transformer
// load-balancing loss and MoEAuxLossAutoScaler, which carries an auxiliary loss's gradient into
// backward through the tensor it is attached to, scaled like the main loss (1/num_microbatches,
// times the fp16 loss scale: the pipeline schedule sets it per microbatch).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::transformer::moe {

// scores: [tokens, experts] softmax over all experts (differentiable); tokens_per_expert: how many
// (token, slot) pairs each expert received. Megatron's switch_load_balancing_loss_func:
// sum_e(sum_t scores[t, e] * tokens_per_expert[e]) * experts * coeff / (topk * tokens^2).
// Under sequence parallelism each rank holds a slice of the tokens: tokens_per_expert and
// total_tokens are then the whole sequence's, and the ranks' losses sum to the whole loss.
// total_tokens 0: scores.size(0).
Tensor switch_load_balancing_loss(const Tensor& scores,
                                  const std::vector<int64_t>& tokens_per_expert, int64_t topk,
                                  double coeff, int64_t total_tokens = 0);

// Megatron's z_loss_func (ST-MoE): coeff * mean over tokens of logsumexp(logits[t, :])^2, for the
// router logits [tokens, experts]; it keeps the logits small.
Tensor z_loss(const Tensor& logits, double coeff);

// Returns x unchanged in forward; in backward, aux_loss receives the gradient
// aux_loss_backward_scale() (as if aux_loss had been added to the loss) besides x's own.
Tensor attach_aux_loss(const Tensor& x, const Tensor& aux_loss);

// Megatron's MoEAuxLossAutoScaler.set_loss_scale: the gradient the aux loss gets per unit of
// main loss (default 1).
void set_aux_loss_backward_scale(double scale);
double aux_loss_backward_scale();

// Megatron's aux-loss tracker for the "load_balancing_loss" and "z_loss" log fields: each
// router adds its loss / coefficient under the name and its 1-based global layer number (once
// per forward, not again in a recompute); the trainer takes the per-layer sums after each step
// (and clears them).
void record_aux_loss(const std::string& name, int64_t layer_number, double value);
std::vector<double> take_aux_losses(const std::string& name, int64_t num_layers);

}  // namespace mcore::transformer::moe

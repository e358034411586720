// Activation recompute (torch.utils.checkpoint, Megatron's recompute_granularity): run `fn`
// without keeping its intermediate activations, and run it again during backward to get them.
// Randomness inside fn must be keyed (Philox seeds and global indices, as all mcore randomness
// is), so the recomputed forward is bit-identical to the first one.
#pragma once

#include <functional>
#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::autograd {

using CheckpointFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

// Returns fn(inputs); gradients flow to the inputs and to any parameters fn uses.
std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs);

// True on a thread while it recomputes a checkpointed forward in backward: code that records
// statistics of the forward (MoE load-balancing losses) skips the repeat.
bool in_recompute();

}  // namespace mcore::autograd

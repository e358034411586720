// The backward engine: runs the graph from one or more roots in reverse topological order
// (later-created nodes first, as PyTorch does, so gradients of the last layers are ready first
// and DDP can start reducing them while backward continues). Pipeline stages call
// backward({output}, {grad_from_next_stage}).
#pragma once

#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::autograd {

// grads[i] is d(loss)/d(roots[i]); an undefined grad for a one-element root means 1.
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads = {},
              bool retain_graph = false);

// For a backward function that can add its gradient for forward input `input_nr` into what the
// engine has already summed there, more cheaply than producing a full tensor (the embedding's
// scatter-add into the output layer's weight gradient, when the two are tied): while the engine
// runs this node, returns that input's sum so far when the function may update it in place (it
// is defined and its buffer referenced by nothing else), else nullptr. A function that adds its
// gradient through this slot returns an undefined gradient for the input.
Tensor* exclusive_input_grad_slot(size_t input_nr);

// For a backward function that could write a gradient over one of its own saved tensors (the
// cross-entropy's logits gradient over the logits, as Megatron's fused kernel does, saving a
// logits-sized buffer and a pass over fresh memory): true while the engine runs a node without
// retaining the graph and `saved` (a tensor from the node's saved_tensors(), by reference) is
// the only reference to its whole, contiguous buffer, so nothing can read it afterwards.
bool saved_tensor_reusable(const Tensor& saved);

}  // namespace mcore::autograd

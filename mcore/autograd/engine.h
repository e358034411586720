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

}  // namespace mcore::autograd

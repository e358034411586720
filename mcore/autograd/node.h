// The autograd graph. A Node is the backward of one forward op (PyTorch's grad_fn): it maps
// the gradients of the op's outputs to the gradients of its inputs, and its edges point at the
// nodes that produced those inputs. Leaves that require grad end in an AccumulateGrad node,
// which adds into Tensor::grad() and then runs the leaf's post-accumulate hooks (DDP's hook).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "mcore/tensor/tensor.h"

namespace mcore::autograd {

class Node;

struct Edge {
  std::shared_ptr<Node> fn;
  uint32_t input_nr = 0;
  bool valid() const { return fn != nullptr; }
};

// Shape/dtype/device of a forward output, so a missing gradient can be materialized as zeros.
struct OutputMeta {
  Shape shape;
  DType dtype = DType::F32;
  Device device;
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  Node();
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // grads[i] is the gradient of forward output i (undefined if none flowed there).
  // Returns one gradient per next edge (undefined where the input needs none).
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grads) = 0;
  virtual std::string name() const = 0;
  // Frees saved tensors after backward (unless the graph is retained).
  virtual void release_variables() {}

  const std::vector<Edge>& next_edges() const { return next_edges_; }
  void set_next_edges(std::vector<Edge> edges) { next_edges_ = std::move(edges); }
  // Later nodes run first in backward; AccumulateGrad runs as soon as it is ready.
  uint64_t sequence_nr() const { return sequence_nr_; }

  const std::vector<OutputMeta>& output_meta() const { return output_meta_; }
  uint32_t add_output(const Tensor& t);
  size_t num_outputs() const { return output_meta_.size(); }

  // Hooks on the gradient of forward output `output_nr` (Tensor::register_hook on non-leaves).
  void add_pre_hook(uint32_t output_nr, std::function<Tensor(const Tensor&)> hook);
  Tensor run_pre_hooks(uint32_t output_nr, Tensor grad) const;

 protected:
  uint64_t sequence_nr_;
  std::vector<Edge> next_edges_;
  std::vector<OutputMeta> output_meta_;
  std::unordered_map<uint32_t, std::vector<std::function<Tensor(const Tensor&)>>> pre_hooks_;
};

class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const Tensor& variable);
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  std::string name() const override { return "AccumulateGrad"; }

 private:
  std::weak_ptr<TensorImpl> variable_;
};

// The edge a gradient for `t` must flow into: its grad_fn, its (cached) AccumulateGrad if it is
// a leaf that requires grad, or an invalid edge.
Edge gradient_edge(const Tensor& t);
// Makes `t` an output of `node` (sets grad_fn, output_nr, requires_grad).
void set_history(Tensor& t, const std::shared_ptr<Node>& node);

}  // namespace mcore::autograd

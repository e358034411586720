#include "mcore/autograd/node.h"

#include <atomic>
#include <limits>

#include "mcore/ops/elementwise.h"

namespace mcore::autograd {

namespace {
std::atomic<uint64_t> g_next_sequence_nr{0};
}

Node::Node() : sequence_nr_(g_next_sequence_nr.fetch_add(1)) {}

uint32_t Node::add_output(const Tensor& t) {
  output_meta_.push_back({t.shape(), t.dtype(), t.device()});
  return static_cast<uint32_t>(output_meta_.size() - 1);
}

void Node::add_pre_hook(uint32_t output_nr, std::function<Tensor(const Tensor&)> hook) {
  pre_hooks_[output_nr].push_back(std::move(hook));
}

Tensor Node::run_pre_hooks(uint32_t output_nr, Tensor grad) const {
  auto it = pre_hooks_.find(output_nr);
  if (it == pre_hooks_.end()) return grad;
  for (const auto& hook : it->second) {
    Tensor replaced = hook(grad);
    if (replaced.defined()) grad = replaced;
  }
  return grad;
}

AccumulateGrad::AccumulateGrad(const Tensor& variable) : variable_(variable.impl_ptr()) {
  sequence_nr_ = std::numeric_limits<uint64_t>::max();
  output_meta_.push_back({variable.shape(), variable.dtype(), variable.device()});
}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grads) {
  std::shared_ptr<TensorImpl> impl = variable_.lock();
  if (!impl || grads.empty() || !grads[0].defined()) return {};
  Tensor var(impl);
  AutogradMeta& meta = impl->autograd_meta();
  Tensor g = grads[0];
  for (const auto& hook : meta.hooks) {
    Tensor replaced = hook(g);
    if (replaced.defined()) g = replaced;
  }
  if (g.dtype() != var.dtype()) g = g.to(var.dtype());
  if (!meta.grad.defined()) {
    // Take the incoming buffer when nobody else holds it; otherwise copy so later in-place
    // accumulation cannot write into another tensor.
    bool owned = g.is_contiguous() && g.storage().use_count() == 1 && g.offset() == 0 &&
                 g.nbytes() == g.storage()->nbytes();
    meta.grad = owned ? g.detach() : g.clone();
  } else {
    ops::add_(meta.grad, g);
  }
  for (const auto& hook : meta.post_accumulate_hooks) hook(var);
  return {};
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined()) return {};
  if (t.grad_fn()) return {t.grad_fn(), t.output_nr()};
  if (!t.requires_grad()) return {};
  AutogradMeta& meta = t.impl()->autograd_meta();
  std::shared_ptr<Node> acc = meta.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t);
    meta.grad_accumulator = acc;
  }
  return {acc, 0};
}

void set_history(Tensor& t, const std::shared_ptr<Node>& node) {
  AutogradMeta& meta = t.impl()->autograd_meta();
  meta.requires_grad = true;
  meta.grad_fn = node;
  meta.output_nr = node->add_output(t);
}

}  // namespace mcore::autograd

#include "mcore/autograd/engine.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <queue>
#include <string>
#include <unordered_map>

#include "mcore/autograd/node.h"
#include "mcore/ops/elementwise.h"
#include "mcore/tensor/factory.h"

namespace mcore::autograd {

namespace {

struct NodeTask {
  std::vector<Tensor> inputs;  // gradients of the node's forward outputs, summed
  int dependencies = 0;
};

struct LaterFirst {
  bool operator()(const Node* a, const Node* b) const {
    return a->sequence_nr() < b->sequence_nr();
  }
};

// True when a summed gradient's buffer is referenced by nothing else (no other tensor, view or
// saved variable) and covers it exactly, so adding into it in place changes nothing observable.
bool exclusive(const Tensor& slot) {
  return slot.defined() && slot.storage() && slot.impl_ptr().use_count() == 1 &&
         slot.storage().use_count() == 1 && slot.is_contiguous() && slot.offset() == 0 &&
         slot.nbytes() == slot.storage()->nbytes();
}

// Sums a gradient into a node's input slot. When the slot's buffer is referenced by nothing else
// (no other tensor, view or saved variable), the sum is written into it instead of a fresh
// tensor: the residual stream and tied weights receive several gradients per step, and each
// out-of-place add costs an allocation plus a pass over fresh memory.
void accumulate(Tensor& slot, const Tensor& g) {
  if (!g.defined()) return;
  if (!slot.defined()) {
    slot = g;
    return;
  }
  const bool owned = exclusive(slot) && slot.shape() == g.shape() && slot.dtype() == g.dtype() &&
                     slot.device() == g.device() && slot.storage() != g.storage();
  if (owned) {
    ops::add_(slot, g);
  } else {
    slot = ops::add(slot, g);
  }
}

// MCORE_AUTOGRAD_PROFILE=1: time every node's backward and print the totals per node type at
// exit (stderr), to find which backward functions dominate a training step.
struct NodeProfile {
  std::map<std::string, std::pair<double, int64_t>> totals;  // seconds, calls
  ~NodeProfile() {
    for (const auto& [name, t] : totals)
      std::fprintf(stderr, "autograd %-60s %10.2f ms %8lld calls\n", name.c_str(), t.first * 1e3,
                   static_cast<long long>(t.second));
  }
};

// The node the engine is running on this thread and the engine's tasks, for
// exclusive_input_grad_slot().
struct Running {
  Node* node = nullptr;
  std::unordered_map<Node*, NodeTask>* tasks = nullptr;
  bool retain_graph = false;
};
thread_local Running t_running;

// Marks `node` as running on this thread for the scope, restoring the outer value after (an
// inner backward, as activation recompute runs, nests).
struct RunningScope {
  Running saved = t_running;
  RunningScope(Node* node, std::unordered_map<Node*, NodeTask>* tasks, bool retain_graph) {
    t_running = {node, tasks, retain_graph};
  }
  ~RunningScope() { t_running = saved; }
};

std::vector<Tensor> apply_node(Node* node, std::vector<Tensor>&& inputs) {
  static const bool enabled = std::getenv("MCORE_AUTOGRAD_PROFILE") != nullptr;
  if (!enabled) return node->apply(std::move(inputs));
  static NodeProfile profile;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Tensor> out = node->apply(std::move(inputs));
  auto& e = profile.totals[node->name()];
  e.first += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++e.second;
  return out;
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
              bool retain_graph) {
  MCORE_CHECK(grads.empty() || grads.size() == roots.size())
      << "backward: " << roots.size() << " roots but " << grads.size() << " gradients";
  NoGradGuard no_grad;

  std::vector<Edge> root_edges;
  std::vector<Tensor> root_grads;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    MCORE_CHECK(r.defined()) << "backward: root " << i << " is undefined";
    MCORE_CHECK(r.requires_grad())
        << "backward: root " << i << " " << r.str()
        << " does not require grad and has no grad_fn (was it computed under NoGradGuard, or "
           "from tensors that do not require grad?)";
    Tensor g = grads.empty() ? Tensor() : grads[i];
    if (!g.defined()) {
      MCORE_CHECK(r.numel() == 1) << "backward: a gradient must be given for non-scalar root "
                                  << r.str();
      g = ones(r.shape(), {r.dtype(), r.device()});
    }
    MCORE_CHECK(g.shape() == r.shape()) << "backward: gradient shape " << shape_str(g.shape())
                                        << " does not match root shape " << shape_str(r.shape());
    root_edges.push_back(gradient_edge(r));
    root_grads.push_back(g);
  }

  // Count, for every reachable node, how many edges point at it.
  std::unordered_map<Node*, NodeTask> tasks;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep_alive;
  std::vector<Node*> stack;
  for (const Edge& e : root_edges) {
    if (keep_alive.emplace(e.fn.get(), e.fn).second) stack.push_back(e.fn.get());
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges()) {
      if (!e.valid()) continue;
      tasks[e.fn.get()].dependencies++;
      if (keep_alive.emplace(e.fn.get(), e.fn).second) stack.push_back(e.fn.get());
    }
  }

  for (size_t i = 0; i < root_edges.size(); ++i) {
    NodeTask& t = tasks[root_edges[i].fn.get()];
    t.inputs.resize(root_edges[i].fn->num_outputs());
    accumulate(t.inputs[root_edges[i].input_nr], root_grads[i]);
  }

  std::priority_queue<Node*, std::vector<Node*>, LaterFirst> ready;
  for (auto& [node, task] : tasks) {
    if (task.dependencies == 0) ready.push(node);
  }
  while (!ready.empty()) {
    Node* node = ready.top();
    ready.pop();
    NodeTask& task = tasks[node];
    std::vector<Tensor> inputs = std::move(task.inputs);
    inputs.resize(node->num_outputs());
    for (uint32_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].defined()) inputs[i] = node->run_pre_hooks(i, inputs[i]);
    }
    std::vector<Tensor> outputs;
    {
      RunningScope running(node, &tasks, retain_graph);
      outputs = apply_node(node, std::move(inputs));
    }
    if (!retain_graph) node->release_variables();
    const auto& edges = node->next_edges();
    MCORE_CHECK(outputs.size() == edges.size() || outputs.empty())
        << node->name() << " returned " << outputs.size() << " gradients for " << edges.size()
        << " inputs";
    for (size_t i = 0; i < edges.size(); ++i) {
      const Edge& e = edges[i];
      if (!e.valid()) continue;
      NodeTask& next = tasks[e.fn.get()];
      if (!outputs.empty() && outputs[i].defined()) {
        if (next.inputs.size() < e.fn->num_outputs()) next.inputs.resize(e.fn->num_outputs());
        accumulate(next.inputs[e.input_nr], outputs[i]);
      }
      if (--next.dependencies == 0) ready.push(e.fn.get());
    }
  }
}

Tensor* exclusive_input_grad_slot(size_t input_nr) {
  if (!t_running.node) return nullptr;
  const auto& edges = t_running.node->next_edges();
  if (input_nr >= edges.size() || !edges[input_nr].valid()) return nullptr;
  const Edge& e = edges[input_nr];
  auto it = t_running.tasks->find(e.fn.get());
  if (it == t_running.tasks->end() || e.input_nr >= it->second.inputs.size()) return nullptr;
  Tensor& slot = it->second.inputs[e.input_nr];
  return exclusive(slot) ? &slot : nullptr;
}

bool saved_tensor_reusable(const Tensor& saved) {
  return t_running.node && !t_running.retain_graph && exclusive(saved);
}

}  // namespace mcore::autograd

namespace mcore {

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  autograd::backward({*this}, {grad}, retain_graph);
}

void Tensor::register_hook(std::function<Tensor(const Tensor&)> hook) const {
  MCORE_CHECK(requires_grad()) << "register_hook on a tensor that does not require grad";
  if (is_leaf()) {
    impl()->autograd_meta().hooks.push_back(std::move(hook));
  } else {
    grad_fn()->add_pre_hook(output_nr(), std::move(hook));
  }
}

void Tensor::register_post_accumulate_grad_hook(std::function<void(Tensor&)> hook) const {
  MCORE_CHECK(requires_grad() && is_leaf())
      << "register_post_accumulate_grad_hook needs a leaf tensor that requires grad";
  impl()->autograd_meta().post_accumulate_hooks.push_back(std::move(hook));
}

}  // namespace mcore

#include "mcore/transformer/moe/moe_layer.h"

#include <numeric>
#include <string>

#include "mcore/base/error.h"
#include "mcore/comm/local_backend.h"
#include "mcore/nn/functional.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/mappings.h"

namespace mcore::transformer::moe {

namespace {

// A container module, so the experts get Megatron's names local_experts.<e>.
struct ExpertList : nn::Module {
  void add(const std::string& name, std::shared_ptr<nn::Module> m) { register_module(name, m); }
};

// Rows idx of x [n, h] as [idx.size(), h]: a gather whose backward scatter-adds.
Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& idx) {
  if (idx.empty()) return F::narrow(x, 0, 0, 0);  // keeps the graph, as an empty gather would
  return F::embedding(from_vector<int64_t>(idx).to(x.device()), x);
}

}  // namespace

SequentialMLP::SequentialMLP(const MLPArgs& args, const MLPSubmodules& subs,
                             int64_t num_local_experts, int64_t first_expert,
                             bool expert_parallel) {
  auto local = std::make_shared<ExpertList>();
  for (int64_t e = first_expert; e < first_expert + num_local_experts; ++e) {
    MLPArgs a = args;
    // The global index names the expert and keys its initialization: the same weights under
    // any expert-parallel size.
    a.prefix = args.param_name("local_experts." + std::to_string(e));
    a.ffn_hidden_size = args.config->moe_ffn_hidden_size;
    experts_.push_back(std::make_shared<MLP>(a, subs));
    local->add(std::to_string(e), experts_.back());
    if (expert_parallel)
      for (auto& p : experts_.back()->parameters()) p->allreduce = false;
  }
  register_module("local_experts", local);
}

Tensor SequentialMLP::forward(const Tensor& permuted, const std::vector<int64_t>& counts) const {
  MCORE_CHECK(counts.size() == experts_.size())
      << "SequentialMLP: " << counts.size() << " token counts for " << experts_.size()
      << " experts";
  std::vector<Tensor> outs;
  int64_t offset = 0;
  for (size_t e = 0; e < experts_.size(); ++e) {
    // Every expert runs, on zero rows too (as Megatron's SequentialMLP): its weights then get a
    // zero gradient, so DDP's overlapped reduction sees every weight's gradient ready in every
    // step on every rank, whatever the routing.
    const Tensor rows = F::narrow(permuted, 0, offset, counts[e]);
    LinearOutput o = experts_[e]->forward(rows);
    outs.push_back(o.output_bias.defined() ? F::add(o.output, o.output_bias) : o.output);
    offset += counts[e];
  }
  MCORE_CHECK(offset == permuted.size(0))
      << "SequentialMLP: counts sum to " << offset << " of " << permuted.size(0) << " rows";
  return outs.size() == 1 ? outs[0] : F::cat(outs, 0);
}

MoELayer::MoELayer(const MLPArgs& args, const MLPSubmodules& subs) : config_(args.config) {
  const TransformerConfig& c = *config_;
  MCORE_CHECK(c.num_moe_experts > 0) << "MoELayer: the config has no experts (num_moe_experts)";
  SlotArgs ra = args;
  ra.prefix = args.param_name("router");
  router_ = register_module("router", std::make_shared<TopKRouter>(ra));
  MLPArgs ea = args;
  ea.prefix = args.param_name("experts");
  expert_config_ = std::make_unique<TransformerConfig>(c);
  expert_config_->tensor_model_parallel_size = 1;
  expert_config_->sequence_parallel = false;
  ea.config = expert_config_.get();
  ea.tp_group = comm::make_local_group();
  const int64_t ep = c.expert_model_parallel_size;
  int64_t first = 0;
  if (ep > 1) {
    MCORE_CHECK(parallel_state::model_parallel_is_initialized())
        << "MoELayer: expert_model_parallel_size " << ep
        << " needs parallel_state::initialize_model_parallel(..., expert_model_parallel_size)";
    ep_group_ = parallel_state::get_expert_model_parallel_group();
    MCORE_CHECK(ep_group_->size() == ep)
        << "MoELayer: config.expert_model_parallel_size is " << ep
        << " but the expert-model-parallel group has " << ep_group_->size() << " ranks";
    first = ep_group_->rank() * (c.num_moe_experts / ep);
  }
  // Expert weights are replicated over other ranks than the dense ones whenever experts are
  // spread (ep > 1) or tokens are (tp > 1): allreduce = false puts them in DDP's expert buffers.
  const bool expert_buffers = ep > 1 || c.tensor_model_parallel_size > 1;
  if (c.moe_shared_expert_intermediate_size > 0) {
    // Megatron's SharedExpertMLP: a dense MLP of the layer's own (tensor-parallel) config.
    MLPArgs sa = args;
    sa.prefix = args.param_name("shared_experts");
    sa.ffn_hidden_size = c.moe_shared_expert_intermediate_size;
    shared_experts_ = register_module("shared_experts", std::make_shared<MLP>(sa, subs));
  }
  experts_ = register_module(
      "experts",
      std::make_shared<SequentialMLP>(ea, subs, c.num_moe_experts / ep, first, expert_buffers));
}

Tensor MoELayer::run_experts(const Tensor& permuted, const std::vector<int64_t>& counts) const {
  if (!ep_group_) return experts_->forward(permuted, counts);
  const int64_t ep = ep_group_->size();
  const int64_t local = static_cast<int64_t>(counts.size()) / ep;
  // counts is ordered by destination rank, then by its local expert: send it as it is, and
  // receive every source's counts for this rank's experts.
  Tensor sent_counts = from_vector<int64_t>(counts).to(comm::group_device(*ep_group_));
  Tensor got_counts = empty({ep * local}, {DType::I64, sent_counts.device()});
  ep_group_->all_to_all_single(got_counts, sent_counts);
  const std::vector<int64_t> got = to_vector<int64_t>(got_counts.to(Device::cpu()));
  std::vector<int64_t> send_splits(static_cast<size_t>(ep), 0), recv_splits(send_splits);
  for (int64_t d = 0; d < ep; ++d)
    for (int64_t i = 0; i < local; ++i) {
      send_splits[d] += counts[d * local + i];
      recv_splits[d] += got[d * local + i];
    }
  // Received rows are grouped by source, then by local expert; the experts want them grouped by
  // expert: the permutation and its inverse.
  std::vector<int64_t> start(static_cast<size_t>(ep * local));
  for (int64_t k = 0, off = 0; k < ep * local; ++k) {
    start[k] = off;
    off += got[k];
  }
  std::vector<int64_t> by_expert, local_counts(static_cast<size_t>(local), 0);
  for (int64_t i = 0; i < local; ++i)
    for (int64_t src = 0; src < ep; ++src) {
      const int64_t k = src * local + i;
      for (int64_t j = 0; j < got[k]; ++j) by_expert.push_back(start[k] + j);
      local_counts[i] += got[k];
    }
  std::vector<int64_t> by_source(by_expert.size());
  for (size_t p = 0; p < by_expert.size(); ++p) by_source[by_expert[p]] = static_cast<int64_t>(p);
  const Tensor received =
      tensor_parallel::all_to_all(permuted, recv_splits, send_splits, ep_group_);
  const Tensor out = experts_->forward(gather_rows(received, by_expert), local_counts);
  return tensor_parallel::all_to_all(gather_rows(out, by_source), send_splits, recv_splits,
                                     ep_group_);
}

LinearOutput MoELayer::forward(const Tensor& hidden) const {
  const TransformerConfig& c = *config_;
  const Shape shape = hidden.shape();
  const int64_t h = shape.back();
  const int64_t tokens = hidden.numel() / h, k = c.moe_router_topk;
  const Tensor x = F::reshape(hidden, {tokens, h});
  const Routing r = router_->forward(x);

  // (token, slot) pairs sorted by expert, stable: pair p = t * k + j goes to position pos[p].
  const int64_t pairs = tokens * k;
  std::vector<int64_t> order(static_cast<size_t>(pairs));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return r.experts[a] < r.experts[b]; });
  std::vector<int64_t> token_of(static_cast<size_t>(pairs)), pos(static_cast<size_t>(pairs));
  for (int64_t i = 0; i < pairs; ++i) {
    token_of[i] = order[i] / k;
    pos[order[i]] = i;
  }
  const Tensor permuted = gather_rows(x, token_of);                      // [pairs, h]
  const Tensor expert_out = run_experts(permuted, r.tokens_per_expert);  // [pairs, h]
  const Tensor back = F::reshape(gather_rows(expert_out, pos), {tokens, k, h});
  const Tensor weights = F::reshape(F::to(r.probs, back.dtype()), {tokens, k, 1});
  Tensor out = F::reshape(F::sum(F::mul(back, weights), {1}), shape);  // [s, b, h]
  if (shared_experts_) {
    const LinearOutput so = shared_experts_->forward(hidden);
    out = F::add(out, so.output_bias.defined() ? F::add(so.output, so.output_bias) : so.output);
  }
  return {out, Tensor()};
}

}  // namespace mcore::transformer::moe

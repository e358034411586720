#include "mcore/transformer/moe/moe_layer.h"

#include <numeric>
#include <string>

#include "mcore/base/error.h"
#include "mcore/nn/functional.h"
#include "mcore/tensor/factory.h"

namespace mcore::transformer::moe {

namespace {

// A container module, so the experts get Megatron's names local_experts.<e>.
struct ExpertList : nn::Module {
  void add(const std::string& name, std::shared_ptr<nn::Module> m) { register_module(name, m); }
};

// Rows idx of x [n, h] as [idx.size(), h]: a gather whose backward scatter-adds.
Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& idx) {
  return F::embedding(from_vector<int64_t>(idx).to(x.device()), x);
}

}  // namespace

SequentialMLP::SequentialMLP(const MLPArgs& args, const MLPSubmodules& subs,
                             int64_t num_local_experts) {
  auto local = std::make_shared<ExpertList>();
  for (int64_t e = 0; e < num_local_experts; ++e) {
    MLPArgs a = args;
    a.prefix = args.param_name("local_experts." + std::to_string(e));
    a.ffn_hidden_size = args.config->moe_ffn_hidden_size;
    experts_.push_back(std::make_shared<MLP>(a, subs));
    local->add(std::to_string(e), experts_.back());
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
    if (counts[e] == 0) continue;  // an expert with no tokens this step gets no gradient
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
  experts_ =
      register_module("experts", std::make_shared<SequentialMLP>(ea, subs, c.num_moe_experts));
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
  const Tensor permuted = gather_rows(x, token_of);                            // [pairs, h]
  const Tensor expert_out = experts_->forward(permuted, r.tokens_per_expert);  // [pairs, h]
  const Tensor back = F::reshape(gather_rows(expert_out, pos), {tokens, k, h});
  const Tensor weights = F::reshape(F::to(r.probs, back.dtype()), {tokens, k, 1});
  const Tensor out = F::sum(F::mul(back, weights), {1});  // [tokens, h]
  return {F::reshape(out, shape), Tensor()};
}

}  // namespace mcore::transformer::moe

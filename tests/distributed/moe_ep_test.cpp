// Expert parallelism under MPI (2 and 4 ranks): a mixture-of-experts GPTModel with its experts
// spread over every rank (expert_model_parallel_size = world), each rank feeding its own tokens,
// must give each rank the per-token losses, router and attention gradients of the same model
// run whole on that rank alone (experts are keyed by their global names, so both start equal).
// An expert's gradient is then the sum over all ranks' tokens: it must equal the whole model's
// gradient summed over the ranks. Short sequences can leave a rank with no token for any of
// their experts in some layers; they must still take part in both all-to-alls. fp32 tolerance
// 1e-5 relative (only summation order differs).
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "mcore/base/rng_state.h"
#include "mcore/comm/distributed.h"
#include "mcore/comm/local_backend.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/nn/functional.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor_parallel/mappings.h"
#include "tests/common/test_util.h"

namespace mcore::testing {
namespace {

namespace ps = parallel_state;

constexpr double kTol = 1e-5;
constexpr int64_t kVocab = 64;

transformer::TransformerConfig moe_config(int ep) {
  transformer::TransformerConfig c;
  c.num_layers = 2;
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.ffn_hidden_size = 64;
  c.normalization = "RMSNorm";
  c.gated_linear_unit = true;
  c.activation_func = transformer::ActivationFunc::kSilu;
  c.add_bias_linear = false;
  c.position_embedding_type = "rope";
  c.hidden_dropout = 0.0;
  c.attention_dropout = 0.0;
  c.num_moe_experts = 8;
  c.moe_ffn_hidden_size = 48;
  c.moe_router_topk = 2;
  c.moe_aux_loss_coeff = 0.01;
  c.expert_model_parallel_size = ep;
  return c;
}

struct Result {
  Tensor loss;
  std::map<std::string, Tensor> grads;
};

Result run(int ep, int64_t seq, comm::ProcessGroupPtr tp_group) {
  models::GPTModelOptions o;
  o.share_embeddings_and_output_weights = false;
  o.tp_group = std::move(tp_group);
  models::GPTModel model(moe_config(ep), transformer::get_gpt_layer_local_spec(false), kVocab, 32,
                         o);
  const int64_t b = 2, rank = comm::get_rank();
  Tensor ids = empty({b, seq}, DType::I64), labels = empty({b, seq}, DType::I64);
  for (int64_t i = 0; i < b * seq; ++i) {  // different tokens on every rank
    ids.data<int64_t>()[i] = (i * 37 + 11 + rank * 13) % kVocab;
    labels.data<int64_t>()[i] = (i * 53 + 5 + rank * 7) % kVocab;
  }
  set_rng_state({99, 1});
  Result r;
  r.loss = model.forward(ids, Tensor(), Tensor(), labels);
  F::sum(r.loss).backward();
  for (auto& [name, p] : model.named_parameters()) {
    Tensor g = p->grad();
    r.grads[name] = g.defined() ? g : zeros_like(*p);
  }
  return r;
}

TEST(ExpertParallel, MatchesEveryExpertOnEveryRank) {
  const int world = comm::get_world_size();
  for (int64_t seq : {16, 2}) {
    SCOPED_TRACE("seq " + std::to_string(seq));
    const Result ref = run(1, seq, comm::make_local_group());
    ps::initialize_model_parallel(1, 1, std::nullopt, 1, world);
    const Result got = run(world, seq, ps::get_tensor_model_parallel_group());
    EXPECT_LT(max_rel_error(got.loss, ref.loss), kTol);
    // The whole model's expert gradients on each rank's tokens, summed over the ranks (every
    // rank reduces every expert, in the same order).
    std::map<std::string, Tensor> expect = ref.grads;
    for (auto& [name, g] : expect)
      if (name.find("local_experts") != std::string::npos)
        g = tensor_parallel::all_reduce_copy(g, comm::world());
    // Each rank holds world-th of the experts: 8 / world local experts per layer.
    const size_t experts_per_rank = 8 / static_cast<size_t>(world);
    size_t expert_params = 0;
    for (const auto& [name, g] : got.grads) {
      SCOPED_TRACE(name);
      ASSERT_TRUE(expect.count(name));
      if (name.find("local_experts") != std::string::npos) ++expert_params;
      EXPECT_LT(max_rel_error(g, expect.at(name)), kTol);
    }
    // 2 layers x local experts x (fc1, fc2).
    EXPECT_EQ(expert_params, 2 * experts_per_rank * 2);
    ps::destroy_model_parallel();
  }
}

}  // namespace
}  // namespace mcore::testing

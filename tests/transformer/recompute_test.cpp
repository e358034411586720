// Activation recompute: every granularity/method gives exactly the gradients of the plain run
// (the recomputed forward replays the same kernels on the same inputs, and dropout masks are
// keyed by (seed, step, name, index), so it is bit-identical), with hidden and attention dropout
// on; and the activation memory kept by the forward drops as expected. The bytes are printed
// and recorded as test properties.
#include <gtest/gtest.h>

#include <map>

#include "mcore/base/rng_state.h"
#include "mcore/comm/local_backend.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/nn/functional.h"
#include "mcore/tensor/allocator.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore {
namespace {

using transformer::TransformerConfig;

TransformerConfig config(const std::string& granularity, const std::string& method, int n) {
  TransformerConfig c;
  c.num_layers = 4;
  c.hidden_size = 64;
  c.num_attention_heads = 4;
  c.num_query_groups = 2;
  c.ffn_hidden_size = 160;
  c.normalization = "RMSNorm";
  c.gated_linear_unit = true;
  c.activation_func = transformer::ActivationFunc::kSilu;
  c.add_bias_linear = false;
  c.position_embedding_type = "rope";
  c.hidden_dropout = 0.1;
  c.attention_dropout = 0.1;  // the unfused path, which keeps [np, b, s, s] probabilities
  c.recompute_granularity = granularity;
  c.recompute_method = method;
  c.recompute_num_layers = n;
  return c;
}

struct RunResult {
  double loss;
  int64_t activation_bytes;  // allocated after forward minus before (what backward will use)
  std::map<std::string, Tensor> grads;
};

RunResult run(const TransformerConfig& c) {
  models::GPTModelOptions o;
  o.tp_group = comm::make_local_group();
  models::GPTModel model(c, transformer::get_gpt_layer_local_spec(), 128, 128, o);
  model.train();
  Tensor ids = empty({2, 96}, DType::I64), labels = empty({2, 96}, DType::I64);
  for (int64_t i = 0; i < 2 * 96; ++i) {
    ids.data<int64_t>()[i] = (i * 37) % 128;
    labels.data<int64_t>()[i] = (i * 11 + 3) % 128;
  }
  set_rng_state({77, 5});
  RunResult r;
  const int64_t before = cpu_memory_stats().allocated_bytes;
  Tensor loss = F::mean(model.forward(ids, Tensor(), Tensor(), labels));
  r.activation_bytes = cpu_memory_stats().allocated_bytes - before;
  loss.backward();
  r.loss = loss.item();
  for (auto& [name, p] : model.named_parameters()) r.grads[name] = p->grad();
  return r;
}

TEST(Recompute, IdenticalGradientsAndLessActivationMemory) {
  RunResult plain = run(config("", "", 0));
  struct Case {
    const char* granularity;
    const char* method;
    int n;
  };
  const Case cases[] = {{"selective", "", 0},
                        {"full", "uniform", 1},
                        {"full", "uniform", 2},
                        {"full", "block", 2},
                        {"full", "block", 4}};
  std::map<std::string, int64_t> bytes;
  bytes["none"] = plain.activation_bytes;
  std::cout << "activation bytes, 4 layers, b=2 s=96 h=64: none " << plain.activation_bytes << "\n";
  for (const Case& k : cases) {
    std::string label = std::string(k.granularity) + (k.method[0] ? "/" : "") + k.method +
                        (k.n ? "/" + std::to_string(k.n) : "");
    SCOPED_TRACE(label);
    RunResult r = run(config(k.granularity, k.method, k.n));
    EXPECT_EQ(r.loss, plain.loss);
    for (auto& [name, g] : plain.grads) {
      SCOPED_TRACE(name);
      EXPECT_EQ(testing::max_rel_error(r.grads.at(name), g), 0.0);
    }
    bytes[label] = r.activation_bytes;
    std::cout << "  " << label << " " << r.activation_bytes << " ("
              << 100.0 * r.activation_bytes / plain.activation_bytes << "% of none)\n";
    ::testing::Test::RecordProperty("activation_bytes_" + label,
                                    std::to_string(r.activation_bytes));
  }
  // Selective drops the [np, b, s, s] probabilities (and dropout outputs) of every layer.
  EXPECT_LT(bytes["selective"], plain.activation_bytes * 0.8);
  // Full recompute of every layer keeps only each layer's input [s, b, h] (+ the embedding and
  // logits): far below selective.
  EXPECT_LT(bytes["full/uniform/1"], bytes["selective"] / 2);
  EXPECT_LT(bytes["full/uniform/2"], bytes["selective"] / 2);
  // Block: recomputing 2 of 4 layers keeps about half the plain run's layer activations.
  EXPECT_LT(bytes["full/block/2"], plain.activation_bytes * 0.7);
  EXPECT_GT(bytes["full/block/2"], bytes["full/block/4"]);
  EXPECT_LE(bytes["full/block/4"], bytes["full/uniform/1"] * 1.01);
}

TEST(Recompute, DropoutFollowsTheRngStep) {
  TransformerConfig c = config("", "", 0);
  models::GPTModelOptions o;
  o.tp_group = comm::make_local_group();
  models::GPTModel model(c, transformer::get_gpt_layer_local_spec(), 128, 128, o);
  Tensor ids = arange(0, 2 * 16, 1).view({2, 16});
  NoGradGuard no_grad;
  auto loss_at = [&](uint64_t step) {
    set_rng_state({77, step});
    return F::mean(model.forward(ids, Tensor(), Tensor(), ids)).item();
  };
  EXPECT_EQ(loss_at(3), loss_at(3));
  EXPECT_NE(loss_at(3), loss_at(4));
  model.eval();
  EXPECT_EQ(loss_at(3), loss_at(4));  // no dropout in eval
}

}  // namespace
}  // namespace mcore

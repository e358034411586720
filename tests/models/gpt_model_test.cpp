// GPTModel structure: Megatron's state-dict names, pipeline stages (pre_process /
// post_process with a global layer range) reproducing the one-stage model exactly because init
// is keyed by global names, tied embeddings across stages, RoPE variants, and clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "mcore/comm/local_backend.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/models/presets.h"
#include "mcore/nn/functional.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore::models {
namespace {

transformer::TransformerConfig gpt2_tiny(int layers = 4) {
  transformer::TransformerConfig c = get_preset("gpt2-tiny").config;
  c.num_layers = layers;
  c.hidden_dropout = 0.0;
  c.attention_dropout = 0.0;
  return c;
}

GPTModelOptions local(bool tied) {
  GPTModelOptions o;
  o.share_embeddings_and_output_weights = tied;
  o.tp_group = comm::make_local_group();
  return o;
}

Tensor ids_tensor(int64_t b, int64_t s, int64_t vocab, int salt = 0) {
  Tensor t = empty({b, s}, DType::I64);
  for (int64_t i = 0; i < b * s; ++i) t.data<int64_t>()[i] = (i * 31 + 7 + salt) % vocab;
  return t;
}

TEST(GPTModel, MegatronStateDictNames) {
  GPTModel m(gpt2_tiny(2), transformer::get_gpt_layer_local_spec(), 211, 64, local(true));
  auto sd = m.state_dict();
  for (const char* k :
       {"embedding.word_embeddings.weight", "embedding.position_embeddings.weight",
        "decoder.layers.0.input_layernorm.weight", "decoder.layers.0.input_layernorm.bias",
        "decoder.layers.1.self_attention.linear_qkv.weight",
        "decoder.layers.1.self_attention.linear_qkv.bias",
        "decoder.layers.1.self_attention.linear_proj.weight",
        "decoder.layers.1.self_attention.linear_proj.bias",
        "decoder.layers.1.pre_mlp_layernorm.weight", "decoder.layers.1.mlp.linear_fc1.weight",
        "decoder.layers.1.mlp.linear_fc2.bias", "decoder.final_layernorm.weight"}) {
    EXPECT_TRUE(sd.count(k)) << k;
  }
  EXPECT_FALSE(sd.count("output_layer.weight"));  // tied
  EXPECT_EQ(sd.at("decoder.layers.0.self_attention.linear_qkv.weight").shape(), (Shape{192, 64}));
}

TEST(GPTModel, PipelineStagesReproduceTheWholeModel) {
  const int64_t vocab = 211;
  Tensor ids = ids_tensor(2, 9, vocab), labels = ids_tensor(2, 9, vocab, 5);
  for (bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    GPTModel whole(gpt2_tiny(), transformer::get_gpt_layer_local_spec(), vocab, 64, local(tied));
    Tensor ref_loss = F::mean(whole.forward(ids, Tensor(), Tensor(), labels));
    ref_loss.backward();

    GPTModelOptions o0 = local(tied), o1 = local(tied);
    o0.post_process = false;
    o0.num_layers_in_stage = 2;
    o1.pre_process = false;
    o1.layer_offset = 2;
    GPTModel stage0(gpt2_tiny(), transformer::get_gpt_layer_local_spec(), vocab, 64, o0);
    GPTModel stage1(gpt2_tiny(), transformer::get_gpt_layer_local_spec(), vocab, 64, o1);
    Tensor hidden = stage0.forward(ids);  // [s, b, h]
    Tensor received = hidden.detach();
    received.set_requires_grad(true);
    stage1.set_input_tensor(received);
    Tensor loss = F::mean(stage1.forward(Tensor(), Tensor(), Tensor(), labels));
    EXPECT_NEAR(loss.item(), ref_loss.item(), 1e-6 * std::abs(ref_loss.item()));
    loss.backward();
    hidden.backward(received.grad());

    std::map<std::string, Tensor> grads;
    for (auto& [n, p] : stage0.named_parameters()) grads[n] = p->grad();
    for (auto& [n, p] : stage1.named_parameters()) {
      // The last stage's copy of a tied output weight: its gradient adds to the embedding's
      // (what Megatron's embedding-group all-reduce does).
      std::string name =
          (tied && n == "output_layer.weight") ? "embedding.word_embeddings.weight" : n;
      ASSERT_TRUE(!grads.count(name) || tied) << n << " appears on both stages";
      grads[name] = grads.count(name) ? F::add(grads[name], p->grad()) : p->grad();
    }
    auto named = whole.named_parameters();
    EXPECT_EQ(grads.size(), named.size());
    for (auto& [n, p] : named) {
      SCOPED_TRACE(n);
      ASSERT_TRUE(grads.count(n));
      EXPECT_LT(testing::max_rel_error(grads[n], p->grad()), 1e-5);
    }
  }
}

TEST(GPTModel, RopeVariantsRun) {
  for (const char* variant : {"rope", "rope_llama3", "yarn", "partial"}) {
    SCOPED_TRACE(variant);
    transformer::TransformerConfig c = get_preset("llama3-tiny").config;
    std::string v = variant;
    if (v == "rope_llama3") {
      c.rope_scaling = true;
      c.rope_scaling_original_max_position_embeddings = 16;  // scale some of the 8 frequencies
    } else if (v == "yarn") {
      c.position_embedding_type = "yarn";
      c.yarn_rotary_scaling_factor = 4.0;
      c.yarn_original_max_position_embeddings = 16;
    } else if (v == "partial") {
      c.rotary_percent = 0.5;
    }
    GPTModel m(c, transformer::get_gpt_layer_local_spec(), 256, 64, local(false));
    Tensor logits = m.forward(ids_tensor(2, 12, 256));
    EXPECT_EQ(logits.shape(), (Shape{2, 12, 256}));
    for (float x : to_vector<float>(logits)) ASSERT_TRUE(std::isfinite(x));
  }
}

TEST(GPTModel, ClearErrors) {
  GPTModel m(gpt2_tiny(2), transformer::get_gpt_layer_local_spec(), 211, 64, local(true));
  try {
    m.forward(ids_tensor(2, 9, 211), Tensor(), Tensor(), ids_tensor(9, 2, 211));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("labels must be [b, s] = [2, 9]"), std::string::npos)
        << e.what();
  }
  try {
    m.forward(ids_tensor(1, 65, 211));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds max_sequence_length 64"), std::string::npos)
        << e.what();
  }
  GPTModelOptions o = local(false);
  o.pre_process = false;
  GPTModel late(gpt2_tiny(2), transformer::get_gpt_layer_local_spec(), 211, 64, o);
  EXPECT_THROW(late.forward(Tensor()), Error);
  auto c = gpt2_tiny(2);
  c.tensor_model_parallel_size = 2;
  try {
    GPTModel bad(c, transformer::get_gpt_layer_local_spec(), 212, 64, local(false));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor-parallel group has 1 ranks"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace mcore::models

// TransformerConfig: Megatron's derived defaults and validation messages that name the fields
// and the fix.
#include <gtest/gtest.h>

#include "mcore/transformer/transformer_config.h"

namespace mcore::transformer {
namespace {

TransformerConfig base() {
  TransformerConfig c;
  c.num_layers = 2;
  c.hidden_size = 64;
  c.num_attention_heads = 8;
  return c;
}

std::string error_of(TransformerConfig c) {
  try {
    c.finalize();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TransformerConfig, FinalizeFillsMegatronDefaults) {
  TransformerConfig c = base().finalized();
  EXPECT_EQ(c.ffn_hidden_size, 256);
  EXPECT_EQ(c.kv_channels, 8);
  EXPECT_EQ(c.num_query_groups, 8);
  EXPECT_EQ(c.query_projection_size(), 64);
  EXPECT_EQ(c.kv_projection_size(), 64);
  EXPECT_DOUBLE_EQ(c.hidden_dropout, 0.1);
  EXPECT_DOUBLE_EQ(c.attention_dropout, 0.1);
  EXPECT_EQ(c.normalization, "LayerNorm");
  EXPECT_TRUE(c.add_bias_linear);
  EXPECT_DOUBLE_EQ(c.output_layer_init_std(), 0.02 / 2.0);  // std / sqrt(2 * 2 layers)
  // Explicit values are kept.
  TransformerConfig d = base();
  d.kv_channels = 16;
  d.num_query_groups = 2;
  d.ffn_hidden_size = 100;
  d.finalize();
  EXPECT_EQ(d.kv_channels, 16);
  EXPECT_EQ(d.query_projection_size(), 128);
  EXPECT_EQ(d.kv_projection_size(), 32);
  EXPECT_EQ(d.ffn_hidden_size, 100);
}

TEST(TransformerConfig, SequenceParallelNeedsTensorParallel) {
  TransformerConfig c = base();
  c.sequence_parallel = true;  // Megatron-LM switches it off with tp = 1
  EXPECT_FALSE(c.finalized().sequence_parallel);
  c.tensor_model_parallel_size = 2;
  EXPECT_TRUE(c.finalized().sequence_parallel);
}

TEST(TransformerConfig, ValidationNamesFieldsAndFix) {
  TransformerConfig c = base();
  c.tensor_model_parallel_size = 3;
  std::string e = error_of(c);
  EXPECT_NE(e.find("num_attention_heads (8)"), std::string::npos) << e;
  EXPECT_NE(e.find("tensor_model_parallel_size (3)"), std::string::npos) << e;

  c = base();
  c.num_query_groups = 3;
  e = error_of(c);
  EXPECT_NE(e.find("num_query_groups (3)"), std::string::npos) << e;

  c = base();
  c.num_query_groups = 2;
  c.tensor_model_parallel_size = 4;
  e = error_of(c);
  EXPECT_NE(e.find("num_query_groups (2) must be a multiple of tensor_model_parallel_size (4)"),
            std::string::npos)
      << e;

  c = base();
  c.hidden_size = 60;
  e = error_of(c);
  EXPECT_NE(e.find("hidden_size (60)"), std::string::npos) << e;
  EXPECT_NE(e.find("kv_channels"), std::string::npos) << e;

  c = base();
  c.normalization = "BatchNorm";
  EXPECT_NE(error_of(c).find("\"BatchNorm\""), std::string::npos);

  c = base();
  c.recompute_method = "uniform";
  EXPECT_NE(error_of(c).find("recompute_granularity"), std::string::npos);

  c = base();
  c.recompute_granularity = "full";
  EXPECT_NE(error_of(c).find("recompute_method"), std::string::npos);
  c.recompute_method = "block";
  EXPECT_NE(error_of(c).find("recompute_num_layers > 0"), std::string::npos);
  c.recompute_num_layers = 3;
  EXPECT_NE(error_of(c).find("recompute_num_layers (3)"), std::string::npos);
  c.recompute_num_layers = 2;
  EXPECT_EQ(error_of(c), "");

  c = base();
  c.position_embedding_type = "rope";
  c.rotary_percent = 0.1;  // int(8 * 0.1) = 0 rotary channels
  EXPECT_NE(error_of(c).find("rotary_percent"), std::string::npos);

  c = base();
  c.position_embedding_type = "alibi";
  EXPECT_NE(error_of(c).find("position_embedding_type"), std::string::npos);

  c = base();
  c.hidden_dropout = 1.0;
  EXPECT_NE(error_of(c).find("hidden_dropout"), std::string::npos);

  EXPECT_THROW(activation_func_from_string("tanh"), Error);
  EXPECT_EQ(activation_func_from_string("swish"), ActivationFunc::kSilu);
  EXPECT_EQ(activation_func_from_string("gelu_new"), ActivationFunc::kGeluTanh);
}

}  // namespace
}  // namespace mcore::transformer

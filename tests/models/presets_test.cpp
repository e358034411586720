// Presets: parameter counts from the shapes equal the published totals (Hugging Face model
// cards), and a built GPTModel has exactly count_parameters() parameters.
#include <gtest/gtest.h>

#include "mcore/comm/local_backend.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/models/presets.h"

namespace mcore::models {
namespace {

TEST(Presets, CountsMatchPublishedFigures) {
  const std::pair<const char*, int64_t> published[] = {
      {"gpt2-124m", 124439808},   {"gpt2-355m", 354823168},     {"gpt2-774m", 774030080},
      {"gpt2-1.5b", 1557611200},  {"llama2-7b", 6738415616},    {"llama2-13b", 13015864320},
      {"llama3-8b", 8030261248},  {"llama3-70b", 70553706496},  {"qwen2.5-7b", 7615616512},
      {"mistral-7b", 7241732096}, {"mixtral-8x7b", 46702792704}};
  for (auto [name, count] : published) {
    SCOPED_TRACE(name);
    const ModelPreset& p = get_preset(name);
    EXPECT_EQ(p.published_parameter_count, count);
    EXPECT_EQ(count_parameters(p), count);
  }
}

TEST(Presets, BuiltModelsHaveTheCountedParameters) {
  for (const std::string& name : preset_names()) {
    const ModelPreset& p = get_preset(name);
    if (p.published_parameter_count != 0) continue;  // tiny variants only
    SCOPED_TRACE(name);
    GPTModelOptions o;
    o.share_embeddings_and_output_weights = p.share_embeddings_and_output_weights;
    o.tp_group = comm::make_local_group();
    GPTModel model(p.config, transformer::get_gpt_layer_local_spec(), p.vocab_size,
                   p.max_sequence_length, o);
    EXPECT_EQ(model.num_parameters(), count_parameters(p));
  }
}

TEST(Presets, ShapesOfKnownModels) {
  const auto& l3 = get_preset("llama3-8b").config;
  EXPECT_EQ(l3.kv_channels, 128);
  EXPECT_EQ(l3.num_query_groups, 8);
  EXPECT_DOUBLE_EQ(l3.rotary_base, 500000.0);
  const auto& q = get_preset("qwen2.5-7b").config;
  EXPECT_TRUE(q.add_qkv_bias);
  EXPECT_FALSE(q.add_bias_linear);
  EXPECT_EQ(get_preset("gpt2-124m").config.activation_func, transformer::ActivationFunc::kGeluTanh);
}

TEST(Presets, UnknownNameListsTheKnownOnes) {
  try {
    get_preset("gpt5");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("llama3-8b"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mcore::models

// tools/generate end to end: a model saved as pretrain_gpt saves it (parameters under
// "model.<state-dict name>", the arguments block in the "args" section) is loaded by the tool
// from --load alone - shape and tokenizer read back from the saved arguments - and its greedy
// and sampled output equals in-process generation from the same weights; bad flags are errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "mcore/comm/local_backend.h"
#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/inference/text_generation.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/tensor/factory.h"
#include "mcore/tokenizers/tokenizer.h"
#include "mcore/training/arguments.h"

namespace mcore {
namespace {

namespace fs = std::filesystem;

fs::path tool_path() {
  return fs::canonical("/proc/self/exe").parent_path().parent_path() / "tools" / "generate";
}

// Runs a command; returns its exit status and (in *out) its stdout (stderr in *err).
int run(const std::string& cmd, std::string* out, std::string* err = nullptr) {
  const std::string base =
      (fs::temp_directory_path() / ("mcore_gen_" + std::to_string(getpid()))).string();
  const int rc = std::system((cmd + " > " + base + ".out 2> " + base + ".err").c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  if (out) *out = slurp(base + ".out");
  if (err) *err = slurp(base + ".err");
  fs::remove(base + ".out");
  fs::remove(base + ".err");
  return rc;
}

class GenerateTool : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(tool_path())) << tool_path() << " is not built";
    dir_ = fs::temp_directory_path() / ("mcore_gen_ckpt_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    // The training run's flags; NullTokenizer: ids print as numbers, every id is printable.
    args_ = training::parse_args(std::vector<std::string>{"pretrain_gpt",
                                                          "--num-layers",
                                                          "2",
                                                          "--hidden-size",
                                                          "64",
                                                          "--num-attention-heads",
                                                          "4",
                                                          "--ffn-hidden-size",
                                                          "128",
                                                          "--max-position-embeddings",
                                                          "64",
                                                          "--seq-length",
                                                          "64",
                                                          "--position-embedding-type",
                                                          "rope",
                                                          "--normalization",
                                                          "RMSNorm",
                                                          "--swiglu",
                                                          "--disable-bias-linear",
                                                          "--untie-embeddings-and-output-weights",
                                                          "--group-query-attention",
                                                          "--num-query-groups",
                                                          "2",
                                                          "--tokenizer-type",
                                                          "NullTokenizer",
                                                          "--vocab-size",
                                                          "211",
                                                          "--init-method-std",
                                                          "0.2"});
    args_.padded_vocab_size = 256;
    transformer::TransformerConfig c;
    c.num_layers = 2;
    c.hidden_size = 64;
    c.num_attention_heads = 4;
    c.num_query_groups = 2;
    c.ffn_hidden_size = 128;
    c.position_embedding_type = "rope";
    c.normalization = "RMSNorm";
    c.gated_linear_unit = true;
    c.activation_func = transformer::ActivationFunc::kSilu;
    c.add_bias_linear = false;
    c.init_method_std = 0.2;  // peaked logits: greedy choices far from ties
    c.hidden_dropout = c.attention_dropout = 0.0;
    models::GPTModelOptions o;
    o.tp_group = comm::make_local_group();
    model_ =
        std::make_unique<models::GPTModel>(c, transformer::get_gpt_layer_local_spec(), 256, 64, o);
    // "Trained" weights: anything but the init the tool's model starts from, so the test
    // fails unless the tool really loads them.
    {
      NoGradGuard no_grad;
      uint64_t stream = 1;
      for (auto& [name, p] : model_->named_parameters()) {
        Tensor& t = *p;
        normal_(t, RandomSpec{42, stream++}, name.find("norm") != std::string::npos ? 1.0 : 0.0,
                0.2);
      }
    }
    std::vector<dist_checkpointing::ShardedTensor> shards;
    for (auto& [name, p] : model_->named_parameters())
      shards.push_back(dist_checkpointing::ShardedTensor::whole("model." + name, *p));
    dist_checkpointing::CheckpointCommon common;
    common.sections["args"] = training::format_args(args_);
    dist_checkpointing::save_checkpoint(dir_.string(), 7, shards, common);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // What the tool should print: the prompt, then the generated ids as NullTokenizer decodes them.
  std::string expected(const std::string& prompt, inference::SamplingParams sampling, int n) {
    tokenizers::TokenizerOptions to;
    to.tokenizer_type = "NullTokenizer";
    to.vocab_size = 211;
    auto tok = tokenizers::build_tokenizer(to);
    std::vector<int64_t> ids;
    for (auto t : tok->encode(prompt)) ids.push_back(t);
    inference::GenerationOptions o;
    o.max_new_tokens = n;
    o.sampling = sampling;
    o.vocab_size = tok->vocab_size();
    auto r = inference::generate(*model_, ids, o, 64);
    // The continuation as decoded after the prompt's tokens (NullTokenizer puts a space
    // between ids, the prompt's last and the first generated one included).
    std::vector<tokenizers::TokenId> all = tok->encode(prompt);
    const std::string before = tok->decode(all);
    all.insert(all.end(), r.tokens.begin(), r.tokens.end());
    return prompt + tok->decode(all).substr(before.size()) + "\n";
  }

  fs::path dir_;
  training::Arguments args_;
  std::unique_ptr<models::GPTModel> model_;
};

TEST_F(GenerateTool, LoadsTheCheckpointAndMatchesInProcessGeneration) {
  std::string out, err;
  const std::string base =
      tool_path().string() + " --load " + dir_.string() + " --prompt '5 17 42' --ignore-eod";
  ASSERT_EQ(run(base + " --greedy --max-new-tokens 12", &out, &err), 0) << err;
  inference::SamplingParams greedy;
  greedy.greedy = true;
  EXPECT_EQ(out, expected("5 17 42", greedy, 12)) << err;
  EXPECT_NE(err.find("iteration 7"), std::string::npos) << err;

  inference::SamplingParams s;
  s.temperature = 0.7;
  s.top_k = 20;
  s.top_p = 0.9;
  s.seed = 99;
  ASSERT_EQ(run(base + " --temperature 0.7 --top-k 20 --top-p 0.9 --seed 99 --max-new-tokens 12",
                &out, &err),
            0)
      << err;
  EXPECT_EQ(out, expected("5 17 42", s, 12)) << err;
  // Without the cache: the same text.
  std::string uncached;
  ASSERT_EQ(run(base + " --temperature 0.7 --top-k 20 --top-p 0.9 --seed 99 --max-new-tokens 12"
                       " --no-kv-cache",
                &uncached, &err),
            0)
      << err;
  EXPECT_EQ(uncached, out);
}

TEST_F(GenerateTool, BadInputsAreErrors) {
  std::string out, err;
  EXPECT_NE(
      run(tool_path().string() + " --load " + dir_.string() + " --top-p 2 --prompt 1", &out, &err),
      0);
  EXPECT_NE(err.find("top_p"), std::string::npos) << err;
  EXPECT_NE(run(tool_path().string() + " --load /nonexistent/ckpt --prompt 1", &out, &err), 0);
  EXPECT_NE(err.find("/nonexistent/ckpt"), std::string::npos) << err;
  // A shape that does not match the checkpoint.
  EXPECT_NE(run(tool_path().string() + " --load " + dir_.string() +
                    " --hidden-size 32 --prompt 1 --max-new-tokens 2",
                &out, &err),
            0);
  EXPECT_NE(err.find("error"), std::string::npos) << err;
}

}  // namespace
}  // namespace mcore

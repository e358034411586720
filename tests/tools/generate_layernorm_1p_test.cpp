// tools/generate on a checkpoint trained with --apply-layernorm-1p: the saved arguments carry
// the flag, so the tool rebuilds zero-centred norms (scale = 1 + stored weight) from --load alone.
// The stored norm weights sit around 0, so a tool that built plain norms would scale by ~0 and
// print different tokens than in-process generation from the same weights.
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
#include "mcore/training/training.h"

namespace mcore {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(GenerateLayerNorm1p, TheSavedFlagRebuildsZeroCenteredNorms) {
  const fs::path tool =
      fs::canonical("/proc/self/exe").parent_path().parent_path() / "tools" / "generate";
  ASSERT_TRUE(fs::exists(tool)) << tool << " is not built";
  const std::string tag = std::to_string(getpid());
  const fs::path dir = fs::temp_directory_path() / ("mcore_gen_1p_" + tag);
  fs::remove_all(dir);

  training::Arguments args =
      training::parse_args(std::vector<std::string>{"pretrain_gpt",
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
                                                    "--apply-layernorm-1p",
                                                    "--untie-embeddings-and-output-weights",
                                                    "--tokenizer-type",
                                                    "NullTokenizer",
                                                    "--vocab-size",
                                                    "211",
                                                    "--init-method-std",
                                                    "0.2"});
  args.padded_vocab_size = 256;
  // The training run's model, as pretrain_gpt builds it from these flags.
  transformer::TransformerConfig c = training::transformer_config_from_args(args);
  ASSERT_TRUE(c.layernorm_zero_centered_gamma);
  c.hidden_dropout = c.attention_dropout = 0.0;
  models::GPTModelOptions o;
  o.tp_group = comm::make_local_group();
  models::GPTModel model(c, transformer::get_gpt_layer_local_spec(), 256, 64, o);
  {
    // "Trained" weights; the norm weights (gamma - 1) around 0.
    NoGradGuard no_grad;
    uint64_t stream = 1;
    for (auto& [name, p] : model.named_parameters()) normal_(*p, RandomSpec{42, stream++}, 0, 0.2);
  }
  std::vector<dist_checkpointing::ShardedTensor> shards;
  for (auto& [name, p] : model.named_parameters())
    shards.push_back(dist_checkpointing::ShardedTensor::whole("model." + name, *p));
  dist_checkpointing::CheckpointCommon common;
  common.sections["args"] = training::format_args(args);
  dist_checkpointing::save_checkpoint(dir.string(), 3, shards, common);

  const std::string prompt = "5 17 42";
  const fs::path out = fs::temp_directory_path() / ("mcore_gen_1p_" + tag + ".out");
  const fs::path err = fs::temp_directory_path() / ("mcore_gen_1p_" + tag + ".err");
  const int rc = std::system((tool.string() + " --load " + dir.string() + " --prompt '" + prompt +
                              "' --ignore-eod --greedy --max-new-tokens 12 > " + out.string() +
                              " 2> " + err.string())
                                 .c_str());
  const std::string got = slurp(out), log = slurp(err);
  fs::remove(out);
  fs::remove(err);
  fs::remove_all(dir);
  ASSERT_EQ(rc, 0) << log;

  tokenizers::TokenizerOptions to;
  to.tokenizer_type = "NullTokenizer";
  to.vocab_size = 211;
  auto tok = tokenizers::build_tokenizer(to);
  std::vector<int64_t> ids;
  for (auto t : tok->encode(prompt)) ids.push_back(t);
  inference::GenerationOptions g;
  g.max_new_tokens = 12;
  g.sampling.greedy = true;
  g.vocab_size = tok->vocab_size();
  auto r = inference::generate(model, ids, g, 64);
  // generate prints the continuation as decoding it after the prompt's tokens adds it.
  std::vector<tokenizers::TokenId> all = tok->encode(prompt);
  const std::string before = tok->decode(all);
  all.insert(all.end(), r.tokens.begin(), r.tokens.end());
  EXPECT_EQ(got, prompt + tok->decode(all).substr(before.size()) + "\n") << log;
}

}  // namespace
}  // namespace mcore

// tools/convert_checkpoint with MixtralForCausalLM against the real transformers
// (tests/tools/hf_reference.py, run with MCORE_HF_PYTHON), as convert_checkpoint_test.cpp does
// for the dense architectures:
//  - hf-to-mcore: a tiny random Mixtral (3 layers of 4 SwiGLU experts, top-2, GQA, vocabulary
//    230) gives transformers' logits in mcore (1e-5 of the largest logit; the reference runs in
//    float64, mcore in fp32). Routing is discrete: a token whose k-th and (k+1)-th router logits
//    nearly tie could pick another expert in fp32 than in fp64, so the reference's router weights
//    are large enough that every choice is clear (hf_reference.py checks the gap).
//  - mcore-to-hf: the converted checkpoint exported again loads as MixtralForCausalLM with no
//    missing or unexpected keys, its tensors equal the originals bit for bit, its config.json
//    has the expert fields back, and its logits equal the original model's.
//  - a checkpoint trained by pretrain_gpt --model mixtral-tiny under PP=2 exports to a model
//    whose transformers logits match mcore's.
//  - bad input: expert counts or tensors that disagree name the field or tensor.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "mcore/base/file_io.h"
#include "mcore/dist_checkpointing/safetensors.h"
#include "mcore/hf_checkpoint/checkpoint_model.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor/npy.h"
#include "tests/common/test_util.h"
#include "tests/tools/convert_test_util.h"
#include "tests/trainer/trainer_test_util.h"

namespace mcore {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using convert_test::convert;
using convert_test::hf_python;
using convert_test::mcore_logits;
using convert_test::script;
using training::trainer_test::fresh_dir;
using training::trainer_test::mpirun;
using training::trainer_test::run;
using training::trainer_test::RunResult;
using training::trainer_test::tool;

// The smallest router-logit gap at the top-k boundary below which fp32 (mcore) and fp64
// (transformers) may route a token differently: fp32 logits of these sizes are off by ~1e-6.
constexpr double kMinRouterMargin = 1e-4;

class ConvertMixtral : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(fresh_dir("convert_mixtral"));
    if (hf_python().empty() || !fs::exists(hf_python())) return;
    make_ =
        new RunResult(run(hf_python() + " " + script() + " make " + root_->string() + " mixtral"));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
    delete make_;
    make_ = nullptr;
  }
  void SetUp() override { convert_test::require_reference(make_); }

  static fs::path hf_dir() { return *root_ / "mixtral" / "hf"; }
  static fs::path ref(const std::string& f) { return *root_ / "mixtral" / f; }

  // hf-to-mcore of `hf` into <root>/<name>; returns the checkpoint directory and the output.
  static fs::path import(const fs::path& hf, const std::string& name, std::string* output) {
    const fs::path out = *root_ / name;
    fs::remove_all(out);
    RunResult r =
        run(convert("--direction hf-to-mcore --hf-dir " + hf.string() + " --save " + out.string()));
    EXPECT_EQ(r.rc, 0) << r.output;
    if (output) *output = r.output;
    return out;
  }

  static void check_in_transformers(const json& jobs) {
    convert_test::check_in_transformers(*root_, jobs);
  }

  static fs::path* root_;
  static RunResult* make_;
};
fs::path* ConvertMixtral::root_ = nullptr;
RunResult* ConvertMixtral::make_ = nullptr;

TEST_F(ConvertMixtral, ImportGivesTransformersLogits) {
  std::string output;
  const fs::path out = import(hf_dir(), "import", &output);
  for (const char* flag :
       {"--num-experts 4 --moe-router-topk 2 --moe-ffn-hidden-size 96 "
        "--moe-aux-loss-coeff 0.02 ",
        "--num-query-groups 2 ", "--rotary-base 1000000 ", "pass --moe-aux-loss-coeff 0.02"}) {
    EXPECT_NE(output.find(flag), std::string::npos) << flag << "\n" << output;
  }
  const Tensor expected = load_npy(ref("logits.npy").string());
  const Tensor got = mcore_logits(out, load_npy(ref("input_ids.npy").string()), expected.size(2));
  EXPECT_LT(testing::max_rel_error(got, expected), 1e-5);
}

TEST_F(ConvertMixtral, ExportRoundTripsThroughTransformers) {
  const fs::path ckpt = import(hf_dir(), "roundtrip", nullptr);
  const fs::path out = *root_ / "exported";
  fs::remove_all(out);
  // The architecture follows from the experts; naming it is accepted too.
  RunResult r = run(convert("--direction mcore-to-hf --load " + ckpt.string() + " --save-hf " +
                            out.string() + " --hf-architecture MixtralForCausalLM"));
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("MixtralForCausalLM, vocabulary 230 of 256 rows"), std::string::npos)
      << r.output;
  check_in_transformers(json::array({{{"dir", out.string()},
                                      {"input_ids", ref("input_ids.npy").string()},
                                      {"logits_out", (*root_ / "exported.npy").string()},
                                      {"original", hf_dir().string()},
                                      {"architecture", "MixtralForCausalLM"}}}));
  const json original = json::parse(read_file((hf_dir() / "config.json").string()));
  const json exported = json::parse(read_file((out / "config.json").string()));
  for (const char* key :
       {"model_type", "num_local_experts", "num_experts_per_tok", "intermediate_size",
        "router_aux_loss_coef", "num_key_value_heads", "rope_theta", "sliding_window",
        "tie_word_embeddings", "bos_token_id", "eos_token_id", "vocab_size"}) {
    EXPECT_EQ(exported.value(key, json("absent")), original.at(key)) << key;
  }
  // The same weights in the same library: the same logits, to the bit.
  EXPECT_LT(testing::max_rel_error(load_npy((*root_ / "exported.npy").string()),
                                   load_npy(ref("logits.npy").string())),
            1e-15);
  // A model with experts is no LLaMA.
  fs::remove_all(*root_ / "as_llama");
  r = run(convert("--direction mcore-to-hf --load " + ckpt.string() + " --save-hf " +
                  (*root_ / "as_llama").string() + " --hf-architecture LlamaForCausalLM"));
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("has experts: MixtralForCausalLM"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(*root_ / "as_llama"));
}

// pretrain_gpt's Mixtral (experts saved by two pipeline stages, the second's layer renumbered)
// exports to a model transformers runs as mcore does. Tensor parallelism is refused for experts.
TEST_F(ConvertMixtral, TrainedCheckpointExports) {
  const fs::path save = *root_ / "trained";
  fs::remove_all(save);
  RunResult t = run(mpirun(2) + tool("pretrain_gpt") +
                    " --model mixtral-tiny --seq-length 32 --max-position-embeddings 64"
                    " --mock-data --micro-batch-size 2 --global-batch-size 4 --lr 1e-2 --seed 7"
                    " --moe-aux-loss-coeff 0.01 --train-iters 3 --log-interval 1"
                    " --pipeline-model-parallel-size 2 --save-interval 3 --save " +
                    save.string());
  ASSERT_EQ(t.rc, 0) << t.output;
  const fs::path out = *root_ / "trained_hf";
  fs::remove_all(out);
  RunResult r = run(
      convert("--direction mcore-to-hf --load " + save.string() + " --save-hf " + out.string()));
  ASSERT_EQ(r.rc, 0) << r.output;
  const json config = json::parse(read_file((out / "config.json").string()));
  EXPECT_EQ(config.at("architectures"), json({"MixtralForCausalLM"}));
  EXPECT_EQ(config.at("num_local_experts"), 4);
  EXPECT_EQ(config.at("router_aux_loss_coef"), 0.01);

  const Tensor ids = from_vector<int64_t>({3, 17, 99, 5, 200, 42, 7, 1, 88, 150, 211, 0}, {1, 12});
  const fs::path ids_file = *root_ / "trained_ids.npy";
  save_npy(ids_file.string(), ids);
  const fs::path margin_file = *root_ / "trained_margin.json";
  check_in_transformers(json::array({{{"dir", out.string()},
                                      {"input_ids", ids_file.string()},
                                      {"logits_out", (*root_ / "trained.npy").string()},
                                      {"router_margin_out", margin_file.string()},
                                      {"architecture", "MixtralForCausalLM"}}}));
  // Trained routers start from init-method-std weights: check that no token nearly ties, or a
  // mismatch below would be fp32 routing, not the conversion.
  const double margin = json::parse(read_file(margin_file.string())).get<double>();
  EXPECT_GT(margin, kMinRouterMargin) << "router logits nearly tie: choose other ids";
  const Tensor hf = load_npy((*root_ / "trained.npy").string());
  EXPECT_EQ(hf.size(2), 257);  // NullTokenizer over the preset's 256 ids plus end-of-document
  EXPECT_LT(testing::max_rel_error(mcore_logits(save, ids, hf.size(2)), hf), 1e-5);
}

// config.json's expert count must match the weights, and errors name the tensor or field.
TEST_F(ConvertMixtral, ExpertCountMustMatchTheWeights) {
  const std::string expert = "model.layers.1.block_sparse_moe.experts.";
  struct Case {
    std::string name;
    json edit;                                                  // merged into config.json
    std::function<void(std::map<std::string, Tensor>&)> files;  // applied to the weights
    std::string message;
  };
  const Case cases[] = {
      {"more_experts",
       {{"num_local_experts", 5}},
       nullptr,
       "\"model.layers.0.block_sparse_moe.gate.weight\" has shape [4, 64], but config.json "
       "implies [5, 64]"},
      {"topk", {{"num_experts_per_tok", 5}}, nullptr, "\"num_experts_per_tok\" 5 exceeds"},
      {"missing_expert", json::object(), [&](auto& t) { t.erase(expert + "3.w2.weight"); },
       "lacks tensor \"" + expert + "3.w2.weight\""},
      {"extra_expert", json::object(),
       [&](auto& t) { t[expert + "4.w1.weight"] = t.at(expert + "3.w1.weight").clone(); },
       "does not have: \"" + expert + "4.w1.weight\""}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path dir = *root_ / ("bad_" + c.name);
    fs::remove_all(dir);
    fs::copy(hf_dir(), dir, fs::copy_options::recursive);
    json config = json::parse(read_file((dir / "config.json").string()));
    config.update(c.edit);
    std::ofstream(dir / "config.json") << config.dump(1);
    if (c.files) {
      const std::string file = (dir / "model.safetensors").string();
      std::map<std::string, Tensor> t = dist_checkpointing::load_safetensors(file);
      c.files(t);
      dist_checkpointing::save_safetensors(file, t, {{"format", "pt"}});
    }
    const fs::path out = *root_ / ("bad_out_" + c.name);
    RunResult r = run(
        convert("--direction hf-to-mcore --hf-dir " + dir.string() + " --save " + out.string()));
    EXPECT_NE(r.rc, 0) << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(out));
  }
}

}  // namespace
}  // namespace mcore

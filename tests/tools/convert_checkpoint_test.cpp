// tools/convert_checkpoint against the real transformers (tests/tools/hf_reference.py, run with
// MCORE_HF_PYTHON, the .venv-hf scripts/setup makes):
//  - hf-to-mcore: tiny random GPT-2, LLaMA (GQA, untied), Qwen2 (q/k/v bias, tied) and Mistral
//    (MQA, sharded safetensors) models, vocabularies not multiples of 128; mcore's GPTModel
//    loaded from the converted checkpoint gives transformers' logits. Tolerance: 1e-5 of the
//    largest logit. The reference runs in float64 from the fp32 weights and ours in fp32, whose
//    GEMMs, norms and softmax give ~1e-6 relative error at these sizes; a layout mistake (q/k/v
//    interleave, gate/up order, a Conv1D transpose, a norm or bias in the wrong place) is O(1).
//  - mcore-to-hf: the converted checkpoints exported again load in transformers (no missing or
//    unexpected keys, the right class), their tensors equal the originals bit for bit, and
//    their logits equal the original model's.
//  - checkpoints trained by pretrain_gpt under TP=2 (gpt2-tiny, and llama3-tiny for SwiGLU's
//    strided fc1) export to models whose transformers logits match mcore's.
//  - bad input: clear errors, non-zero exit, nothing written.
//  - exports: the tokenizer's vocabulary, files and special ids; layouts transformers 4.40.2
//    cannot load are refused; output paths with a trailing slash, quotes and a user's own
//    <out>.tmp beside them.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "mcore/base/file_io.h"
#include "mcore/dist_checkpointing/safetensors.h"
#include "mcore/hf_checkpoint/checkpoint_model.h"
#include "mcore/hf_checkpoint/hf_config.h"
#include "mcore/tensor/factory.h"
#include "mcore/tensor/npy.h"
#include "mcore/tokenizers/gpt2_bpe_tokenizer.h"
#include "mcore/training/arguments.h"
#include "mcore/training/training.h"
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

const char* kVariants[] = {"gpt2", "llama", "qwen2", "mistral"};
const char* kArchitectures[] = {"GPT2LMHeadModel", "LlamaForCausalLM", "Qwen2ForCausalLM",
                                "MistralForCausalLM"};

// A path as one shell word (as convert_checkpoint prints it).
std::string sh_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Names in `dir` other than `keep`: what a conversion left behind (staging directories).
std::vector<std::string> leftovers(const fs::path& dir, const std::set<std::string>& keep) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!keep.count(e.path().filename().string())) v.push_back(e.path().filename().string());
  }
  return v;
}

class ConvertCheckpoint : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(fresh_dir("convert_checkpoint"));
    if (hf_python().empty() || !fs::exists(hf_python())) return;
    make_ = new RunResult(run(hf_python() + " " + script() + " make " + root_->string()));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
    delete make_;
    make_ = nullptr;
  }
  void SetUp() override { convert_test::require_reference(make_); }

  static fs::path hf_dir(const std::string& v) { return *root_ / v / "hf"; }
  static fs::path ref(const std::string& v, const std::string& f) { return *root_ / v / f; }

  // hf-to-mcore into <root>/<name>; returns the checkpoint directory.
  static fs::path import(const std::string& v, const std::string& name,
                         const std::string& extra = "") {
    const fs::path out = *root_ / name;
    fs::remove_all(out);
    RunResult r = run(convert("--direction hf-to-mcore --hf-dir " + hf_dir(v).string() +
                              " --save " + out.string() + extra));
    EXPECT_EQ(r.rc, 0) << r.output;
    return out;
  }

  static void check_in_transformers(const json& jobs) {
    convert_test::check_in_transformers(*root_, jobs);
  }

  static fs::path* root_;
  static RunResult* make_;
};
fs::path* ConvertCheckpoint::root_ = nullptr;
RunResult* ConvertCheckpoint::make_ = nullptr;

TEST_F(ConvertCheckpoint, ImportGivesTransformersLogits) {
  for (const char* v : kVariants) {
    SCOPED_TRACE(v);
    const fs::path out = import(v, std::string("import_") + v);
    EXPECT_EQ(read_file((out / "latest_checkpointed_iteration.txt").string()), "release");
    ASSERT_TRUE(fs::exists(out / "release" / "metadata.json"));
    for (const std::string& f : leftovers(*root_, {}))
      EXPECT_EQ(f.find(".tmp"), std::string::npos) << "staging directory left: " << f;
    const Tensor expected = load_npy(ref(v, "logits.npy").string());
    const Tensor got =
        mcore_logits(out, load_npy(ref(v, "input_ids.npy").string()), expected.size(2));
    EXPECT_LT(testing::max_rel_error(got, expected), 1e-5);
  }
}

TEST_F(ConvertCheckpoint, ExportRoundTripsThroughTransformers) {
  json jobs = json::array();
  for (size_t i = 0; i < std::size(kVariants); ++i) {
    const std::string v = kVariants[i];
    const fs::path ckpt = import(v, "roundtrip_" + v);
    const fs::path out = *root_ / ("exported_" + v);
    fs::remove_all(out);
    // Mistral is LLaMA's layout; without the flag it exports as LlamaForCausalLM.
    const std::string arch = v == "mistral" ? " --hf-architecture MistralForCausalLM" : "";
    RunResult r = run(convert("--direction mcore-to-hf --load " + ckpt.string() + " --save-hf " +
                              out.string() + arch));
    ASSERT_EQ(r.rc, 0) << r.output;
    jobs.push_back({{"dir", out.string()},
                    {"input_ids", ref(v, "input_ids.npy").string()},
                    {"logits_out", (*root_ / ("exported_" + v + ".npy")).string()},
                    {"original", hf_dir(v).string()},
                    {"architecture", kArchitectures[i]}});
  }
  check_in_transformers(jobs);
  for (const char* v : kVariants) {
    SCOPED_TRACE(v);
    // config.json's special ids come back, in generation_config.json too.
    const fs::path out = *root_ / (std::string("exported_") + v);
    const json original = json::parse(read_file((hf_dir(v) / "config.json").string()));
    const json exported = json::parse(read_file((out / "config.json").string()));
    for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"}) {
      if (!original.contains(key) || original.at(key).is_null()) continue;
      EXPECT_EQ(exported.value(key, json()), original.at(key)) << key;
      const json generation = json::parse(read_file((out / "generation_config.json").string()));
      EXPECT_EQ(generation.value(key, json()), original.at(key)) << key;
    }
    // The same weights in the same library: the same logits, to the bit.
    EXPECT_LT(testing::max_rel_error(
                  load_npy((*root_ / (std::string("exported_") + v + ".npy")).string()),
                  load_npy(ref(v, "logits.npy").string())),
              1e-15);
  }
}

TEST_F(ConvertCheckpoint, Bf16ImportExportsBf16) {
  const fs::path ckpt = import("llama", "bf16", " --bf16");
  const fs::path out = *root_ / "bf16_hf";
  fs::remove_all(out);
  RunResult r = run(
      convert("--direction mcore-to-hf --load " + ckpt.string() + " --save-hf " + out.string()));
  ASSERT_EQ(r.rc, 0) << r.output;
  const json config = json::parse(read_file((out / "config.json").string()));
  EXPECT_EQ(config.at("torch_dtype"), "bfloat16");
  dist_checkpointing::SafetensorsReader exported((out / "model.safetensors").string());
  dist_checkpointing::SafetensorsReader original((hf_dir("llama") / "model.safetensors").string());
  const std::string name = "model.layers.1.mlp.gate_proj.weight";
  const Tensor got = exported.load(name);
  ASSERT_EQ(got.dtype(), DType::BF16);
  // bf16 rounding of the original fp32 weights, exactly.
  EXPECT_TRUE(testing::tensors_close(got.to(DType::F32),
                                     original.load(name).to(DType::BF16).to(DType::F32), 0, 0));
}

TEST_F(ConvertCheckpoint, TensorParallelTrainedCheckpointsExport) {
  json jobs = json::array();
  const Tensor ids = from_vector<int64_t>({3, 17, 99, 5, 200, 42, 7, 1, 88, 150, 211, 0}, {1, 12});
  const fs::path ids_file = *root_ / "trained_ids.npy";
  save_npy(ids_file.string(), ids);
  for (const std::string preset : {"gpt2-tiny", "llama3-tiny"}) {
    const fs::path save = *root_ / ("trained_" + preset);
    fs::remove_all(save);
    RunResult t = run(mpirun(2) + tool("pretrain_gpt") + " --model " + preset +
                      " --seq-length 32 --max-position-embeddings 64 --mock-data"
                      " --micro-batch-size 2 --global-batch-size 4 --lr 1e-2 --seed 7"
                      " --train-iters 3 --log-interval 1 --tensor-model-parallel-size 2"
                      " --save-interval 3 --save " +
                      save.string());
    ASSERT_EQ(t.rc, 0) << t.output;
    const fs::path out = *root_ / ("trained_hf_" + preset);
    fs::remove_all(out);
    RunResult r = run(
        convert("--direction mcore-to-hf --load " + save.string() + " --save-hf " + out.string()));
    ASSERT_EQ(r.rc, 0) << r.output;
    jobs.push_back(
        {{"dir", out.string()},
         {"input_ids", ids_file.string()},
         {"logits_out", (*root_ / ("trained_" + preset + ".npy")).string()},
         {"architecture", preset == "gpt2-tiny" ? "GPT2LMHeadModel" : "LlamaForCausalLM"}});
  }
  check_in_transformers(jobs);
  for (const std::string preset : {"gpt2-tiny", "llama3-tiny"}) {
    SCOPED_TRACE(preset);
    const Tensor hf = load_npy((*root_ / ("trained_" + preset + ".npy")).string());
    // NullTokenizer over the preset's vocabulary plus its end-of-document id.
    EXPECT_EQ(hf.size(2), preset == "gpt2-tiny" ? 212 : 257);
    const Tensor ours = mcore_logits(*root_ / ("trained_" + preset), ids, hf.size(2));
    EXPECT_LT(testing::max_rel_error(ours, hf), 1e-5);
  }
}

std::string train_flags(const fs::path& save) {
  return " --seq-length 32 --max-position-embeddings 64 --mock-data --micro-batch-size 2"
         " --global-batch-size 2 --lr 1e-3 --train-iters 1 --save-interval 1 --save " +
         save.string();
}

// A model trained with a file tokenizer exports the tokenizer's vocabulary (3000 ids), not the
// preset's --vocab-size (211 for gpt2-tiny, which file tokenizers ignore), and exactly the files
// its arguments name - Megatron's gpt2-vocab.json / gpt2-merges.txt as vocab.json / merges.txt,
// never the unrelated tokenizer.json beside them - which AutoTokenizer loads to encode as mcore.
TEST_F(ConvertCheckpoint, ExportsTheTrainingTokenizer) {
  const fs::path tok = *root_ / "megatron_tok";
  fs::remove_all(tok);
  fs::create_directories(tok);
  const fs::path src = fs::path(testing::ref_dir()) / "tokenizers" / "gpt2";
  fs::copy_file(src / "vocab.json", tok / "gpt2-vocab.json");
  fs::copy_file(src / "merges.txt", tok / "gpt2-merges.txt");
  std::ofstream(tok / "tokenizer.json") << "{\"another\": \"tokenizer\"}";
  const std::string tok_flags = " --tokenizer-type GPT2BPETokenizer --vocab-file " +
                                (tok / "gpt2-vocab.json").string() + " --merge-file " +
                                (tok / "gpt2-merges.txt").string();
  const fs::path save = *root_ / "bpe_trained";
  fs::remove_all(save);
  RunResult t = run(tool("pretrain_gpt") + " --model gpt2-tiny" + tok_flags + train_flags(save));
  ASSERT_EQ(t.rc, 0) << t.output;
  const fs::path out = *root_ / "bpe_hf";
  fs::remove_all(out);
  RunResult r = run(
      convert("--direction mcore-to-hf --load " + save.string() + " --save-hf " + out.string()));
  ASSERT_EQ(r.rc, 0) << r.output;

  const tokenizers::GPT2BPETokenizer bpe((src / "vocab.json").string(),
                                         (src / "merges.txt").string());
  const json config = json::parse(read_file((out / "config.json").string()));
  EXPECT_EQ(config.at("vocab_size"), bpe.vocab_size());
  EXPECT_EQ(config.value("eos_token_id", json()), bpe.eos());
  EXPECT_EQ(json::parse(read_file((out / "generation_config.json").string())).at("eos_token_id"),
            bpe.eos());
  EXPECT_EQ(read_file((out / "vocab.json").string()), read_file((src / "vocab.json").string()));
  EXPECT_EQ(read_file((out / "merges.txt").string()), read_file((src / "merges.txt").string()));
  EXPECT_FALSE(fs::exists(out / "tokenizer.json"));

  const std::string text = "Once upon a time there was a tokenizer";
  const std::vector<tokenizers::TokenId> ids = bpe.encode(text);
  std::vector<int64_t> ids64(ids.begin(), ids.end());
  const Tensor input = from_vector<int64_t>(ids64, {1, int64_t(ids.size())});
  save_npy((*root_ / "bpe_ids.npy").string(), input);
  check_in_transformers(json::array(
      {{{"dir", out.string()},
        {"input_ids", (*root_ / "bpe_ids.npy").string()},
        {"logits_out", (*root_ / "bpe_logits.npy").string()},
        {"architecture", "GPT2LMHeadModel"},
        {"tokenize", {{"text", text}, {"ids_out", (*root_ / "bpe_hf_ids.json").string()}}}}}));
  EXPECT_EQ(json::parse(read_file((*root_ / "bpe_hf_ids.json").string())), json(ids));
  const Tensor hf = load_npy((*root_ / "bpe_logits.npy").string());
  EXPECT_LT(testing::max_rel_error(mcore_logits(save, input, hf.size(2)), hf), 1e-5);

  // Without its files the vocabulary size is unknown: an error naming --vocab-size, which then
  // exports the model with a warning that no tokenizer came along.
  fs::rename(tok, *root_ / "megatron_tok_moved");
  fs::remove_all(out);
  r = run(
      convert("--direction mcore-to-hf --load " + save.string() + " --save-hf " + out.string()));
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("pass --vocab-size"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
  r = run(convert("--direction mcore-to-hf --load " + save.string() + " --save-hf " + out.string() +
                  " --vocab-size 3000"));
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("warning: no tokenizer is exported"), std::string::npos) << r.output;
}

// transformers 4.40.2 loads LLaMA models with biases on every linear layer without the MLP's
// ("mlp_bias" is unknown to it) and refuses heads x head_dim != hidden: both exports are errors.
TEST_F(ConvertCheckpoint, ExportRefusesModelsTransformersMisreads) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --num-layers 2 --hidden-size 64 --num-attention-heads 4 --ffn-hidden-size 96 --swiglu"
       " --normalization RMSNorm --position-embedding-type rope --tokenizer-type NullTokenizer"
       " --vocab-size 250",
       "has no \"mlp_bias\""},
      {" --model llama3-tiny --kv-channels 32", "ignores \"head_dim\""}};
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].second);
    const fs::path save = *root_ / ("misread_" + std::to_string(i));
    fs::remove_all(save);
    RunResult t = run(tool("pretrain_gpt") + cases[i].first + train_flags(save));
    ASSERT_EQ(t.rc, 0) << t.output;
    const fs::path out = *root_ / ("misread_hf_" + std::to_string(i));
    RunResult r = run(
        convert("--direction mcore-to-hf --load " + save.string() + " --save-hf " + out.string()));
    EXPECT_NE(r.rc, 0) << r.output;
    EXPECT_NE(r.output.find(cases[i].second), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(out));
  }
}

// "dir/" is "dir" (an existing empty one too); a user's own <out>.tmp is left alone; printed
// paths with a quote and a space paste back into a shell.
TEST_F(ConvertCheckpoint, OutputPathsAndNeighboursAreKept) {
  const fs::path dir = *root_ / "it's here";
  fs::remove_all(dir);
  for (const char* d : {"ckpt.tmp", "hf.tmp", "hf"}) fs::create_directories(dir / d);
  std::ofstream(dir / "ckpt.tmp" / "mine.txt") << "keep";
  std::ofstream(dir / "hf.tmp" / "mine.txt") << "keep";
  const std::string ckpt = (dir / "ckpt").string() + "/";
  RunResult a = run(convert("--direction hf-to-mcore --hf-dir " + hf_dir("llama").string() +
                            " --save " + sh_quote(ckpt)));
  ASSERT_EQ(a.rc, 0) << a.output;
  EXPECT_NE(a.output.find("--load " + sh_quote(ckpt) + " --use-checkpoint-args"), std::string::npos)
      << a.output;
  EXPECT_NE(a.output.find("pass --seq-length"), std::string::npos) << a.output;
  RunResult b = run(convert("--direction mcore-to-hf --load " + sh_quote(ckpt) + " --save-hf " +
                            sh_quote((dir / "hf").string() + "/")));
  ASSERT_EQ(b.rc, 0) << b.output;
  EXPECT_TRUE(fs::exists(dir / "ckpt" / "release" / "metadata.json"));
  EXPECT_TRUE(fs::exists(dir / "hf" / "model.safetensors"));
  EXPECT_EQ(read_file((dir / "ckpt.tmp" / "mine.txt").string()), "keep");
  EXPECT_EQ(read_file((dir / "hf.tmp" / "mine.txt").string()), "keep");
  EXPECT_EQ(leftovers(dir, {"ckpt", "ckpt.tmp", "hf", "hf.tmp"}), std::vector<std::string>{});
}

// The converted checkpoint is what pretrain_gpt saves: it fine-tunes from it (here under TP=2,
// shape and tokenizer from the saved arguments) and generate samples from it.
TEST_F(ConvertCheckpoint, ConvertedCheckpointLoadsInPretrainGptAndGenerate) {
  const fs::path ckpt = import("qwen2", "finetune_source");
  RunResult t = run(mpirun(2) + tool("pretrain_gpt") + " --load " + ckpt.string() +
                    " --use-checkpoint-args --finetune --tensor-model-parallel-size 2"
                    " --mock-data --micro-batch-size 2 --global-batch-size 2 --lr 1e-4"
                    " --train-iters 2 --log-interval 1");
  ASSERT_EQ(t.rc, 0) << t.output;
  EXPECT_NE(t.output.find("successfully loaded checkpoint from " + (ckpt / "release").string()),
            std::string::npos)
      << t.output;
  RunResult g = run(tool("generate") + " --load " + ckpt.string() +
                    " --prompt '1 2 3' --max-new-tokens 4 --greedy --ignore-eod");
  ASSERT_EQ(g.rc, 0) << g.output;
  EXPECT_NE(g.output.find("generate: 4 tokens"), std::string::npos) << g.output;
}

// Runs hf-to-mcore on a copy of the llama model changed by `edit`; expects failure with
// `message` in the output and no output directory.
void expect_import_error(const fs::path& root, const fs::path& source, const std::string& name,
                         const std::function<void(const fs::path&)>& edit,
                         const std::string& message) {
  SCOPED_TRACE(name);
  const fs::path dir = root / ("bad_" + name);
  fs::remove_all(dir);
  fs::copy(source, dir, fs::copy_options::recursive);
  edit(dir);
  const fs::path out = root / ("bad_out_" + name);
  fs::remove_all(out);
  RunResult r =
      run(convert("--direction hf-to-mcore --hf-dir " + dir.string() + " --save " + out.string()));
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out)) << "a failed conversion left " << out;
  EXPECT_FALSE(fs::exists(out.string() + ".tmp"));
}

void edit_config(const fs::path& dir, const std::function<void(json&)>& f) {
  json c = json::parse(read_file((dir / "config.json").string()));
  f(c);
  std::ofstream(dir / "config.json") << c.dump(1);
}

// Rewrites <dir>/model.safetensors with `f` applied to its tensors.
void edit_tensors(const fs::path& dir,
                  const std::function<void(std::map<std::string, Tensor>&)>& f) {
  const std::string file = (dir / "model.safetensors").string();
  std::map<std::string, Tensor> t = dist_checkpointing::load_safetensors(file);
  f(t);
  dist_checkpointing::save_safetensors(file, t, {{"format", "pt"}});
}

TEST_F(ConvertCheckpoint, BadHuggingFaceInputIsAnError) {
  const fs::path src = hf_dir("llama");
  const fs::path& root = *root_;
  expect_import_error(
      root, src, "no_config", [](const fs::path& d) { fs::remove(d / "config.json"); },
      "config.json does not exist");
  expect_import_error(
      root, src, "no_weights", [](const fs::path& d) { fs::remove(d / "model.safetensors"); },
      "has neither model.safetensors nor model.safetensors.index.json");
  expect_import_error(
      root, src, "truncated",
      [](const fs::path& d) {
        fs::resize_file(d / "model.safetensors", fs::file_size(d / "model.safetensors") / 2);
      },
      "model.safetensors");
  expect_import_error(
      root, src, "unknown_arch",
      [](const fs::path& d) {
        edit_config(d, [](json& c) { c["architectures"] = {"BertForMaskedLM"}; });
      },
      "unsupported architecture \"BertForMaskedLM\"");
  expect_import_error(
      root, src, "shape",
      [](const fs::path& d) { edit_config(d, [](json& c) { c["intermediate_size"] = 128; }); },
      "\"model.layers.0.mlp.gate_proj.weight\" has shape [160, 64], but config.json implies "
      "[128, 64]");
  expect_import_error(
      root, src, "missing_layer",
      [](const fs::path& d) { edit_config(d, [](json& c) { c["num_hidden_layers"] = 3; }); },
      "lacks tensor \"model.layers.2.input_layernorm.weight\"");
  expect_import_error(
      root, src, "extra_layer",
      [](const fs::path& d) { edit_config(d, [](json& c) { c["num_hidden_layers"] = 1; }); },
      "that LlamaForCausalLM with this config.json does not have");
  expect_import_error(
      root, src, "rope_scaling",
      [](const fs::path& d) {
        edit_config(d, [](json& c) { c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}}; });
      },
      "\"rope_scaling\" of type \"linear\" is not supported");
  expect_import_error(
      root, src, "act",
      [](const fs::path& d) { edit_config(d, [](json& c) { c["hidden_act"] = "gelu"; }); },
      "\"hidden_act\": \"gelu\" is not supported");
  // Integer and bool weights are not cast to float.
  const std::string q = "model.layers.0.self_attn.q_proj.weight";
  for (DType d : {DType::I8, DType::BOOL}) {
    expect_import_error(
        root, src, dtype_name(d),
        [&](const fs::path& dir) { edit_tensors(dir, [&](auto& t) { t[q] = t[q].to(d); }); },
        "tensor \"" + q + "\" has dtype " + dtype_name(d) + "; weights must be float64");
  }
  // A sharded model whose index names a shard that is gone.
  expect_import_error(
      root, hf_dir("mistral"), "missing_shard",
      [](const fs::path& d) { fs::remove(d / "model-00002-of-00010.safetensors"); },
      "model-00002-of-00010.safetensors does not exist");
}

// Values a conversion does not keep are reported: NaN/Inf in the files, and finite values beyond
// fp16's range under --fp16.
TEST_F(ConvertCheckpoint, NonFiniteWeightsAreReported) {
  const fs::path dir = *root_ / "nonfinite_hf";
  fs::remove_all(dir);
  fs::copy(hf_dir("llama"), dir, fs::copy_options::recursive);
  edit_tensors(dir, [](auto& t) {
    t["model.layers.0.mlp.up_proj.weight"].narrow(0, 0, 1).fill_(1e5);
    t["model.norm.weight"].narrow(0, 0, 1).fill_(std::numeric_limits<double>::quiet_NaN());
  });
  const fs::path out = *root_ / "nonfinite";
  fs::remove_all(out);
  RunResult r = run(convert("--direction hf-to-mcore --hf-dir " + dir.string() + " --save " +
                            out.string() + " --fp16"));
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("decoder.layers.0.mlp.linear_fc1.weight: 64 finite value(s) (largest "
                          "magnitude 100000) become Inf in float16"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("decoder.final_layernorm.weight holds 1 NaN or Inf value(s)"),
            std::string::npos)
      << r.output;
}

TEST_F(ConvertCheckpoint, BadFlagsAndOutputsAreErrors) {
  const fs::path busy = *root_ / "busy";
  fs::create_directories(busy);
  std::ofstream(busy / "keep.txt") << "x";
  struct Case {
    std::string flags, message;
  };
  const std::vector<Case> cases = {
      {"--direction sideways", "--direction must be hf-to-mcore or mcore-to-hf"},
      {"--direction hf-to-mcore --hf-dir " + hf_dir("llama").string() + " --save " + busy.string(),
       "exists and is not an empty directory"},
      {"--direction mcore-to-hf --load " + (*root_ / "nowhere").string() + " --save-hf " +
           (*root_ / "x").string(),
       "no such directory"},
      {"--direction mcore-to-hf --load " + hf_dir("llama").string() + " --save-hf " +
           (*root_ / "x").string(),
       "no checkpoint found"},
      {"--direction mcore-to-hf --load x --save y --save-hf z", "--save does not apply"},
  };
  for (const Case& c : cases) {
    RunResult r = run(convert(c.flags));
    EXPECT_NE(r.rc, 0) << c.flags << "\n" << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.flags << "\n" << r.output;
  }
  EXPECT_TRUE(fs::exists(busy / "keep.txt"));
  EXPECT_FALSE(fs::exists(*root_ / "x"));
  // A model transformers has no class for: QK layernorm.
  const fs::path save = *root_ / "qk_trained";
  fs::remove_all(save);
  RunResult t = run(tool("pretrain_gpt") +
                    " --model llama3-tiny --qk-layernorm --seq-length 32"
                    " --max-position-embeddings 64 --mock-data --micro-batch-size 2"
                    " --global-batch-size 2 --lr 1e-3 --train-iters 1 --save-interval 1 --save " +
                    save.string());
  ASSERT_EQ(t.rc, 0) << t.output;
  RunResult r = run(convert("--direction mcore-to-hf --load " + save.string() + " --save-hf " +
                            (*root_ / "qk_hf").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("QK layernorm"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(*root_ / "qk_hf"));
}

}  // namespace
}  // namespace mcore

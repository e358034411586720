// Checkpoints across precisions, end to end through the built tools: a --bf16 run's checkpoint
// loads in tools/generate (fp32 model) and resumes in an fp32 or --fp16 run; an fp32 run's
// checkpoint resumes in a --bf16 run. Each resume is checked where it is exact - the weights and
// optimizer state the resumed run saves straight after loading - and by its continued losses:
//   - bf16 -> fp32: the weights are the checkpoint's fp32 main params (not their bf16 rounding);
//   - fp32 -> bf16: the fp32 main params are the checkpoint's fp32 weights, the model weights
//     their bf16 rounding;
//   - bf16 <-> fp16: main params carry over, weights are their rounding to the new precision;
//   - exp_avg / exp_avg_sq and per-parameter step counts carry over unchanged.
// The binaries must be built (cmake --build build --target pretrain_gpt generate).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/dist_checkpointing/metadata.h"
#include "tests/trainer/trainer_test_util.h"

namespace mcore::training::trainer_test {
namespace {

namespace dcp = dist_checkpointing;

// A tiny model on mock data, NullTokenizer so that generate prints token ids. The schedule is
// the same in every run; runs that only load and save take the checkpoint's scheduler.
const char* kFlags =
    " --num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32"
    " --max-position-embeddings 32 --hidden-dropout 0 --attention-dropout 0 --mock-data"
    " --tokenizer-type NullTokenizer --vocab-size 211 --micro-batch-size 2 --global-batch-size 4"
    " --lr 1e-3 --min-lr 1e-4 --lr-decay-style cosine --lr-warmup-iters 1 --log-interval 1";

void expect_ok(const RunResult& r, const std::string& what) {
  ASSERT_EQ(r.rc, 0) << what << " failed:\n" << r.output;
}

std::string pretrain(const std::string& extra) {
  return "OMP_NUM_THREADS=1 " + tool("pretrain_gpt") + kFlags + extra;
}

// Trains 2 of 4 iterations in `precision` ("", " --bf16", " --fp16") and saves at iteration 2.
void train_and_save(const std::string& precision, const fs::path& save) {
  expect_ok(run(pretrain(precision + " --train-iters 4 --save-interval 2 --exit-interval 2" +
                         " --save " + save.string())),
            "training" + precision);
}

// Loads `load` in `precision` and saves again at once (no iteration runs): what the run holds
// right after loading.
void load_and_save(const std::string& precision, const fs::path& load, const fs::path& save) {
  expect_ok(run(pretrain(precision +
                         " --train-iters 2 --use-checkpoint-opt-param-scheduler"
                         " --save-interval 100 --load " +
                         load.string() + " --save " + save.string())),
            "loading " + load.string() + " with" + precision);
}

// Resumes `load` in `precision` for iterations 3 and 4; their losses.
std::vector<double> continue_losses(const std::string& precision, const fs::path& load,
                                    const fs::path& tb) {
  RunResult r = run(pretrain(precision + " --train-iters 4 --load " + load.string() +
                             " --tensorboard-dir " + tb.string()));
  EXPECT_EQ(r.rc, 0) << "resuming " << load << " with" << precision << ":\n" << r.output;
  std::vector<double> losses;
  for (const auto& [it, v] : read_losses(tb)) losses.push_back(v.first);
  return losses;
}

std::string at_iteration_2(const fs::path& save) {
  return (save / dcp::checkpoint_dir_name(2)).string();
}

Tensor saved(const std::string& ckpt, const std::string& key) {
  return dcp::load_global_tensor(ckpt, key);
}

::testing::AssertionResult bitwise_equal(const Tensor& got, const Tensor& want) {
  if (got.dtype() != want.dtype() || got.shape() != want.shape())
    return ::testing::AssertionFailure()
           << dtype_name(got.dtype()) << " " << shape_str(got.shape()) << " vs "
           << dtype_name(want.dtype()) << " " << shape_str(want.shape());
  if (std::memcmp(got.data_ptr(), want.data_ptr(), got.nbytes()) != 0)
    return ::testing::AssertionFailure() << "values differ";
  return ::testing::AssertionSuccess();
}

// The parameter names ("embedding.word_embeddings.weight", ...) of a checkpoint's model.
std::vector<std::string> param_names(const std::string& ckpt) {
  std::vector<std::string> names;
  for (const auto& [key, rec] : dcp::CheckpointMetadata::read(ckpt).tensors)
    if (key.rfind("model.", 0) == 0) names.push_back(key.substr(6));
  return names;
}

bool has_key(const std::string& ckpt, const std::string& key) {
  return dcp::CheckpointMetadata::read(ckpt).tensors.count(key) > 0;
}

// Adam's moments and step counts are fp32/int64 in every precision: they carry over unchanged.
void expect_same_adam_state(const std::string& got, const std::string& want) {
  for (const std::string& n : param_names(want)) {
    for (const char* key :
         {"optimizer.state.exp_avg.", "optimizer.state.exp_avg_sq.", "optimizer.param_step."}) {
      ASSERT_TRUE(has_key(want, key + n)) << key << n;
      EXPECT_TRUE(bitwise_equal(saved(got, key + n), saved(want, key + n))) << key << n;
    }
  }
}

void expect_close_losses(const std::vector<double>& got, const std::vector<double>& want,
                         const std::string& what) {
  ASSERT_EQ(got.size(), 2u) << what;
  ASSERT_EQ(want.size(), 2u) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    // The same weights in another precision: the losses differ by the forward pass's rounding
    // (under 1e-4 relative here), while one step changes them by about 2%.
    EXPECT_NEAR(got[i], want[i], 2e-3 * std::abs(want[i])) << what << ", iteration " << i + 3;
  }
}

// stdout of `generate --load ckpt` with `flags` (stderr names the checkpoint; shown on failure).
std::string generate(const std::string& ckpt, const std::string& flags, const fs::path& err) {
  RunResult r = run("(OMP_NUM_THREADS=1 " + tool("generate") + " --load " + ckpt +
                    " --prompt '5 17 42' --ignore-eod --max-new-tokens 16" + flags + " 2> " +
                    err.string() + ")");
  std::ifstream f(err);
  std::stringstream e;
  e << f.rdbuf();
  EXPECT_EQ(r.rc, 0) << "generate --load " << ckpt << flags << ":\n" << r.output << e.str();
  return r.output;
}

TEST(MixedPrecisionCheckpoint, Bf16CheckpointGeneratesLikeItsFp32Copy) {
  fs::path d = fresh_dir("mp_generate");
  train_and_save(" --bf16", d / "bf16");
  const std::string bf16 = at_iteration_2(d / "bf16");
  // The same weights widened to fp32, with the same arguments section: a checkpoint generate
  // already loads without any conversion.
  const dcp::CheckpointMetadata meta = dcp::CheckpointMetadata::read(bf16);
  std::vector<dcp::ShardedTensor> shards;
  for (const std::string& n : param_names(bf16)) {
    Tensor w = saved(bf16, "model." + n);
    ASSERT_EQ(w.dtype(), DType::BF16) << n;
    shards.push_back(dcp::ShardedTensor::whole("model." + n, w.to(DType::F32)));
  }
  dcp::CheckpointCommon common;
  common.sections = meta.sections;
  const std::string fp32 = dcp::save_checkpoint((d / "fp32").string(), 2, shards, common);

  for (const char* flags : {" --greedy", " --temperature 1.0 --seed 7"}) {
    const std::string want = generate(fp32, flags, d / "err.txt");
    const std::string got = generate(bf16, flags, d / "err.txt");
    EXPECT_EQ(got.rfind("5 17 42", 0), 0u) << got;
    EXPECT_GT(got.size(), std::string("5 17 42\n").size()) << got;
    EXPECT_EQ(got, want) << flags;
  }
  fs::remove_all(d);
}

TEST(MixedPrecisionCheckpoint, Bf16ResumedInFp32TakesTheFp32MainParams) {
  fs::path d = fresh_dir("mp_bf16_fp32");
  train_and_save(" --bf16", d / "bf16");
  load_and_save("", d / "bf16", d / "fp32");
  const std::string bf16 = at_iteration_2(d / "bf16"), fp32 = at_iteration_2(d / "fp32");
  int rounded_differs = 0;
  for (const std::string& n : param_names(bf16)) {
    const Tensor main = saved(bf16, "optimizer.state.fp32_param." + n);
    EXPECT_TRUE(bitwise_equal(saved(fp32, "model." + n), main)) << n;
    // The run keeps no main copies of its fp32 weights.
    EXPECT_FALSE(has_key(fp32, "optimizer.state.fp32_param." + n)) << n;
    rounded_differs += !bitwise_equal(saved(bf16, "model." + n).to(DType::F32), main);
  }
  // Taking the bf16 weights instead would have been caught.
  EXPECT_GT(rounded_differs, 0);
  expect_same_adam_state(fp32, bf16);
  expect_close_losses(continue_losses("", d / "bf16", d / "tb_fp32"),
                      continue_losses(" --bf16", d / "bf16", d / "tb_bf16"), "bf16 -> fp32");
  fs::remove_all(d);
}

TEST(MixedPrecisionCheckpoint, Fp32ResumedInBf16TakesMainParamsFromTheFp32Weights) {
  fs::path d = fresh_dir("mp_fp32_bf16");
  train_and_save("", d / "fp32");
  load_and_save(" --bf16", d / "fp32", d / "bf16");
  const std::string fp32 = at_iteration_2(d / "fp32"), bf16 = at_iteration_2(d / "bf16");
  for (const std::string& n : param_names(fp32)) {
    const Tensor w = saved(fp32, "model." + n);
    // The main params are the fp32 weights themselves, not their bf16 rounding widened back.
    EXPECT_TRUE(bitwise_equal(saved(bf16, "optimizer.state.fp32_param." + n), w)) << n;
    EXPECT_TRUE(bitwise_equal(saved(bf16, "model." + n), w.to(DType::BF16))) << n;
  }
  expect_same_adam_state(bf16, fp32);
  expect_close_losses(continue_losses(" --bf16", d / "fp32", d / "tb_bf16"),
                      continue_losses("", d / "fp32", d / "tb_fp32"), "fp32 -> bf16");
  fs::remove_all(d);
}

TEST(MixedPrecisionCheckpoint, Bf16AndFp16ResumeEachOther) {
  fs::path d = fresh_dir("mp_bf16_fp16");
  train_and_save(" --bf16", d / "bf16");
  load_and_save(" --fp16", d / "bf16", d / "fp16");
  load_and_save(" --bf16", d / "fp16", d / "back");
  struct Hop {
    std::string from, to;
    DType dtype;
  };
  for (const Hop& h : {Hop{at_iteration_2(d / "bf16"), at_iteration_2(d / "fp16"), DType::F16},
                       Hop{at_iteration_2(d / "fp16"), at_iteration_2(d / "back"), DType::BF16}}) {
    for (const std::string& n : param_names(h.from)) {
      // The main params carry over; the weights are their rounding to the new precision (not
      // a rounding of the old precision's rounding).
      const Tensor main = saved(h.from, "optimizer.state.fp32_param." + n);
      EXPECT_TRUE(bitwise_equal(saved(h.to, "optimizer.state.fp32_param." + n), main)) << n;
      EXPECT_TRUE(bitwise_equal(saved(h.to, "model." + n), main.to(h.dtype))) << h.to << " " << n;
    }
    expect_same_adam_state(h.to, h.from);
  }
  // fp16 starts its own loss scaler (bf16 saved none), which may skip the first steps; the run
  // must go on from the loaded weights.
  RunResult r = run(pretrain(" --fp16 --train-iters 4 --load " + (d / "bf16").string()));
  expect_ok(r, "resuming the bf16 checkpoint with --fp16");
  EXPECT_NE(r.output.find("at iteration 2"), std::string::npos) << r.output;
  fs::remove_all(d);
}

}  // namespace
}  // namespace mcore::training::trainer_test

// SwiGLU's fused fc1 holds [gate; up]; under tensor parallelism each rank holds its slice of both
// halves, [gate_r; up_r] (partition_stride 2). Checkpoints must still hold the global [gate; up]
// so that they load under any TP size:
//   - the same initial model saved under TP=1 and TP=2 gives bitwise the same tensors;
//   - a model trained under TP=2 evaluates to the same loss loaded under TP=1 and TP=2;
//   - a checkpoint of an older mcore, which stored fc1 rank by rank, still loads correctly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <regex>
#include <string>

#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/tensor/factory.h"
#include "tests/trainer/trainer_test_util.h"

namespace mcore::training::trainer_test {
namespace {

namespace dcp = dist_checkpointing;

const char* kLlama =
    " --model llama3-tiny --seq-length 32 --max-position-embeddings 64 --log-interval 1"
    " --mock-data --micro-batch-size 2 --global-batch-size 4 --seed 11"
    " --hidden-dropout 0 --attention-dropout 0";

std::string launch(int tp) {
  return (tp == 1 ? std::string("OMP_NUM_THREADS=1 ") : mpirun(tp)) + tool("pretrain_gpt") +
         kLlama + " --tensor-model-parallel-size " + std::to_string(tp);
}

// The "validation loss at ... on validation set | lm loss value: X" of an evaluation-only run.
double evaluate(int tp, const fs::path& ck) {
  RunResult r = run(launch(tp) + " --load " + ck.string() + " --skip-train --eval-iters 4");
  EXPECT_EQ(r.rc, 0) << r.output;
  std::smatch m;
  const std::regex re("on validation set \\| lm loss value: ([0-9.E+-]+)");
  EXPECT_TRUE(std::regex_search(r.output, m, re)) << r.output;
  return m.empty() ? -1.0 : std::stod(m[1]);
}

TEST(SwigluCheckpoint, SameInitialModelSavesTheSameUnderTp1AndTp2) {
  fs::path d = fresh_dir("swiglu_init");
  for (int tp : {1, 2}) {
    const fs::path ck = d / ("tp" + std::to_string(tp));
    RunResult r = run(launch(tp) + " --train-iters 1 --lr 0 --save " + ck.string() +
                      " --save-interval 1 --eval-iters 0");
    ASSERT_EQ(r.rc, 0) << r.output;
  }
  const std::string a = dcp::get_checkpoint_dir((d / "tp1").string(), 1);
  const std::string b = dcp::get_checkpoint_dir((d / "tp2").string(), 1);
  int compared = 0;
  for (const auto& [key, rec] : dcp::CheckpointMetadata::read(a).tensors) {
    if (key.rfind("model.", 0) != 0) continue;
    Tensor x = dcp::load_global_tensor(a, key), y = dcp::load_global_tensor(b, key);
    // The vocabulary pads to a multiple of 128 x TP: compare the rows both have.
    const bool vocab_rows = key.find("word_embeddings") != std::string::npos ||
                            key.find("output_layer") != std::string::npos;
    if (vocab_rows && x.size(0) != y.size(0)) {
      const int64_t rows = std::min(x.size(0), y.size(0));
      x = x.narrow(0, 0, rows).contiguous();
      y = y.narrow(0, 0, rows).contiguous();
    }
    ASSERT_EQ(x.shape(), y.shape()) << key;
    EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()), 0) << key;
    compared += key.find("linear_fc1") != std::string::npos;
  }
  EXPECT_EQ(compared, 2);  // fc1 of both layers
  fs::remove_all(d);
}

TEST(SwigluCheckpoint, TrainedUnderTp2EvaluatesTheSameUnderTp1) {
  fs::path d = fresh_dir("swiglu_trained");
  const fs::path ck = d / "ck";
  RunResult r = run(launch(2) + " --train-iters 20 --lr 3e-3 --save " + ck.string() +
                    " --save-interval 20 --eval-iters 0");
  ASSERT_EQ(r.rc, 0) << r.output;
  const double tp2 = evaluate(2, ck), tp1 = evaluate(1, ck);
  EXPECT_NEAR(tp1, tp2, 1e-5 * tp2);

  // The same checkpoint as an older mcore wrote it: each TP rank's [gate_r; up_r] stored as its
  // contiguous slice of fc1 (and of its optimizer state), without the section that marks the
  // block-wise layout. It must load as the same model.
  const std::string src = dcp::get_checkpoint_dir(ck.string(), 20);
  const dcp::CheckpointMetadata meta = dcp::CheckpointMetadata::read(src);
  std::vector<dcp::ShardedTensor> shards;
  for (const auto& [key, rec] : meta.tensors) {
    Tensor t = dcp::load_global_tensor(src, key);
    if (key.find("linear_fc1") != std::string::npos && key.rfind("optimizer.param_step.", 0) != 0) {
      const int64_t f = t.size(0) / 2, b = f / 2;  // rows per half; per half per rank (TP 2)
      Tensor legacy = empty_like(t);
      for (int64_t r = 0; r < 2; ++r)
        for (int64_t j = 0; j < 2; ++j)
          legacy.narrow(0, r * 2 * b + j * b, b).copy_(t.narrow(0, j * f + r * b, b));
      t = legacy;
    }
    shards.push_back(dcp::ShardedTensor::whole(key, t));
  }
  dcp::CheckpointCommon common;
  common.parallel_layout = meta.parallel_layout;
  common.sections = meta.sections;
  ASSERT_TRUE(common.sections.contains("strided_shards_global"));
  common.sections.erase("strided_shards_global");
  const fs::path old = d / "old";
  const std::string tmp = dcp::begin_save(old.string(), 20);
  dcp::finish_save(old.string(), 20, {dcp::write_rank_shards(tmp, 0, shards)}, common);
  EXPECT_NEAR(evaluate(1, old), tp2, 1e-5 * tp2);
  EXPECT_NEAR(evaluate(2, old), tp2, 1e-5 * tp2);
  fs::remove_all(d);
}

}  // namespace
}  // namespace mcore::training::trainer_test

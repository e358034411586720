// tools/pretrain_gpt --use-distributed-optimizer (Megatron's DistributedOptimizer: each
// data-parallel rank keeps the Adam state and main params of its shard of the reduce-scattered
// grad buffer, updates that shard and all-gathers the weights), run as a user runs it on the tiny
// GPT-2 and compared with the same run without the flag:
//   - DP=2, fp32 and bf16, and PP=2 x DP=2 (the tied embedding in its own bucket): the same
//     losses and the same final weights, bitwise (the logged grad norm to 1e-12). Each reduced
//     gradient element is a + b of the same two values either way (reduce-scatter or all-reduce),
//     and Adam is elementwise, so sharding the update must not change a single bit;
//   - with gradient clipping the grad norm is summed from the shards in another order: losses,
//     grad norms and weights agree to relative 1e-6;
//   - checkpoints: a run saved with the flag resumes without it, and one saved without it
//     resumes with it, each continuing exactly as the uninterrupted run (the saved optimizer
//     state is whole tensors either way).
// The binaries must be built (cmake --build build --target pretrain_gpt).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/dist_checkpointing/metadata.h"
#include "tests/trainer/trainer_test_util.h"

namespace mcore::training {
namespace {

using namespace trainer_test;  // NOLINT: tool, run, mpirun, fresh_dir, read_losses

const char* kFlags =
    " --model gpt2-tiny --seq-length 32 --max-position-embeddings 64 --log-interval 1"
    " --mock-data --hidden-dropout 0 --attention-dropout 0 --micro-batch-size 1"
    " --global-batch-size 4 --train-iters 6 --optimizer adam --lr 1e-3 --weight-decay 0.1";
const char* kDistOpt = " --use-distributed-optimizer";

struct TrainedRun {
  std::map<int64_t, std::pair<double, double>> losses;  // iteration -> {lm loss, grad norm}
  std::map<std::string, Tensor> weights;                // "model.*" at iteration 6
  std::map<std::string, Tensor> optimizer;              // "optimizer.*" at iteration 6
};

// Runs pretrain_gpt on np ranks with `extra` flags, saving at iteration 6 into `dir`.
TrainedRun train(const fs::path& dir, int np, const std::string& extra) {
  const RunResult r =
      run(mpirun(np) + tool("pretrain_gpt") + kFlags + extra + " --tensorboard-dir " +
          (dir / "tb").string() + " --save " + (dir / "ckpt").string() + " --save-interval 1000");
  EXPECT_EQ(r.rc, 0) << extra << " failed:\n" << r.output;
  TrainedRun out;
  if (r.rc != 0) return out;
  out.losses = read_losses(dir / "tb");
  const fs::path ck = dir / "ckpt" / dist_checkpointing::checkpoint_dir_name(6);
  const auto meta = dist_checkpointing::CheckpointMetadata::read(ck.string());
  for (const auto& [key, rec] : meta.tensors) {
    const bool model = key.rfind("model.", 0) == 0;
    if (!model && key.rfind("optimizer.state.", 0) != 0) continue;
    (model ? out.weights : out.optimizer)[key] =
        dist_checkpointing::load_global_tensor(ck.string(), key).to(DType::F32).contiguous();
  }
  return out;
}

void expect_bitwise(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b,
                    const std::string& what) {
  ASSERT_GT(a.size(), 5u) << what;
  ASSERT_EQ(a.size(), b.size()) << what;
  for (const auto& [key, x] : a) {
    ASSERT_TRUE(b.count(key)) << what << ": no " << key;
    const Tensor& y = b.at(key);
    ASSERT_EQ(x.shape(), y.shape()) << what << " " << key;
    EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()), 0) << what << " " << key;
  }
}

void expect_close(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b,
                  double rel, const std::string& what) {
  ASSERT_GT(a.size(), 5u) << what;
  ASSERT_EQ(a.size(), b.size()) << what;
  for (const auto& [key, x] : a) {
    ASSERT_TRUE(b.count(key)) << what << ": no " << key;
    const Tensor& y = b.at(key);
    ASSERT_EQ(x.shape(), y.shape()) << what << " " << key;
    int64_t bad = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double u = x.data<float>()[i], v = y.data<float>()[i];
      if (std::abs(u - v) > 1e-9 + rel * std::abs(u)) ++bad;
    }
    EXPECT_EQ(bad, 0) << what << " " << key << ": " << bad << " of " << x.numel() << " differ";
  }
}

// The grad norm is summed from per-shard partial sums of squares with the flag, from whole
// tensors without it: equal to rounding (measured 1e-16 relative), hence norm_rel.
void expect_same_losses(const TrainedRun& a, const TrainedRun& b, double rel, double norm_rel,
                        const std::string& what) {
  ASSERT_EQ(a.losses.size(), 6u) << what;
  ASSERT_EQ(b.losses.size(), 6u) << what;
  for (const auto& [it, v] : a.losses) {
    EXPECT_NEAR(b.losses.at(it).first, v.first, rel * std::abs(v.first)) << what << " loss @" << it;
    EXPECT_NEAR(b.losses.at(it).second, v.second, norm_rel * std::abs(v.second))
        << what << " grad norm @" << it;
  }
}

TEST(DistributedOptimizer, SameLossesAndWeightsBitwise) {
  for (const std::string& extra : {std::string(), std::string(" --bf16")}) {
    const fs::path d = fresh_dir("dopt_bitwise");
    const TrainedRun plain = train(d / "plain", 2, extra);
    const TrainedRun dist = train(d / "dist", 2, extra + kDistOpt);
    const std::string what = "DP=2" + extra;
    expect_same_losses(plain, dist, 0.0, 1e-12, what);
    expect_bitwise(plain.weights, dist.weights, what + " weights");
    // The saved optimizer state is whole tensors, as without the flag.
    expect_bitwise(plain.optimizer, dist.optimizer, what + " optimizer state");
    fs::remove_all(d);
  }
}

TEST(DistributedOptimizer, PipelineParallelTiedEmbedding) {
  const fs::path d = fresh_dir("dopt_pp");
  const std::string pp = " --pipeline-model-parallel-size 2";
  const TrainedRun plain = train(d / "plain", 4, pp);
  const TrainedRun dist = train(d / "dist", 4, pp + kDistOpt);
  expect_same_losses(plain, dist, 0.0, 1e-12, "PP=2 x DP=2");
  expect_bitwise(plain.weights, dist.weights, "PP=2 x DP=2 weights");
  fs::remove_all(d);
}

TEST(DistributedOptimizer, GradientClippingAcrossShards) {
  // The clip is active: the grad norm is 1.5-1.8 in these steps. The norm's sum of squares is
  // taken per shard and all-reduced, so it matches to rounding, not bitwise.
  const fs::path d = fresh_dir("dopt_clip");
  const std::string clip = " --clip-grad 1.0 --tensor-model-parallel-size 2";
  const TrainedRun plain = train(d / "plain", 4, clip);
  const TrainedRun dist = train(d / "dist", 4, clip + kDistOpt);
  expect_same_losses(plain, dist, 1e-6, 1e-6, "TP=2 x DP=2 clipped");
  expect_close(plain.weights, dist.weights, 1e-5, "TP=2 x DP=2 clipped weights");
  fs::remove_all(d);
}

TEST(DistributedOptimizer, CheckpointsResumeWithOrWithoutIt) {
  const fs::path d = fresh_dir("dopt_resume");
  const TrainedRun whole = train(d / "whole", 2, "");
  for (const auto& [first, second] : {std::pair<std::string, std::string>{kDistOpt, ""},
                                      std::pair<std::string, std::string>{"", kDistOpt}}) {
    const fs::path r = d / (first.empty() ? "plain_then_dist" : "dist_then_plain");
    // Stop after iteration 3 (saving), then resume from that checkpoint to iteration 6.
    const RunResult a = run(mpirun(2) + tool("pretrain_gpt") + kFlags + first +
                            " --exit-interval 3 --save-interval 1000 --save " +
                            (r / "ckpt").string() + " --tensorboard-dir " + (r / "tb1").string());
    ASSERT_EQ(a.rc, 0) << a.output;
    ASSERT_TRUE(fs::exists(r / "ckpt" / dist_checkpointing::checkpoint_dir_name(3))) << a.output;
    const RunResult b = run(mpirun(2) + tool("pretrain_gpt") + kFlags + second + " --load " +
                            (r / "ckpt").string() + " --save " + (r / "ckpt").string() +
                            " --save-interval 1000 --tensorboard-dir " + (r / "tb").string());
    ASSERT_EQ(b.rc, 0) << b.output;
    const auto resumed = read_losses(r / "tb");
    const std::string what =
        first.empty() ? "saved plain, resumed distributed" : "saved distributed, resumed plain";
    ASSERT_EQ(resumed.size(), 3u) << what;
    for (const auto& [it, v] : resumed) {
      EXPECT_EQ(v.first, whole.losses.at(it).first) << what << " loss @" << it;
      EXPECT_NEAR(v.second, whole.losses.at(it).second, 1e-12 * v.second)
          << what << " grad norm @" << it;
    }
    const fs::path ck = r / "ckpt" / dist_checkpointing::checkpoint_dir_name(6);
    std::map<std::string, Tensor> w;
    for (const auto& [key, x] : whole.weights)
      w[key] = dist_checkpointing::load_global_tensor(ck.string(), key).to(DType::F32).contiguous();
    expect_bitwise(whole.weights, w, what + " weights");
  }
  fs::remove_all(d);
}

}  // namespace
}  // namespace mcore::training

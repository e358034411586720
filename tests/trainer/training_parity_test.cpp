// End-to-end parity tests of tools/pretrain_gpt (run as a user runs it, on the tiny GPT-2):
//   - bf16 mixed precision tracks fp32 training on the same data within a stated tolerance;
//   - data parallelism with Adam (weight decay and gradient clipping on): DP 1, 2 and 4 with
//     the same global batch give the same losses and weights;
//   - --overlap-grad-reduce (several buckets reduced while backward runs) gives exactly the
//     losses and weights of the reduction after backward.
// The binaries must be built (cmake --build build --target pretrain_gpt).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/dist_checkpointing/metadata.h"
#include "mcore/models/presets.h"
#include "tests/trainer/trainer_test_util.h"

namespace mcore::training {
namespace {

using namespace trainer_test;  // NOLINT: tool, run, mpirun, fresh_dir, read_losses

const char* kTinyModel =
    " --model gpt2-tiny --seq-length 32 --max-position-embeddings 64 --log-interval 5"
    " --mock-data --hidden-dropout 0 --attention-dropout 0";

void expect_ok(const RunResult& r, const std::string& what) {
  ASSERT_EQ(r.rc, 0) << what << " failed:\n" << r.output;
}

TEST(TrainingParity, Bf16TracksFp32) {
  // 40 Adam steps on the same mock data, two micro-batches per step (bf16 grads accumulate in
  // the fp32 grad buffer), dropout off so both runs see the same computation.
  const std::string flags = std::string(kTinyModel) +
                            " --micro-batch-size 2 --global-batch-size 4 --train-iters 40"
                            " --optimizer adam --lr 1e-3 --lr-warmup-iters 2";
  fs::path d = fresh_dir("bf16");
  expect_ok(run("OMP_NUM_THREADS=2 " + tool("pretrain_gpt") + flags + " --tensorboard-dir " +
                (d / "fp32").string()),
            "fp32 run");
  expect_ok(run("OMP_NUM_THREADS=2 " + tool("pretrain_gpt") + flags + " --bf16 --tensorboard-dir " +
                (d / "bf16").string()),
            "bf16 run");
  const auto f32 = read_losses(d / "fp32"), b16 = read_losses(d / "bf16");
  ASSERT_EQ(f32.size(), 40u);
  ASSERT_EQ(b16.size(), 40u);
  int differing = 0;
  for (const auto& [it, v] : f32) {
    const auto& [loss, gnorm] = b16.at(it);
    // bf16 keeps 8 significant bits: one rounding is a relative error up to 2^-9 = 1.95e-3.
    // The loss averages 128 token losses, each from activations rounded to bf16 at every layer,
    // and the fp32 main params keep the small Adam updates, so the curves agree far better than
    // one rounding: measured gap at most 1.3e-4 .. 2.1e-4 relative per step over 40 steps (seeds
    // 1234, 7, 99). The bound 2e-3 = 2^-9 leaves ~10x margin for other machines' reduction
    // orders, yet fails a run whose loss is off by as much as a single bf16 rounding.
    EXPECT_NEAR(loss, v.first, 2e-3 * std::abs(v.first)) << "lm loss at iteration " << it;
    // The grad norm is a sum of squares of bf16-computed gradients, noisier: measured at most
    // 2.5e-3 .. 3.9e-3 relative; bound 2e-2 (5x margin).
    EXPECT_NEAR(gnorm, v.second, 2e-2 * std::abs(v.second)) << "grad norm at iteration " << it;
    differing += loss != v.first;
  }
  // The bf16 run really computed in bf16 (identical curves would mean --bf16 was ignored).
  EXPECT_GT(differing, 20);
  // And both learn: the mock data's loss falls from ln(256) = 5.5 to about 4.55 in 40 steps.
  EXPECT_LT(b16.at(40).first, f32.at(1).first - 0.5);
  fs::remove_all(d);
}

TEST(TrainingParity, DataParallelAdamGivesTheSameLossesAndWeights) {
  // Adam with decoupled weight decay (not on biases and norms) and clipping at 1.0, which is
  // active: the grad norm is 1.5 .. 1.8 in these steps. lr 1e-4: Adam divides each gradient by
  // its own running RMS, so an element whose gradient nearly cancels turns reduction-order noise
  // into a step difference proportional to lr. With lr 1e-3 the worst such weight used 0.59 of
  // the 1e-5 tolerance (and TP=2 x DP=2, whose matmuls reduce in another order, exceeded it in
  // a few elements); with 1e-4 the worst is 0.06 of it, while the weights still move by ~6e-4
  // (3% of their 0.02 scale), so any difference in the update itself would show.
  const std::string flags = std::string(kTinyModel) +
                            " --micro-batch-size 1 --global-batch-size 4 --train-iters 6"
                            " --optimizer adam --lr 1e-4 --weight-decay 0.1 --clip-grad 1.0";
  std::map<std::string, std::map<int64_t, std::pair<double, double>>> losses;
  std::map<std::string, fs::path> ckpts;
  for (int np : {1, 2, 4}) {
    const std::string name = "dp" + std::to_string(np);
    fs::path d = fresh_dir("adam_" + name);
    expect_ok(
        run(mpirun(np) + tool("pretrain_gpt") + flags + " --tensorboard-dir " +
            (d / "tb").string() + " --save " + (d / "ckpt").string() + " --save-interval 1000"),
        name);
    losses[name] = read_losses(d / "tb");
    ckpts[name] = d / "ckpt" / dist_checkpointing::checkpoint_dir_name(6);
  }
  const auto& ref = losses.at("dp1");
  ASSERT_EQ(ref.size(), 6u);
  for (const auto& [name, l] : losses) {
    ASSERT_EQ(l.size(), ref.size()) << name;
    for (const auto& [it, v] : ref) {
      // fp32; only the order of reductions differs (relative 1e-5, as the issue says).
      // Measured: 1e-8 (loss), 3e-8 (grad norm).
      EXPECT_NEAR(l.at(it).first, v.first, 1e-5 * std::abs(v.first)) << name << " iteration " << it;
      EXPECT_NEAR(l.at(it).second, v.second, 1e-5 * std::abs(v.second))
          << name << " grad norm, iteration " << it;
    }
  }
  // Weights: relative 1e-5 (absolute 1e-7 near zero) everywhere but the key biases. Their
  // gradient is zero in exact arithmetic (softmax over keys ignores a shift q.b_k common to all
  // keys), so what each layout computes there is reduction-order noise of ~1e-11, and Adam
  // divides it by its own sqrt(v): each layout moves those entries by its own noise-driven
  // amount (measured |b_k| ~2e-6 at lr 1e-3, differing 100%). They cannot change the loss, which
  // the loss comparison above checks. Megatron's fused QKV layout: per query group, the group's
  // query heads, then one key head, then one value head.
  const auto& cfg = models::get_preset("gpt2-tiny").config;
  const int64_t hd = cfg.kv_channels, groups = cfg.num_query_groups;
  const int64_t q_per_group = cfg.num_attention_heads / groups;
  const int64_t group_width = (q_per_group + 2) * hd;
  auto is_key_bias = [&](const std::string& key, int64_t i) {
    const std::string suffix = "linear_qkv.bias";
    if (key.size() < suffix.size() ||
        key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0)
      return false;
    const int64_t j = i % group_width;
    return j >= q_per_group * hd && j < (q_per_group + 1) * hd;
  };
  const auto want = model_tensors(ckpts.at("dp1"));
  ASSERT_GT(want.size(), 10u);
  for (const auto& [name, dir] : ckpts) {
    const auto got = model_tensors(dir);
    for (const auto& [key, w] : want) {
      ASSERT_TRUE(got.count(key)) << name << " lacks " << key;
      const Tensor& g = got.at(key);
      ASSERT_EQ(g.shape(), w.shape()) << name << " " << key;
      const float* a = g.data<float>();
      const float* e = w.data<float>();
      int64_t bad = 0, worst = -1;
      double worst_excess = 0;
      for (int64_t i = 0; i < w.numel(); ++i) {
        if (is_key_bias(key, i)) continue;
        const double excess = std::abs(double(a[i]) - e[i]) - (1e-7 + 1e-5 * std::abs(e[i]));
        if (excess > 0) {
          ++bad;
          if (excess > worst_excess) worst_excess = excess, worst = i;
        }
      }
      EXPECT_EQ(bad, 0) << name << " " << key << ": " << bad << " elements differ; worst [" << worst
                        << "] " << (worst >= 0 ? a[worst] : 0.f) << " vs "
                        << (worst >= 0 ? e[worst] : 0.f);
    }
  }
  for (const auto& [name, dir] : ckpts) fs::remove_all(dir.parent_path().parent_path());
}

TEST(TrainingParity, OverlapGradReduceGivesTheSameLosses) {
  // DP=2. Overlapped: buckets of 10000 parameters (the tiny model has ~120k, so about twelve
  // buckets), each all-reduce started as soon as backward has filled it. Reference: the default
  // (one bucket, reduced after backward). Exact equality: every element is reduced as a + b of
  // the same two values (commutative, exact whatever the MPI algorithm or message grouping) and
  // scaled by 1/2 (exact), so the grads, and everything after them, must be bitwise equal.
  const std::string flags = std::string(kTinyModel) +
                            " --micro-batch-size 1 --global-batch-size 4 --train-iters 6"
                            " --optimizer adam --lr 1e-3 --weight-decay 0.1 --clip-grad 1.0";
  fs::path a = fresh_dir("no_overlap"), b = fresh_dir("overlap");
  auto cmd = [&](const fs::path& d) {
    return mpirun(2) + tool("pretrain_gpt") + flags + " --tensorboard-dir " + (d / "tb").string() +
           " --save " + (d / "ckpt").string() + " --save-interval 1000";
  };
  expect_ok(run(cmd(a)), "without --overlap-grad-reduce");
  expect_ok(run(cmd(b) + " --overlap-grad-reduce --ddp-bucket-size 10000"),
            "with --overlap-grad-reduce");
  const auto la = read_losses(a / "tb"), lb = read_losses(b / "tb");
  ASSERT_EQ(la.size(), 6u);
  ASSERT_EQ(lb.size(), 6u);
  for (const auto& [it, v] : la) {
    EXPECT_EQ(lb.at(it).first, v.first) << "lm loss at iteration " << it;
    EXPECT_EQ(lb.at(it).second, v.second) << "grad norm at iteration " << it;
  }
  const auto wa = model_tensors(a / "ckpt" / dist_checkpointing::checkpoint_dir_name(6));
  const auto wb = model_tensors(b / "ckpt" / dist_checkpointing::checkpoint_dir_name(6));
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [key, x] : wa) {
    const Tensor& y = wb.at(key);
    ASSERT_EQ(x.shape(), y.shape()) << key;
    EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()), 0) << key << " differs";
  }
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(TrainingParity, PerTokenLossDoesNotDependOnHowTokensAreSplit) {
  // --eod-mask-loss leaves each microbatch a different number of loss tokens. The default loss
  // (Megatron's mean over microbatches of each one's mean) then changes with the micro batch
  // size; --calculate-per-token-loss (sum over all tokens / their number) does not: micro batch
  // 1 or 2, and DP=2 x PP=2, train to the same losses. With uniform masks it equals the default.
  const std::string base = tool("pretrain_gpt") +
                           " --model gpt2-tiny --num-layers 4 --seq-length 32"
                           " --max-position-embeddings 64 --log-interval 1 --mock-data"
                           " --global-batch-size 4 --train-iters 3 --optimizer sgd --lr 0.05"
                           " --hidden-dropout 0 --attention-dropout 0";
  auto losses = [&](const std::string& launcher, const std::string& flags) {
    fs::path d = fresh_dir("per_token");
    RunResult r = run(launcher + base + flags + " --tensorboard-dir " + (d / "tb").string());
    EXPECT_EQ(r.rc, 0) << flags << "\n" << r.output;
    auto l = read_losses(d / "tb");
    fs::remove_all(d);
    return l;
  };
  const std::string per_token = " --calculate-per-token-loss --eod-mask-loss";
  auto mbs1 = losses("", " --micro-batch-size 1" + per_token);
  auto mbs2 = losses("", " --micro-batch-size 2" + per_token);
  auto dp_pp =
      losses(mpirun(4), " --micro-batch-size 1 --pipeline-model-parallel-size 2" + per_token);
  auto mean_of_means1 = losses("", " --micro-batch-size 1 --eod-mask-loss");
  auto mean_of_means2 = losses("", " --micro-batch-size 2 --eod-mask-loss");
  auto uniform = losses("", " --micro-batch-size 1 --calculate-per-token-loss");
  auto uniform_default = losses("", " --micro-batch-size 1");
  ASSERT_EQ(mbs1.size(), 3u);
  bool mean_of_means_differs = false;
  for (const auto& [it, v] : mbs1) {
    EXPECT_NEAR(mbs2.at(it).first, v.first, 1e-5 * v.first) << "iteration " << it;
    EXPECT_NEAR(dp_pp.at(it).first, v.first, 1e-5 * v.first) << "iteration " << it;
    EXPECT_NEAR(uniform.at(it).first, uniform_default.at(it).first, 1e-5 * v.first);
    // The default does depend on the split (this is what the per-token loss fixes).
    mean_of_means_differs |=
        std::abs(mean_of_means1.at(it).first - mean_of_means2.at(it).first) > 1e-5 * v.first;
  }
  EXPECT_TRUE(mean_of_means_differs);
}

}  // namespace
}  // namespace mcore::training

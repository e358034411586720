// tools/pretrain_gpt --context-parallel-size, run as a user runs it and compared with the same
// run without context parallelism. Dropout is on (hidden and attention), and its masks are keyed
// by the global element index, so every layout must give the same losses, grad norms and saved
// weights to fp32 rounding (relative 1e-5). The runs use SGD with momentum: its update is linear
// in the gradient, so rounding differences stay rounding-sized (Adam's m / sqrt(v) turns a
// gradient that is zero up to rounding into a full +-lr step either way):
//   - CP=2 on the LLaMA-style tiny model (RoPE, GQA, SwiGLU);
//   - CP=2 x TP=2 with sequence parallelism on GPT-2 tiny, with Megatron's per-document
//     attention masks and position ids (--reset-attention-mask --reset-position-ids), so the
//     mask is cut per rank as well;
//   - CP=2 x PP=2, and CP=2 x DP=2 with the distributed optimizer (against DP=2);
//   - a checkpoint saved under CP=2 resumes under CP=1 exactly as the uninterrupted run.
// Impossible layouts fail before training with a message naming the fix.
// The binaries must be built (cmake --build build --target pretrain_gpt).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "mcore/dist_checkpointing/checkpoint.h"
#include "tests/trainer/trainer_test_util.h"

namespace mcore::training {
namespace {

using namespace trainer_test;  // NOLINT: tool, run, mpirun, fresh_dir, read_losses

constexpr int kIters = 4;
const char* kFlags =
    " --seq-length 32 --max-position-embeddings 64 --log-interval 1 --mock-data"
    " --hidden-dropout 0.1 --attention-dropout 0.1 --micro-batch-size 2 --global-batch-size 4"
    " --optimizer sgd --sgd-momentum 0.9 --lr 0.05 --weight-decay 0.1 --seed 7";

struct Trained {
  std::map<int64_t, std::pair<double, double>> losses;  // iteration -> {lm loss, grad norm}
  std::map<std::string, Tensor> weights;                // the last checkpoint's "model.*"
};

Trained train(const fs::path& dir, int np, const std::string& extra, const std::string& load = "") {
  std::string cmd = mpirun(np) + tool("pretrain_gpt") + kFlags + extra + " --train-iters " +
                    std::to_string(kIters) + " --tensorboard-dir " + (dir / "tb").string() +
                    " --save " + (dir / "ckpt").string() + " --save-interval 1000";
  if (!load.empty()) cmd += " --load " + load;
  const RunResult r = run(cmd);
  EXPECT_EQ(r.rc, 0) << extra << " failed:\n" << r.output;
  Trained out;
  if (r.rc != 0) return out;
  out.losses = read_losses(dir / "tb");
  out.weights = model_tensors(dir / "ckpt" / dist_checkpointing::checkpoint_dir_name(kIters));
  return out;
}

void expect_same(const Trained& ref, const Trained& got, const std::string& what,
                 int64_t first_iter = 1) {
  ASSERT_EQ(got.losses.size(), ref.losses.size() - static_cast<size_t>(first_iter - 1)) << what;
  for (const auto& [it, v] : got.losses) {
    ASSERT_TRUE(ref.losses.count(it)) << what << " @" << it;
    const auto& e = ref.losses.at(it);
    EXPECT_NEAR(v.first, e.first, 1e-5 * std::abs(e.first)) << what << " loss @" << it;
    EXPECT_NEAR(v.second, e.second, 1e-5 * std::abs(e.second)) << what << " grad norm @" << it;
  }
  ASSERT_GT(ref.weights.size(), 5u) << what;
  ASSERT_EQ(got.weights.size(), ref.weights.size()) << what;
  for (const auto& [key, x] : ref.weights) {
    ASSERT_TRUE(got.weights.count(key)) << what << ": no " << key;
    const Tensor& y = got.weights.at(key);
    ASSERT_EQ(x.shape(), y.shape()) << what << " " << key;
    int64_t bad = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double u = x.data<float>()[i], v = y.data<float>()[i];
      if (std::abs(u - v) > 1e-7 + 1e-5 * std::abs(u)) ++bad;
    }
    EXPECT_EQ(bad, 0) << what << " " << key << ": " << bad << " of " << x.numel() << " differ";
  }
}

TEST(ContextParallelTraining, LlamaStyleMatchesWithout) {
  const fs::path d = fresh_dir("cp_llama");
  const std::string model = " --model llama2-tiny";
  const Trained ref = train(d / "ref", 1, model);
  expect_same(ref, train(d / "cp2", 2, model + " --context-parallel-size 2"), "CP=2");
  expect_same(ref,
              train(d / "cp2pp2", 4,
                    model + " --context-parallel-size 2 "
                            "--pipeline-model-parallel-size 2"),
              "CP=2 x PP=2");
  // A checkpoint saved under CP=2 (at the exit interval, halfway) resumes without context
  // parallelism.
  const std::string half = (d / "half").string();
  const RunResult r = run(mpirun(2) + tool("pretrain_gpt") + kFlags + model +
                          " --context-parallel-size 2 --train-iters " + std::to_string(kIters) +
                          " --exit-interval 2 --save-interval 1000 --save " + half);
  ASSERT_EQ(r.rc, 0) << r.output;
  expect_same(ref, train(d / "resumed", 1, model, half), "CP=2 saved, CP=1 resumed", 3);
  // generate takes the training flags, context parallelism included, and runs on one rank.
  expect_generates(half,
                   " --context-parallel-size 2 --tokenizer-type NullTokenizer --vocab-size 211", 4);
  fs::remove_all(d);
}

TEST(ContextParallelTraining, Gpt2TensorParallelWithDocumentMasks) {
  const fs::path d = fresh_dir("cp_gpt2");
  const std::string model = " --model gpt2-tiny --reset-attention-mask --reset-position-ids";
  const Trained ref = train(d / "ref", 1, model);
  expect_same(ref,
              train(d / "cp2tp2", 4,
                    model + " --context-parallel-size 2 "
                            "--tensor-model-parallel-size 2 --sequence-parallel"),
              "CP=2 x TP=2 SP");
  fs::remove_all(d);
}

TEST(ContextParallelTraining, DataParallelDistributedOptimizer) {
  const fs::path d = fresh_dir("cp_dp");
  const std::string model = " --model gpt2-tiny --use-distributed-optimizer";
  const Trained ref = train(d / "dp2", 2, model);
  expect_same(ref, train(d / "cp2dp2", 4, model + " --context-parallel-size 2"), "CP=2 x DP=2");
  fs::remove_all(d);
}

// Megatron's --cp-comm-type takes one type for all layers or one per layer; the hierarchical
// sizes go with a2a+p2p. Both are accepted with a note (the all-gather computes the same).
TEST(ContextParallelTraining, CommTypeListsAreAcceptedWithANote) {
  const std::string base = mpirun(2) + tool("pretrain_gpt") + kFlags +
                           " --model gpt2-tiny --train-iters 1 --context-parallel-size 2";
  const RunResult per_layer =
      run(base + " --cp-comm-type a2a+p2p p2p --hierarchical-context-parallel-sizes 1 2");
  ASSERT_EQ(per_layer.rc, 0) << per_layer.output;
  EXPECT_NE(per_layer.output.find("--cp-comm-type a2a+p2p p2p: context parallelism all-gathers"),
            std::string::npos)
      << per_layer.output;
  EXPECT_NE(per_layer.output.find("--hierarchical-context-parallel-sizes"), std::string::npos)
      << per_layer.output;
  const RunResult all = run(base + " --cp-comm-type allgather");
  ASSERT_EQ(all.rc, 0) << all.output;
  EXPECT_EQ(all.output.find("--cp-comm-type"), std::string::npos) << all.output;
  const struct {
    std::string flags, expect;
  } bad[] = {{" --cp-comm-type p2p p2p p2p", "one type for all layers or one per layer"},
             {" --cp-comm-type ring", "invalid choice: 'ring'"},
             {" --hierarchical-context-parallel-sizes 2 2", "must multiply to"}};
  for (const auto& c : bad) {
    const RunResult r = run(base + c.flags);
    EXPECT_NE(r.rc, 0) << c.flags;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.flags << "\n" << r.output;
  }
}

TEST(ContextParallelTraining, ImpossibleLayoutsFailWithTheFix) {
  const std::string base = tool("pretrain_gpt") + kFlags + " --model gpt2-tiny --train-iters 1";
  struct Case {
    std::string cmd, expect;
  };
  const Case cases[] = {
      {mpirun(2) + base + " --context-parallel-size 2 --seq-length 30",
       "multiple of 2 * context-parallel-size"},
      {mpirun(2) + base + " --context-parallel-size 2 --num-experts 4",
       "run without context parallelism"},
      {mpirun(3) + base + " --context-parallel-size 2", "context (2)"},
  };
  for (const Case& c : cases) {
    const RunResult r = run(c.cmd);
    EXPECT_NE(r.rc, 0) << c.cmd;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.cmd << "\n" << r.output;
  }
}

}  // namespace
}  // namespace mcore::training

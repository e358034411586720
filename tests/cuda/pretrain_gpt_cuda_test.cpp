// tools/pretrain_gpt --device cuda as a user runs it (one process, so the world group is NCCL
// over one rank): a few iterations of the tiny GPT agree with the same run on the CPU, the log
// line reports the GPU allocator's memory, and a checkpoint saved from the GPU resumes exactly
// (saved through the host, loaded into the CPU and copied to the parameters' device).
// Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/cuda/cuda_test_util.h"
#include "tests/trainer/trainer_test_util.h"

namespace mcore::training::trainer_test {
namespace {

// SGD and no dropout for the CPU comparison: Adam divides by sqrt(v) and turns reduction-order
// noise in gradients that are zero in exact arithmetic into full +-lr steps (see
// tests/trainer/pretrain_gpt_test.cpp); fp32 without TF32, so only reduction orders differ.
const char* kFlags =
    " --model gpt2-tiny --seq-length 32 --max-position-embeddings 64 --log-interval 1"
    " --mock-data --micro-batch-size 2 --global-batch-size 4 --optimizer sgd --lr 0.05"
    " --hidden-dropout 0 --attention-dropout 0";

void expect_ok(const RunResult& r, const std::string& what) {
  ASSERT_EQ(r.rc, 0) << what << " failed:\n" << r.output;
}

TEST(PretrainGPTCuda, MatchesTheCpuRun) {
  MCORE_REQUIRE_GPU();
  fs::path c = fresh_dir("cuda_vs_cpu_cpu"), g = fresh_dir("cuda_vs_cpu_gpu");
  const std::string base = tool("pretrain_gpt") + kFlags + " --train-iters 5";
  expect_ok(run(base + " --device cpu --tensorboard-dir " + (c / "tb").string()), "cpu run");
  RunResult gpu = run(base + " --device cuda --tensorboard-dir " + (g / "tb").string());
  expect_ok(gpu, "cuda run");
  EXPECT_NE(gpu.output.find("mem reserved (GiB)"), std::string::npos) << gpu.output;
  auto lc = read_losses(c / "tb"), lg = read_losses(g / "tb");
  ASSERT_EQ(lc.size(), 5u);
  ASSERT_EQ(lg.size(), 5u);
  for (const auto& [it, v] : lc) {
    // fp32: relative 1e-5 for the loss (reduction order only); the grad norm sums squares of
    // every gradient and gets 1e-4.
    EXPECT_NEAR(lg.at(it).first, v.first, 1e-5 * std::abs(v.first)) << "iteration " << it;
    EXPECT_NEAR(lg.at(it).second, v.second, 1e-4 * std::abs(v.second))
        << "grad norm, iteration " << it;
  }
  fs::remove_all(c);
  fs::remove_all(g);
}

TEST(PretrainGPTCuda, Bf16AdamWithDropoutRunsAndLossFalls) {
  MCORE_REQUIRE_GPU();
  fs::path d = fresh_dir("cuda_bf16");
  const std::string cmd = tool("pretrain_gpt") +
                          " --model gpt2-tiny --seq-length 32 --max-position-embeddings 64"
                          " --mock-data --micro-batch-size 4 --global-batch-size 8 --bf16"
                          " --lr 3e-3 --train-iters 30 --log-interval 10 --device cuda"
                          " --tensorboard-dir " +
                          (d / "tb").string();
  expect_ok(run(cmd), "bf16 cuda run");
  auto l = read_losses(d / "tb");
  ASSERT_EQ(l.size(), 30u);
  for (const auto& [it, v] : l) ASSERT_TRUE(std::isfinite(v.first)) << "iteration " << it;
  EXPECT_LT(l.at(30).first, l.at(1).first);
  fs::remove_all(d);
}

TEST(PretrainGPTCuda, CheckpointResumesExactly) {
  MCORE_REQUIRE_GPU();
  fs::path a = fresh_dir("cuda_resume_a"), b = fresh_dir("cuda_resume_b");
  auto cmd = [&](const fs::path& d, int iters) {
    return tool("pretrain_gpt") + kFlags + " --device cuda --train-iters " + std::to_string(iters) +
           " --save-interval 1000 --save " + (d / "ckpt").string() + " --load " +
           (d / "ckpt").string() + " --tensorboard-dir " + (d / "tb").string();
  };
  expect_ok(run(cmd(a, 6)), "uninterrupted run");
  expect_ok(run(cmd(b, 3)), "first half");
  RunResult resumed = run(cmd(b, 6));
  expect_ok(resumed, "resumed run");
  EXPECT_NE(resumed.output.find("at iteration 3"), std::string::npos) << resumed.output;
  auto la = read_losses(a / "tb"), lb = read_losses(b / "tb");
  ASSERT_EQ(la.size(), 6u);
  ASSERT_EQ(lb.size(), 6u);
  // The same kernels on the same GPU in the same order: bit-identical except for the float32
  // atomics of the embedding gradient, whose summation order may change from run to run.
  for (const auto& [it, v] : la) {
    EXPECT_NEAR(lb.at(it).first, v.first, 1e-6 * std::abs(v.first)) << "iteration " << it;
  }
  fs::remove_all(a);
  fs::remove_all(b);
}

}  // namespace
}  // namespace mcore::training::trainer_test

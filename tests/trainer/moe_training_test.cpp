// Mixture-of-experts training through tools/pretrain_gpt (the mixtral-tiny preset: 4 SwiGLU
// experts per layer, top-2 routing, Switch load-balancing loss), run as a user runs it:
//   - one rank, DP=2 and PP=2 x DP=2 give the same losses and final weights (relative 1e-5:
//     only the order of fp32 sums differs; the aux loss's gradient is scaled per microbatch like
//     the main loss, so gradient accumulation and data parallelism weigh it alike), and so do
//     expert parallelism (EP=2 over DP=2, EP=2 x PP=2 over DP=2, EP=4 over DP=4 with the
//     distributed optimizer), where each rank holds only its experts and tokens travel to them
//     by all-to-all; the checkpoints hold every expert under its global name whatever EP is;
//   - an EP=2 checkpoint resumes under EP=1, and bad expert-parallel sizes are refused;
//   - its checkpoint resumes under another layout with --use-checkpoint-args and samples in
//     generate;
//   - the aux loss and the z-loss (--moe-z-loss-coeff, logged as z_loss) weigh the same with
//     --calculate-per-token-loss; top-1 needs pre-softmax;
//   - tensor parallelism (sequence parallel, experts unsplit: --expert-tensor-parallel-size 1)
//     matches too, alone and with EP; tensor-parallel experts are refused, naming the fix.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/dist_checkpointing/metadata.h"
#include "tests/trainer/trainer_test_util.h"

namespace mcore::training {
namespace {

using namespace trainer_test;  // NOLINT: tool, run, mpirun, fresh_dir, read_losses

const char* kMoe =
    " --model mixtral-tiny --seq-length 32 --mock-data --micro-batch-size 2"
    " --global-batch-size 8 --train-iters 6 --lr 1e-4 --log-interval 1 --moe-aux-loss-coeff 0.01"
    " --moe-z-loss-coeff 0.001"
    " --make-vocab-size-divisible-by 256";  // the same padded vocabulary at TP 1 and 2

// Megatron's MoE with tensor parallelism: sequence parallel, experts unsplit.
const char* kTensorParallel =
    " --tensor-model-parallel-size 2 --sequence-parallel --expert-tensor-parallel-size 1";

// SGD with momentum for the weight comparison: its update is linear in the gradient, so rounding
// differences between layouts stay rounding-sized (Adam's m / sqrt(v) turns a gradient that is
// zero up to rounding into a full +-lr step either way; under TP that flipped single elements).
const char* kSgd = " --optimizer sgd --sgd-momentum 0.9 --lr 0.02";

TEST(MoeTraining, LossesAndWeightsDoNotDependOnTheLayout) {
  const fs::path d = fresh_dir("moe_layout");
  std::map<std::string, std::map<int64_t, std::pair<double, double>>> losses;
  std::map<std::string, std::map<std::string, Tensor>> weights;
  std::map<std::string, std::vector<double>> lb_losses;  // the log line's load_balancing_loss
  std::map<std::string, std::vector<double>> z_losses;   // and its z_loss
  struct Layout {
    std::string name, launcher, extra;
  };
  const Layout layouts[] = {
      {"one", "OMP_NUM_THREADS=1 ", ""},
      {"dp2", mpirun(2), ""},
      {"pp2dp2", mpirun(4), " --pipeline-model-parallel-size 2"},
      {"ep2dp2", mpirun(2), " --expert-model-parallel-size 2"},
      {"ep2pp2dp2", mpirun(4), " --expert-model-parallel-size 2 --pipeline-model-parallel-size 2"},
      {"ep4dp4_distopt", mpirun(4), " --expert-model-parallel-size 4 --use-distributed-optimizer"},
      {"tp2", mpirun(2), kTensorParallel},
      {"tp2ep2dp2", mpirun(4), kTensorParallel + std::string(" --expert-model-parallel-size 2")}};
  for (const auto& [name, cmd, extra] : layouts) {
    const fs::path r = d / name;
    const RunResult res =
        run(cmd + tool("pretrain_gpt") + kMoe + kSgd + extra + " --tensorboard-dir " +
            (r / "tb").string() + " --save " + (r / "ckpt").string() + " --save-interval 1000");
    ASSERT_EQ(res.rc, 0) << name << ":\n" << res.output;
    losses[name] = read_losses(r / "tb");
    const std::regex lb("load_balancing_loss: ([0-9.E+-]+)"), z("z_loss: ([0-9.E+-]+)");
    for (auto it = std::sregex_iterator(res.output.begin(), res.output.end(), lb);
         it != std::sregex_iterator(); ++it)
      lb_losses[name].push_back(std::stod((*it)[1]));
    for (auto it = std::sregex_iterator(res.output.begin(), res.output.end(), z);
         it != std::sregex_iterator(); ++it)
      z_losses[name].push_back(std::stod((*it)[1]));
    weights[name] = model_tensors(r / "ckpt" / dist_checkpointing::checkpoint_dir_name(6));
  }
  const auto& ref = losses.at("one");
  ASSERT_EQ(ref.size(), 6u);
  EXPECT_LT(ref.at(6).first, ref.at(1).first) << "the loss falls";
  // Megatron's load_balancing_loss (aux loss / coeff, ~1 when balanced), the same everywhere.
  ASSERT_EQ(lb_losses["one"].size(), 6u);
  for (double v : lb_losses["one"]) EXPECT_TRUE(v > 0.9 && v < 2.0) << v;
  // Megatron's z_loss (the mean of logsumexp(router logits)^2), the same at every layout: under
  // TP each rank's share uses coefficient / TP.
  ASSERT_EQ(z_losses["one"].size(), 6u);
  for (const auto& [name, v] : z_losses) {
    ASSERT_EQ(v.size(), 6u) << name;
    for (size_t i = 0; i < v.size(); ++i)
      EXPECT_NEAR(v[i], z_losses["one"][i], 1e-5 * z_losses["one"][i]) << name << " z @" << i;
  }
  for (const auto& [name, v] : lb_losses) {
    ASSERT_EQ(v.size(), 6u) << name;
    for (size_t i = 0; i < v.size(); ++i)
      EXPECT_NEAR(v[i], lb_losses["one"][i], 1e-5 * lb_losses["one"][i]) << name << " @" << i;
  }
  const auto& w0 = weights.at("one");
  ASSERT_TRUE(w0.count("model.decoder.layers.1.mlp.router.weight"));
  ASSERT_TRUE(w0.count("model.decoder.layers.0.mlp.experts.local_experts.3.linear_fc2.weight"));
  for (const auto& [name, l] : losses) {
    ASSERT_EQ(l.size(), ref.size()) << name;
    for (const auto& [it, v] : ref)
      EXPECT_NEAR(l.at(it).first, v.first, 1e-5 * std::abs(v.first)) << name << " @" << it;
    for (const auto& [key, w] : w0) {
      const Tensor& g = weights.at(name).at(key);
      ASSERT_EQ(g.shape(), w.shape()) << name << " " << key;
      int64_t bad = 0;
      for (int64_t i = 0; i < w.numel(); ++i) {
        const double a = g.data<float>()[i], e = w.data<float>()[i];
        if (std::abs(a - e) > 1e-7 + 1e-5 * std::abs(e)) ++bad;
      }
      EXPECT_EQ(bad, 0) << name << " " << key;
    }
  }
  fs::remove_all(d);
}

TEST(MoeTraining, CheckpointResumesUnderAnotherLayoutAndGenerates) {
  const fs::path d = fresh_dir("moe_ckpt");
  const std::string ck = (d / "ckpt").string();
  RunResult a = run(mpirun(2) + tool("pretrain_gpt") + kMoe +
                    " --exit-interval 3 --save-interval 1000 --save " + ck);
  ASSERT_EQ(a.rc, 0) << a.output;
  // No model flags at all: the shape, experts and tokenizer come from the checkpoint.
  RunResult b = run(mpirun(2) + tool("pretrain_gpt") + " --use-checkpoint-args --load " + ck +
                    " --pipeline-model-parallel-size 2 --mock-data --micro-batch-size 2"
                    " --global-batch-size 8 --train-iters 6 --lr 1e-4 --log-interval 1"
                    " --moe-aux-loss-coeff 0.01");
  ASSERT_EQ(b.rc, 0) << b.output;
  EXPECT_NE(b.output.find("iteration        6/       6"), std::string::npos) << b.output;
  expect_generates(ck, " --tokenizer-type NullTokenizer --vocab-size 200", 5);
  fs::remove_all(d);
}

// With a per-token loss (a sum over tokens, divided by the global token count at the end) the
// aux loss is scaled by the microbatch's tokens, as Megatron's apply_load_balancing_loss: the
// load-balancing term weighs the same as with the mean loss. A large coefficient makes it
// dominate the gradient, so a missing factor (64 here) would show in the grad norm.
TEST(MoeTraining, AuxLossWeighsTheSameWithPerTokenLoss) {
  // Each of the two router losses in turn dominates the gradient: the load-balancing loss, then
  // the z-loss (scaled by the microbatch's tokens under a per-token loss, as Megatron).
  for (const std::string coeffs : {" --moe-aux-loss-coeff 100 --moe-z-loss-coeff 0",
                                   " --moe-aux-loss-coeff 0.01 --moe-z-loss-coeff 100"}) {
    const std::string one =
        "OMP_NUM_THREADS=1 " + tool("pretrain_gpt") + kMoe + " --train-iters 1" + coeffs;
    const fs::path d = fresh_dir("moe_per_token");
    RunResult mean = run(one + " --tensorboard-dir " + (d / "mean").string());
    RunResult per_token =
        run(one + " --calculate-per-token-loss --tensorboard-dir " + (d / "tok").string());
    ASSERT_EQ(mean.rc, 0) << mean.output;
    ASSERT_EQ(per_token.rc, 0) << per_token.output;
    const double a = read_losses(d / "mean").at(1).second, b = read_losses(d / "tok").at(1).second;
    EXPECT_GT(a, 10.0) << coeffs;  // the router loss dominates
    EXPECT_NEAR(b, a, 1e-4 * a) << coeffs;
    fs::remove_all(d);
  }
}

// Top-1 routing must softmax over all experts first (Megatron's config check): a softmax over
// one chosen logit is constantly 1 and the router would never learn.
TEST(MoeTraining, TopOneNeedsPreSoftmax) {
  RunResult r = run("OMP_NUM_THREADS=1 " + tool("pretrain_gpt") + kMoe + " --moe-router-topk 1");
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("needs moe_router_pre_softmax"), std::string::npos) << r.output;
  RunResult ok = run("OMP_NUM_THREADS=1 " + tool("pretrain_gpt") + kMoe +
                     " --train-iters 1 --moe-router-topk 1 --moe-router-pre-softmax");
  EXPECT_EQ(ok.rc, 0) << ok.output;
}

// A checkpoint saved with the experts spread over two ranks resumes on one rank holding all of
// them, continuing as the uninterrupted EP=2 run.
TEST(MoeTraining, ExpertParallelCheckpointResumesWithoutExpertParallelism) {
  const fs::path d = fresh_dir("moe_ep_ckpt");
  const std::string ep2 = tool("pretrain_gpt") + kMoe + " --expert-model-parallel-size 2";
  RunResult full = run(mpirun(2) + ep2 + " --tensorboard-dir " + (d / "full").string());
  ASSERT_EQ(full.rc, 0) << full.output;
  const std::string ck = (d / "ckpt").string();
  RunResult half = run(mpirun(2) + ep2 + " --exit-interval 3 --save-interval 1000 --save " + ck);
  ASSERT_EQ(half.rc, 0) << half.output;
  RunResult resumed = run(mpirun(2) + tool("pretrain_gpt") + kMoe + " --load " + ck +
                          " --tensorboard-dir " + (d / "resumed").string());
  ASSERT_EQ(resumed.rc, 0) << resumed.output;
  const auto a = read_losses(d / "full"), b = read_losses(d / "resumed");
  ASSERT_EQ(b.size(), 3u);
  for (const auto& [it, v] : b)
    EXPECT_NEAR(v.first, a.at(it).first, 1e-5 * std::abs(a.at(it).first)) << "@" << it;
  // generate takes the training flags, expert parallelism included, and holds every expert.
  expect_generates(
      ck, " --expert-model-parallel-size 2 --tokenizer-type NullTokenizer --vocab-size 200", 5);
  fs::remove_all(d);
}

// Eight experts and eight-token sequences: in most steps some expert gets no token on some rank.
// Every expert still runs (on zero rows), so its weights get a (zero) gradient and DDP's
// overlapped bucket reduction sees the same parameters ready on every rank. It used to launch
// buckets in different orders on different ranks: wrong numbers at EP=2 and an MPI error at
// EP=1. --log-params-norm counts every expert once under expert parallelism (it missed the
// other ranks' experts).
TEST(MoeTraining, OverlappedReductionWithStarvedExpertsAndParamsNorm) {
  const std::string tiny =
      " --mock-data --vocab-size 128 --num-layers 2 --hidden-size 32 --num-attention-heads 4"
      " --num-experts 8 --moe-ffn-hidden-size 16 --moe-router-topk 2 --seq-length 8"
      " --max-position-embeddings 16 --micro-batch-size 1 --global-batch-size 4 --train-iters 6"
      " --lr 1e-2 --log-interval 1 --moe-aux-loss-coeff 0.01 --log-params-norm";
  const fs::path d = fresh_dir("moe_overlap");
  const std::string overlap = " --overlap-grad-reduce --ddp-bucket-size 500";
  const struct {
    std::string name, extra;
  } runs[] = {
      {"ref", ""},
      {"overlap", overlap},
      {"overlap_ep2", overlap + " --expert-model-parallel-size 2"},
      {"distopt_ep2", overlap + " --use-distributed-optimizer --expert-model-parallel-size 2"},
      {"ep4", " --expert-model-parallel-size 4"}};
  std::map<std::string, std::map<int64_t, std::pair<double, double>>> losses;
  std::map<std::string, std::vector<std::string>> norms;
  for (const auto& r : runs) {
    RunResult res = run(mpirun(4) + tool("pretrain_gpt") + tiny + r.extra + " --tensorboard-dir " +
                        (d / r.name).string());
    ASSERT_EQ(res.rc, 0) << r.name << ":\n" << res.output;
    losses[r.name] = read_losses(d / r.name);
    const std::regex re("params norm: ([0-9.]+)");
    for (auto it = std::sregex_iterator(res.output.begin(), res.output.end(), re);
         it != std::sregex_iterator(); ++it)
      norms[r.name].push_back((*it)[1]);
  }
  const auto& ref = losses.at("ref");
  ASSERT_EQ(ref.size(), 6u);
  ASSERT_EQ(norms.at("ref").size(), 6u);
  for (const auto& r : runs) {
    ASSERT_EQ(losses.at(r.name).size(), 6u) << r.name;
    for (const auto& [it, v] : ref) {
      EXPECT_NEAR(losses.at(r.name).at(it).first, v.first, 1e-5 * v.first) << r.name << " @" << it;
      EXPECT_NEAR(losses.at(r.name).at(it).second, v.second, 1e-4 * v.second)
          << r.name << " grad norm @" << it;
    }
    EXPECT_EQ(norms.at(r.name), norms.at("ref")) << r.name;
  }
  fs::remove_all(d);
}

// A shared expert (--moe-shared-expert-intermediate-size; checked against PyTorch in
// GPTModelReference.SharedExpertMoeMatchesPyTorch) is a dense MLP split over TP like any other:
// the same losses at TP=2 and EP=2 as on one rank. Hugging Face's Mixtral has no shared expert,
// so the export refuses it (HFConfig.MixtralFieldsAndRouterRefusals).
TEST(MoeTraining, SharedExpertLossesDoNotDependOnTheLayout) {
  const std::string shared =
      " --moe-shared-expert-intermediate-size 64 --train-iters 4" + std::string(kSgd);
  const fs::path d = fresh_dir("moe_shared");
  const struct {
    std::string name, launcher, extra;
  } runs[] = {{"one", "OMP_NUM_THREADS=1 ", ""},
              {"tp2", mpirun(2), kTensorParallel},
              {"ep2", mpirun(2), " --expert-model-parallel-size 2"}};
  std::map<std::string, std::map<int64_t, std::pair<double, double>>> losses;
  for (const auto& r : runs) {
    const RunResult res = run(r.launcher + tool("pretrain_gpt") + kMoe + shared + r.extra +
                              " --tensorboard-dir " + (d / r.name).string());
    ASSERT_EQ(res.rc, 0) << r.name << ":\n" << res.output;
    losses[r.name] = read_losses(d / r.name);
  }
  const auto& ref = losses.at("one");
  ASSERT_EQ(ref.size(), 4u);
  for (const auto& r : runs)
    for (const auto& [it, v] : ref) {
      EXPECT_NEAR(losses.at(r.name).at(it).first, v.first, 1e-5 * v.first) << r.name << " @" << it;
      EXPECT_NEAR(losses.at(r.name).at(it).second, v.second, 1e-4 * v.second)
          << r.name << " grad norm @" << it;
    }
  const RunResult odd = run(mpirun(2) + tool("pretrain_gpt") + kMoe + kTensorParallel +
                            " --moe-shared-expert-intermediate-size 63");
  EXPECT_NE(odd.rc, 0);
  EXPECT_NE(odd.output.find("must be positive and a multiple of --tensor-model-parallel-size"),
            std::string::npos)
      << odd.output;
  fs::remove_all(d);
}

TEST(MoeTraining, BadExpertParallelSizesAreRefused) {
  struct Case {
    int np;
    std::string flags, expect;
  };
  const std::string dense =
      " --model gpt2-tiny --mock-data --seq-length 32 --micro-batch-size 2 --train-iters 1"
      " --lr 1e-4";
  const Case cases[] = {
      {2, dense + " --expert-model-parallel-size 2", "needs a mixture-of-experts model"},
      {2, dense + " --num-experts 0 --expert-model-parallel-size 2",
       "needs a mixture-of-experts model"},
      {2, kMoe + std::string(" --expert-model-parallel-size 2 --pipeline-model-parallel-size 2"),
       "must be a multiple of --expert-model-parallel-size"},
      {3, kMoe + std::string(" --expert-model-parallel-size 3 --global-batch-size 6"),
       "--num-experts (4) must be a multiple of --expert-model-parallel-size (3)"},
  };
  for (const Case& c : cases) {
    RunResult r = run(mpirun(c.np) + tool("pretrain_gpt") + c.flags);
    EXPECT_NE(r.rc, 0) << c.flags << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.flags << "\n" << r.output;
  }
}

// Megatron's default splits the experts over the TP ranks too, which mcore does not: TP needs
// --expert-tensor-parallel-size 1 said, and sequence parallelism.
TEST(MoeTraining, TensorParallelExpertsAreRefused) {
  const struct {
    std::string flags, expect;
  } cases[] = {
      {" --tensor-model-parallel-size 2 --sequence-parallel", "--expert-tensor-parallel-size 1"},
      {" --tensor-model-parallel-size 2 --expert-tensor-parallel-size 1",
       "needs --sequence-parallel"},
      {" --expert-tensor-parallel-size 2", "tensor-parallel experts are not implemented"},
  };
  for (const auto& c : cases) {
    RunResult r = run(mpirun(2) + tool("pretrain_gpt") + kMoe + c.flags);
    EXPECT_NE(r.rc, 0) << c.flags << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.flags << "\n" << r.output;
  }
}

}  // namespace
}  // namespace mcore::training

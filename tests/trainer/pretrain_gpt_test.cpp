// End-to-end tests of tools/pretrain_gpt: the binary is run as users run it (alone or under
// mpirun) on tiny models, and its JSONL metrics and checkpoints are read back.
//   - the loss on a tiny real corpus (byte-tokenized with tools/preprocess_data) falls below a
//     threshold in a short run;
//   - data-parallel (and tensor-parallel) layouts with the same global batch give the same losses
//     and weights;
//   - a run killed with SIGKILL after a checkpoint and resumed gives bitwise the losses and
//     weights of an uninterrupted run;
//   - bad flags and corrupt checkpoints end the job non-zero with the reason.
// The binaries must be built (cmake --build build --target pretrain_gpt preprocess_data).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/dist_checkpointing/metadata.h"
#include "mcore/training/jsonl_logger.h"
#include "mcore/training/tensorboard_writer.h"
#include "tests/common/test_util.h"
#include "tests/trainer/trainer_test_util.h"

namespace mcore::training::trainer_test {
namespace {

const char* kTinyModel =
    " --model gpt2-tiny --seq-length 32 --max-position-embeddings 64 --log-interval 5";

void expect_ok(const RunResult& r, const std::string& what) {
  ASSERT_EQ(r.rc, 0) << what << " failed:\n" << r.output;
}

TEST(PretrainGPT, LossFallsOnTinyRealCorpus) {
  fs::path d = fresh_dir("real");
  {
    // A small corpus with structure to learn: random sentences over a tiny grammar.
    std::ofstream f(d / "corpus.jsonl");
    const char* subj[] = {"the cat", "a dog", "my friend", "the old man", "a small bird"};
    const char* verb[] = {"eats", "sees", "likes", "finds", "wants", "carries"};
    const char* obj[] = {"an apple", "the ball", "a book", "some bread", "the red hat"};
    uint64_t x = 12345;
    auto next = [&](int n) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      return static_cast<int>((x >> 33) % n);
    };
    for (int doc = 0; doc < 400; ++doc) {
      std::string s;
      for (int k = 0; k < 4; ++k)
        s += std::string(subj[next(5)]) + " " + verb[next(6)] + " " + obj[next(5)] + ". ";
      f << "{\"text\": \"" << s << "\"}\n";
    }
  }
  expect_ok(run(tool("preprocess_data") + " --input " + (d / "corpus.jsonl").string() +
                " --output-prefix " + (d / "data").string() +
                " --tokenizer-type ByteTokenizer --append-eod --workers 1"),
            "preprocess_data");
  RunResult r = run("OMP_NUM_THREADS=2 " + tool("pretrain_gpt") + kTinyModel + " --data-path " +
                    (d / "data_text_document").string() +
                    " --split 90,10,0 --tokenizer-type ByteTokenizer --micro-batch-size 4"
                    " --global-batch-size 8 --train-iters 100 --lr 5e-3 --lr-warmup-iters 5"
                    " --lr-decay-style cosine --min-lr 5e-4 --eval-interval 50 --eval-iters 4"
                    " --data-cache-path " +
                    (d / "cache").string() + " --tensorboard-dir " + (d / "tb").string());
  expect_ok(r, "pretrain_gpt");
  EXPECT_NE(r.output.find(" iteration      100/     100 | consumed samples:          800 |"),
            std::string::npos)
      << r.output;
  // The GEMM backend and its kernel are named at start, before the arguments are printed (not
  // at the first GEMM, which comes only after the model and the data are built).
  const size_t gemm_line = r.output.find("GEMM backend: ");
  ASSERT_NE(gemm_line, std::string::npos) << r.output;
  EXPECT_NE(r.output.find(", kernel ", gemm_line), std::string::npos) << r.output;
  EXPECT_LT(gemm_line, r.output.find(" arguments ")) << r.output;
  double valid = NAN;
  for (const auto& rec : read_jsonl((d / "tb" / "metrics.jsonl").string())) {
    if (rec.contains("validation lm loss") && rec.at("iteration") == 100)
      valid = rec.at("validation lm loss").get<double>();
  }
  // ln(512) = 6.24 at the start; the run reaches about 1.7. 2.0 leaves margin for the order
  // of float reductions on other machines while failing any run that does not learn.
  EXPECT_LT(valid, 2.0) << r.output;
  // TensorBoard: one event file with the loss of every iteration.
  int64_t loss_events = 0;
  for (const auto& e : fs::directory_iterator(d / "tb")) {
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) != 0) continue;
    for (const auto& sc : read_event_file(e.path().string()).scalars)
      loss_events += sc.tag == "lm loss";
  }
  EXPECT_EQ(loss_events, 100);
  fs::remove_all(d);
}

TEST(PretrainGPT, DataAndTensorParallelLayoutsGiveTheSameLosses) {
  // SGD for the weight comparison: Adam divides by sqrt(v), which turns reduction-order noise
  // in gradients that are zero in exact arithmetic (the key biases: softmax ignores them) into
  // full +-lr steps, so Adam weights can only agree to ~lr, whatever the precision.
  const std::string flags = std::string(kTinyModel) +
                            " --mock-data --micro-batch-size 1 --global-batch-size 4"
                            " --train-iters 6 --optimizer sgd --lr 0.05 --hidden-dropout 0"
                            " --attention-dropout 0";
  struct Layout {
    int np, tp;
  };
  std::map<std::string, std::map<int64_t, std::pair<double, double>>> losses;
  std::map<std::string, fs::path> ckpts;
  for (Layout l : {Layout{1, 1}, Layout{2, 1}, Layout{4, 1}, Layout{2, 2}, Layout{4, 2}}) {
    const std::string name = "np" + std::to_string(l.np) + "_tp" + std::to_string(l.tp);
    fs::path d = fresh_dir("layout_" + name);
    expect_ok(run(mpirun(l.np) + tool("pretrain_gpt") + flags + " --tensor-model-parallel-size " +
                  std::to_string(l.tp) + " --tensorboard-dir " + (d / "tb").string() + " --save " +
                  (d / "ckpt").string() + " --save-interval 1000"),
              name);
    losses[name] = read_losses(d / "tb");
    ckpts[name] = d / "ckpt" / dist_checkpointing::checkpoint_dir_name(6);
  }
  const auto& ref = losses.at("np1_tp1");
  ASSERT_EQ(ref.size(), 6u);
  for (const auto& [name, l] : losses) {
    ASSERT_EQ(l.size(), ref.size()) << name;
    for (const auto& [it, v] : ref) {
      // fp32 training; only the order of reductions differs (relative 1e-5, as the issue says).
      EXPECT_NEAR(l.at(it).first, v.first, 1e-5 * std::abs(v.first)) << name << " iteration " << it;
      EXPECT_NEAR(l.at(it).second, v.second, 1e-4 * std::abs(v.second))
          << name << " grad norm, iteration " << it;
    }
  }
  // Weights after 6 Adam steps: the checkpoints hold the global tensors whatever the layout.
  auto meta = dist_checkpointing::CheckpointMetadata::read(ckpts.at("np1_tp1").string());
  for (const auto& [key, rec] : meta.tensors) {
    if (key.rfind("model.", 0) != 0) continue;
    Tensor want = dist_checkpointing::load_global_tensor(ckpts.at("np1_tp1").string(), key);
    for (const auto& [name, dir] : ckpts) {
      Tensor got = dist_checkpointing::load_global_tensor(dir.string(), key);
      // fp32, only the order of reductions differs: relative 1e-5 as the issue asks (absolute
      // 1e-7 for elements near zero).
      EXPECT_TENSOR_CLOSE(got, want, 1e-5, 1e-7) << name << " " << key;
    }
  }
  for (const auto& [name, dir] : ckpts) fs::remove_all(dir.parent_path().parent_path());
}

TEST(PretrainGPT, ExactResumeAfterKill9) {
  // Dropout on, so the RNG state must be restored too; TP=2 so that the checkpoint is sharded.
  const std::string flags = std::string(kTinyModel) +
                            " --mock-data --micro-batch-size 2 --global-batch-size 4"
                            " --train-iters 10 --lr 1e-3 --lr-warmup-iters 2 --save-interval 4"
                            " --tensor-model-parallel-size 2";
  auto cmd = [&](const fs::path& d) {
    return tool("pretrain_gpt") + flags + " --save " + (d / "ckpt").string() + " --load " +
           (d / "ckpt").string() + " --tensorboard-dir " + (d / "tb").string();
  };
  fs::path a = fresh_dir("resume_a"), b = fresh_dir("resume_b");
  expect_ok(run(mpirun(2) + cmd(a)), "uninterrupted run");
  // Killed with SIGKILL right after iteration 6 (checkpoint at 4, two iterations lost).
  RunResult killed = run("MCORE_FAULT_KILL_AT_ITERATION=6 " + mpirun(2) + cmd(b));
  ASSERT_NE(killed.rc, 0) << killed.output;
  ASSERT_TRUE(fs::exists(b / "ckpt" / "iter_0000004"));
  ASSERT_FALSE(fs::exists(b / "ckpt" / "iter_0000008"));
  RunResult resumed = run(mpirun(2) + cmd(b));
  expect_ok(resumed, "resumed run");
  EXPECT_NE(resumed.output.find("at iteration 4"), std::string::npos) << resumed.output;

  auto la = read_losses(a / "tb"), lb = read_losses(b / "tb");
  ASSERT_EQ(la.size(), 10u);
  ASSERT_EQ(lb.size(), 10u);  // the logger dropped the killed run's records after 4
  for (const auto& [it, v] : la) {
    EXPECT_EQ(lb.at(it).first, v.first) << "lm loss at iteration " << it;
    EXPECT_EQ(lb.at(it).second, v.second) << "grad norm at iteration " << it;
  }
  const std::string ca = (a / "ckpt" / "iter_0000010").string();
  const std::string cb = (b / "ckpt" / "iter_0000010").string();
  auto meta = dist_checkpointing::CheckpointMetadata::read(ca);
  int compared = 0;
  for (const auto& [key, rec] : meta.tensors) {
    Tensor x = dist_checkpointing::load_global_tensor(ca, key);
    Tensor y = dist_checkpointing::load_global_tensor(cb, key);
    ASSERT_EQ(x.shape(), y.shape()) << key;
    EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()), 0) << key << " differs";
    ++compared;
  }
  EXPECT_GT(compared, 10);
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST(PretrainGPT, BadFlagsExitNonZeroWithTheReason) {
  const std::string base = tool("pretrain_gpt") + kTinyModel +
                           " --mock-data --train-iters 2"
                           " --lr 1e-3";
  struct Case {
    std::string extra, expect;
  };
  for (const Case& c : {Case{" --micro-batch-size 1 --no-such-flag 3", "--no-such-flag"},
                        Case{" --micro-batch-size 2 --global-batch-size 5", "divisible"},
                        Case{" --micro-batch-size 1 --lr-decay-style bogus", "bogus"},
                        Case{" --micro-batch-size 1 --tensor-model-parallel-size 3", "tensor"}}) {
    RunResult r = run(base + c.extra);
    EXPECT_NE(r.rc, 0) << c.extra << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.extra << "\n" << r.output;
  }
  // A diverging run: the NaN/Inf loss check names the iteration and the rank.
  RunResult nan = run(base +
                      " --micro-batch-size 2 --global-batch-size 8 --train-iters 50"
                      " --optimizer sgd --clip-grad 0 --lr 1e4");
  EXPECT_NE(nan.rc, 0) << nan.output;
  EXPECT_NE(nan.output.find("Rank 0: found "), std::string::npos) << nan.output;
  EXPECT_NE(nan.output.find("in local forward loss calculation at iteration"), std::string::npos)
      << nan.output;
  // Interleaving needs at least as many microbatches per step as pipeline stages.
  RunResult pp = run(
      mpirun(2) + base +
      " --num-layers 4 --micro-batch-size 1 --global-batch-size 1 --pipeline-model-parallel-size 2"
      " --num-virtual-stages-per-pipeline-rank 2");
  EXPECT_NE(pp.rc, 0) << pp.output;
  EXPECT_NE(pp.output.find("microbatches per step"), std::string::npos) << pp.output;
}

TEST(PretrainGPT, CorruptCheckpointIsAnErrorNamingTheFile) {
  fs::path d = fresh_dir("corrupt");
  const std::string cmd = tool("pretrain_gpt") + kTinyModel +
                          " --mock-data --micro-batch-size 1 --global-batch-size 2 --lr 1e-3"
                          " --save-interval 1000 --save " +
                          (d / "ckpt").string() + " --load " + (d / "ckpt").string();
  expect_ok(run(cmd + " --train-iters 2"), "first run");
  const fs::path shard = d / "ckpt" / "iter_0000002" / "rank_00000.safetensors";
  ASSERT_TRUE(fs::exists(shard));
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-16, std::ios::end);
    char c;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(-16, std::ios::end);
    f.write(&c, 1);
  }
  RunResult r = run(cmd + " --train-iters 4");
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("rank_00000.safetensors"), std::string::npos) << r.output;
  // A checkpoint with a missing shard file.
  fs::remove(shard);
  r = run(cmd + " --train-iters 4");
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("rank_00000.safetensors"), std::string::npos) << r.output;
  fs::remove_all(d);
}

TEST(PretrainGPT, SigtermSavesACheckpointAndExitsCleanly) {
  fs::path d = fresh_dir("sigterm");
  const std::string prog = tool("pretrain_gpt") + kTinyModel +
                           " --mock-data --micro-batch-size 1 --global-batch-size 2 --lr 1e-3"
                           " --train-iters 100000 --save-interval 100000 --save " +
                           (d / "ckpt").string() + " --tensorboard-dir " + (d / "tb").string();
  const std::string metrics = (d / "tb" / "metrics.jsonl").string();
  // Start, wait until iterations are being logged, SIGTERM, and report the exit status.
  RunResult r = run("sh -c '" + prog + " > " + (d / "out.txt").string() +
                    " 2>&1 & pid=$!; n=0; while [ ! -s " + metrics +
                    " ] && [ $n -lt 400 ]; do sleep 0.05; n=$((n+1)); done; kill -TERM $pid; "
                    "wait $pid; echo exit status $?'");
  std::ifstream f(d / "out.txt");
  std::string out((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(r.output.find("exit status 0"), std::string::npos) << r.output << out;
  EXPECT_NE(out.find("exiting program after receiving signal 15"), std::string::npos) << out;
  auto latest = dist_checkpointing::read_latest_checkpoint_dir((d / "ckpt").string());
  ASSERT_TRUE(latest.has_value()) << out;
  dist_checkpointing::verify_checkpoint((d / "ckpt" / *latest).string());
  fs::remove_all(d);
}

}  // namespace
}  // namespace mcore::training::trainer_test

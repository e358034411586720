// End-to-end tests of pretrain_gpt's less common Megatron flags, run as users run the tool:
//   - --skip-train evaluates the loaded checkpoint and neither trains nor saves;
//   - evaluation does not shift the dropout masks of the training steps after it;
//   - MCORE_DISTRIBUTED_TIMEOUT_SECONDS overrides --distributed-timeout-minutes;
//   - --log-params-norm counts every element once, so TP=1 and TP=2 print the same norm;
//   - implementation knobs of Megatron launch scripts are accepted with a note;
//   - --log-num-zeros-in-grad prints Megatron's "num zeros" field, the same count with and
//     without the distributed optimizer; --use-rotary-position-embeddings selects RoPE;
//   - --use-checkpoint-args takes the model shape from the loaded checkpoint;
//   - --timing-log-level prints Megatron's phase timers;
//   - a --load without a checkpoint warns; zero intervals, bad shapes and betas are errors.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "tests/trainer/trainer_test_util.h"

namespace mcore::training::trainer_test {
namespace {

const char* kTiny =
    " --model gpt2-tiny --seq-length 32 --max-position-embeddings 64 --log-interval 1"
    " --mock-data --micro-batch-size 2 --global-batch-size 4 --lr 1e-3 --seed 7";

std::string pretrain() {
  return "OMP_NUM_THREADS=1 " + tool("pretrain_gpt") + kTiny;
}

// The "params norm: X" values of the iteration lines, in order.
std::vector<double> params_norms(const std::string& out) {
  std::vector<double> v;
  const std::regex re("params norm: ([0-9.]+)");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), re); it != std::sregex_iterator();
       ++it)
    v.push_back(std::stod((*it)[1]));
  return v;
}

TEST(PretrainGPTFlags, SkipTrainEvaluatesTheCheckpointWithoutTrainingOrSaving) {
  fs::path d = fresh_dir("skip_train");
  const std::string ck = (d / "ck").string();
  RunResult first =
      run(pretrain() + " --train-iters 4 --save " + ck + " --save-interval 2 --exit-interval 2");
  ASSERT_EQ(first.rc, 0) << first.output;
  // With the training length and the schedule given, as in the original run's script.
  RunResult r = run(pretrain() + " --train-iters 4 --load " + ck + " --save " + ck +
                    " --save-interval 1 --skip-train --eval-iters 2");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("skipping training (--skip-train is on)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("validation loss at iteration 2 on validation set"), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("iteration        3/"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d / "ck" / "iter_0000003")) << r.output;
  EXPECT_FALSE(fs::exists(d / "ck" / "iter_0000004")) << r.output;
  // Evaluation only: no training length, no learning rate.
  std::string bare = pretrain();
  bare.replace(bare.find(" --lr 1e-3"), 10, "");
  RunResult e = run(bare + " --load " + ck + " --skip-train --eval-iters 2");
  ASSERT_EQ(e.rc, 0) << e.output;
  EXPECT_NE(e.output.find("validation loss at iteration 2 on validation set"), std::string::npos)
      << e.output;
  fs::remove_all(d);
}

TEST(PretrainGPTFlags, EvaluationDoesNotChangeTheTrainingRun) {
  fs::path d = fresh_dir("eval_rng");
  const std::string base =
      pretrain() + " --train-iters 6 --hidden-dropout 0.1 --attention-dropout 0.1";
  auto losses = [&](const std::string& extra, const std::string& name) {
    RunResult r = run(base + extra + " --tensorboard-dir " + (d / name).string());
    EXPECT_EQ(r.rc, 0) << r.output;
    return read_losses(d / name);
  };
  const auto plain = losses(" --eval-iters 0", "plain");
  const auto evaluated = losses(" --eval-interval 2 --eval-iters 2", "evaluated");
  ASSERT_EQ(plain.size(), 6u);
  ASSERT_EQ(evaluated.size(), 6u);
  for (const auto& [it, v] : plain)
    EXPECT_EQ(evaluated.at(it).first, v.first) << "iteration " << it;
  fs::remove_all(d);
}

TEST(PretrainGPTFlags, TimeoutEnvironmentVariableOverridesTheFlag) {
  // Two ranks told different lengths: the one that finishes first waits at the exit barrier
  // for a rank still training. The variable's 5 s, not the flag's 10 minutes, must end it.
  const std::string env = "MCORE_DISTRIBUTED_TIMEOUT_SECONDS=5 ";
  std::string launch = mpirun(1);
  launch.replace(launch.find("MCORE_DISTRIBUTED_TIMEOUT_SECONDS=60"), 36, env);
  const std::string cmd = "timeout 120 " + launch + tool("pretrain_gpt") + kTiny +
                          " --train-iters 2 : -np 1 " + tool("pretrain_gpt") + kTiny +
                          " --train-iters 200";
  const auto t0 = std::chrono::steady_clock::now();
  RunResult r = run(cmd);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.rc, 124) << "still hanging after 120 s:\n" << r.output;
  EXPECT_NE(r.output.find("(timeout 5 s;"), std::string::npos) << r.output;
  EXPECT_LT(s, 100) << r.output;
}

TEST(PretrainGPTFlags, ParamsNormCountsEachElementOnce) {
  const std::string flags = kTiny + std::string(" --train-iters 2 --log-params-norm");
  RunResult one = run("OMP_NUM_THREADS=1 " + tool("pretrain_gpt") + flags);
  RunResult two = run(mpirun(2) + tool("pretrain_gpt") + flags + " --tensor-model-parallel-size 2");
  ASSERT_EQ(one.rc, 0) << one.output;
  ASSERT_EQ(two.rc, 0) << two.output;
  const auto a = params_norms(one.output), b = params_norms(two.output);
  ASSERT_EQ(a.size(), 2u) << one.output;
  ASSERT_EQ(b.size(), 2u) << two.output;
  // Layer norms and row-parallel biases live on both TP ranks: counting them twice, or
  // leaving out a shard, moves the norm by far more than the printed precision.
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_GT(a[i], 1.0);
    EXPECT_NEAR(a[i], b[i], 2e-3) << one.output << two.output;
  }
}

TEST(PretrainGPTFlags, ImplementationKnobsAreAcceptedWithANote) {
  fs::path d = fresh_dir("knobs");
  RunResult r = run(pretrain() +
                    " --train-iters 1 --use-flash-attn --use-mcore-models --transformer-impl local"
                    " --no-masked-softmax-fusion --no-gradient-accumulation-fusion"
                    " --attention-softmax-in-fp32 --ckpt-format torch_dist --manual-gc"
                    " --empty-unused-memory-level 1 --no-overlap-p2p-communication --load " +
                    (d / "nothing_here").string());
  ASSERT_EQ(r.rc, 0) << r.output;
  for (const char* flag : {"--use-flash-attn", "--transformer-impl", "--no-masked-softmax-fusion",
                           "--ckpt-format", "--manual-gc", "--empty-unused-memory-level"}) {
    EXPECT_NE(r.output.find(std::string("WARNING: ") + flag), std::string::npos) << flag;
  }
  EXPECT_NE(r.output.find("has no effect"), std::string::npos) << r.output;
  // A --load that names no checkpoint starts from scratch, and says so.
  EXPECT_NE(r.output.find("no checkpoint found under --load"), std::string::npos) << r.output;
  fs::remove_all(d);
}

// More flags of current Megatron-LM launch scripts (checkpointing, W&B, TP overlap, optimizer
// dtypes at their fp32 defaults): accepted, each with a note.
TEST(PretrainGPTFlags, LaunchScriptFlagsAreAcceptedWithANote) {
  RunResult r = run(pretrain() +
                    " --train-iters 1 --async-save --no-ckpt-fully-parallel-save"
                    " --ckpt-fully-parallel-load --use-dist-ckpt --dist-ckpt-strictness log_all"
                    " --wandb-project p --wandb-exp-name e --attention-backend flash"
                    " --tp-comm-overlap --cross-entropy-fusion-impl te --optimizer-cpu-offload"
                    " --use-precision-aware-optimizer --main-grads-dtype fp32 --exp-avg-dtype fp32"
                    " --rerun-mode disabled --num-distributed-optimizer-instances 1");
  ASSERT_EQ(r.rc, 0) << r.output;
  for (const char* flag :
       {"--async-save", "--(no-)ckpt-fully-parallel-save", "--ckpt-fully-parallel-load",
        "--use-dist-ckpt", "--dist-ckpt-strictness", "--wandb-project", "--wandb-exp-name",
        "--attention-backend", "--tp-comm-overlap", "--cross-entropy-fusion-impl",
        "--optimizer-cpu-offload", "--use-precision-aware-optimizer"}) {
    EXPECT_NE(r.output.find(std::string("WARNING: ") + flag), std::string::npos) << flag;
  }
}

// The "num zeros: X" values of the iteration lines, in order.
std::vector<double> num_zeros(const std::string& out) {
  std::vector<double> v;
  const std::regex re(R"(grad norm: [0-9.]+ \| num zeros: ([0-9.]+) \|)");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), re); it != std::sregex_iterator();
       ++it)
    v.push_back(std::stod((*it)[1]));
  return v;
}

TEST(PretrainGPTFlags, NumZerosInGradIsCountedOnceWithOrWithoutShardedOptimizer) {
  // The mock batches use a fraction of the 256-token vocabulary (and the padding rows none), so
  // the embedding gradient has whole zero rows: a positive count, well below the parameter count.
  const std::string flags = std::string(kTiny) + " --train-iters 3 --log-num-zeros-in-grad";
  RunResult plain = run(mpirun(2) + tool("pretrain_gpt") + flags);
  RunResult dist = run(mpirun(2) + tool("pretrain_gpt") + flags + " --use-distributed-optimizer");
  ASSERT_EQ(plain.rc, 0) << plain.output;
  ASSERT_EQ(dist.rc, 0) << dist.output;
  const auto a = num_zeros(plain.output), b = num_zeros(dist.output);
  ASSERT_EQ(a.size(), 3u) << plain.output;
  EXPECT_EQ(a, b) << dist.output;
  for (double z : a) EXPECT_GT(z, 0.0);
  RunResult off = run(pretrain() + " --train-iters 1");
  EXPECT_EQ(off.output.find("num zeros"), std::string::npos) << off.output;
}

TEST(PretrainGPTFlags, UseRotaryPositionEmbeddingsSelectsRope) {
  const std::string extra = " --train-iters 2 --hidden-dropout 0 --attention-dropout 0";
  RunResult old_flag = run(pretrain() + extra + " --use-rotary-position-embeddings");
  RunResult rope = run(pretrain() + extra + " --position-embedding-type rope");
  RunResult learned = run(pretrain() + extra);
  ASSERT_EQ(old_flag.rc, 0) << old_flag.output;
  ASSERT_EQ(rope.rc, 0) << rope.output;
  ASSERT_EQ(learned.rc, 0) << learned.output;
  const std::regex re("lm loss: ([0-9.E+-]+)");
  auto losses = [&](const std::string& out) {
    std::vector<std::string> v;
    for (auto it = std::sregex_iterator(out.begin(), out.end(), re); it != std::sregex_iterator();
         ++it)
      v.push_back((*it)[1]);
    return v;
  };
  ASSERT_EQ(losses(rope.output).size(), 2u) << rope.output;
  EXPECT_EQ(losses(old_flag.output), losses(rope.output));
  EXPECT_NE(losses(learned.output), losses(rope.output));  // the flag changed the model
}

// --use-checkpoint-args: a run that gives no model shape takes it (and the tokenizer) from the
// checkpoint it loads, and resumes; without the flag the same command lacks --num-layers.
TEST(PretrainGPTFlags, UseCheckpointArgsTakesTheShapeFromTheCheckpoint) {
  fs::path d = fresh_dir("ckpt_args");
  const std::string common =
      " --mock-data --micro-batch-size 2 --global-batch-size 4 --lr 1e-3 --log-interval 1"
      " --save-interval 2 --save " +
      (d / "ckpt").string();
  RunResult first = run("OMP_NUM_THREADS=1 " + tool("pretrain_gpt") + common +
                        " --num-layers 3 --hidden-size 48 --num-attention-heads 4"
                        " --ffn-hidden-size 80 --seq-length 16 --max-position-embeddings 32"
                        " --normalization RMSNorm --swiglu --tokenizer-type NullTokenizer"
                        " --vocab-size 200 --hidden-dropout 0 --attention-dropout 0"
                        " --train-iters 4 --exit-interval 2");
  ASSERT_EQ(first.rc, 0) << first.output;
  const std::string resume = "OMP_NUM_THREADS=1 " + tool("pretrain_gpt") + common + " --load " +
                             (d / "ckpt").string() + " --train-iters 4";
  RunResult without = run(resume);
  EXPECT_NE(without.rc, 0) << without.output;
  EXPECT_NE(without.output.find("--num-layers"), std::string::npos) << without.output;
  RunResult with = run(resume + " --use-checkpoint-args");
  ASSERT_EQ(with.rc, 0) << with.output;
  EXPECT_NE(with.output.find("iteration        4/       4"), std::string::npos) << with.output;
  EXPECT_EQ(with.output.find("iteration        1/"), std::string::npos) << with.output;
  EXPECT_NE(with.output.find("num_layers ...................................... 3"),
            std::string::npos)
      << with.output;
  // Dropout is part of what the run trains: it comes from the checkpoint too.
  EXPECT_NE(with.output.find("hidden_dropout .................................. 0.0"),
            std::string::npos)
      << with.output;
  // A preset with a ByteTokenizer: the preset's vocab_size (211) is not the tokenizer's and is
  // not restored, so --use-checkpoint-args resumes (it used to fail: "must be at least 256").
  const std::string byte_ck = (d / "byte").string();
  RunResult byte_first = run("OMP_NUM_THREADS=1 " + tool("pretrain_gpt") + kTiny +
                             " --tokenizer-type ByteTokenizer --train-iters 4 --exit-interval 2"
                             " --save-interval 2 --save " +
                             byte_ck);
  ASSERT_EQ(byte_first.rc, 0) << byte_first.output;
  RunResult byte_with = run("OMP_NUM_THREADS=1 " + tool("pretrain_gpt") +
                            " --mock-data --micro-batch-size 2 --global-batch-size 4 --lr 1e-3"
                            " --log-interval 1 --train-iters 4 --use-checkpoint-args --load " +
                            byte_ck);
  ASSERT_EQ(byte_with.rc, 0) << byte_with.output;
  EXPECT_NE(byte_with.output.find("iteration        4/       4"), std::string::npos)
      << byte_with.output;
  // A --load without a checkpoint yet (a job's first run) keeps the command line's arguments.
  RunResult fresh =
      run("OMP_NUM_THREADS=1 " + tool("pretrain_gpt") + kTiny +
          " --train-iters 1 --use-checkpoint-args --load " + (d / "nothing_yet").string());
  EXPECT_EQ(fresh.rc, 0) << fresh.output;
  EXPECT_NE(fresh.output.find("Checkpoint not found to provide arguments"), std::string::npos)
      << fresh.output;
  fs::remove_all(d);
}

// --timing-log-level: Megatron's "(min, max) time across ranks (ms)" report after each
// iteration line, with its timer names padded with dots; level 0 (the default) times only the
// checkpoint save; --log-timers-to-tensorboard writes "<name>-time" scalars.
TEST(PretrainGPTFlags, TimingLogLevelPrintsMegatronsTimers) {
  fs::path d = fresh_dir("timers");
  const std::string save = " --save " + (d / "ckpt").string() + " --save-interval 2";
  // Two ranks: the TensorBoard timers are a collective every rank joins, though one writes.
  RunResult l1 =
      run(mpirun(2) + tool("pretrain_gpt") + kTiny +
          " --train-iters 2 --log-interval 2 --timing-log-level 1" +
          " --log-timers-to-tensorboard --tensorboard-dir " + (d / "tb").string() + save);
  ASSERT_EQ(l1.rc, 0) << l1.output;
  const std::regex report(R"(\| ETA: [0-9:]+\n\(min, max\) time across ranks \(ms\):\n)"
                          R"(    forward-backward \.{31}: \([0-9.]+, [0-9.]+\)\n)");
  EXPECT_TRUE(std::regex_search(l1.output, report)) << l1.output;
  for (const char* name :
       {"all-grads-sync", "optimizer-inner-step", "optimizer ", "save-checkpoint"})
    EXPECT_NE(l1.output.find(std::string("    ") + name), std::string::npos) << name;
  // Level 2 timers (per microbatch) are off at level 1.
  EXPECT_EQ(l1.output.find("forward-compute"), std::string::npos) << l1.output;
  bool tb_has_timer = false;
  for (const auto& e : fs::directory_iterator(d / "tb")) {
    std::ifstream f(e.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    tb_has_timer = tb_has_timer || bytes.find("forward-backward-time") != std::string::npos;
  }
  EXPECT_TRUE(tb_has_timer);
  fs::remove_all(d / "ckpt");
  RunResult l0 = run(pretrain() + " --train-iters 2 --log-interval 2" + save);
  ASSERT_EQ(l0.rc, 0) << l0.output;
  EXPECT_EQ(l0.output.find("forward-backward ."), std::string::npos) << l0.output;
  EXPECT_NE(l0.output.find("    save-checkpoint ."), std::string::npos) << l0.output;
  RunResult l2 = run(pretrain() + " --train-iters 1 --timing-log-level 2");
  ASSERT_EQ(l2.rc, 0) << l2.output;
  EXPECT_NE(l2.output.find("    forward-compute ."), std::string::npos) << l2.output;
  EXPECT_NE(l2.output.find("    batch-generator ."), std::string::npos) << l2.output;
  fs::remove_all(d);
}

// Megatron-LM's iteration line (FORMATS.md): its fields in its order, microseconds in the
// timestamp, throughput only with --log-throughput, mcore's own fields after the nan count.
TEST(PretrainGPTFlags, IterationLineHasMegatronsFieldsInOrder) {
  RunResult r = run(pretrain() + " --train-iters 1 --log-throughput");
  ASSERT_EQ(r.rc, 0) << r.output;
  const std::regex line(
      R"( \[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\] iteration        1/       1 \|)"
      R"( consumed samples:            4 \| elapsed time per iteration \(ms\): [0-9.]+ \|)"
      R"( throughput per GPU \(TFLOP/s/GPU\): [0-9.]+ \| learning rate: [0-9.E+-]+ \|)"
      R"( global batch size:     4 \| lm loss: [0-9.E+-]+ \| loss scale: 1\.0 \|)"
      R"( grad norm: [0-9.]+ \| number of skipped iterations:   0 \|)"
      R"( number of nan iterations:   0 \| tokens per second: [0-9]+ \|)");
  EXPECT_TRUE(std::regex_search(r.output, line)) << r.output;
  RunResult plain = run(pretrain() + " --train-iters 1");
  ASSERT_EQ(plain.rc, 0) << plain.output;
  EXPECT_EQ(plain.output.find("throughput per GPU"), std::string::npos) << plain.output;
}

// The logged lm loss is all loss tokens' mean, as Megatron-LM reports it, whichever loss the
// gradients follow: with --eod-mask-loss the microbatches have different numbers of loss tokens,
// and a mean of the microbatch means would differ from it.
TEST(PretrainGPTFlags, LoggedLossIsTheMeanOverAllLossTokens) {
  fs::path d = fresh_dir("token_mean");
  {
    // Documents of 3 to 40 bytes: every 32-token sample holds a different number of EODs.
    std::ofstream f(d / "docs.jsonl");
    for (int i = 0; i < 300; ++i)
      f << "{\"text\": \"" << std::string(3 + (i * 7919) % 38, static_cast<char>('a' + i % 26))
        << "\"}\n";
  }
  RunResult prep = run(tool("preprocess_data") + " --input " + (d / "docs.jsonl").string() +
                       " --output-prefix " + (d / "docs").string() +
                       " --tokenizer-type ByteTokenizer --append-eod --workers 1");
  ASSERT_EQ(prep.rc, 0) << prep.output;
  const std::string base =
      "OMP_NUM_THREADS=1 " + tool("pretrain_gpt") +
      " --num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32"
      " --max-position-embeddings 32 --tokenizer-type ByteTokenizer --data-path " +
      (d / "docs_text_document").string() +
      " --split 98,2,0 --micro-batch-size 2 --global-batch-size 8 --train-iters 1 --lr 1e-3"
      " --eod-mask-loss --log-interval 1 --data-cache-path " +
      (d / "cache").string();
  auto first_loss = [&](const std::string& extra) {
    RunResult r = run(base + extra);
    EXPECT_EQ(r.rc, 0) << r.output;
    std::smatch m;
    const std::regex re("\\| lm loss: ([0-9.E+-]+) \\|");
    EXPECT_TRUE(std::regex_search(r.output, m, re)) << r.output;
    return m.empty() ? std::string() : m[1].str();
  };
  EXPECT_EQ(first_loss(""), first_loss(" --calculate-per-token-loss"));
  fs::remove_all(d);
}

// Two jobs saving into one directory would delete and overwrite each other's checkpoints: the
// second one to start refuses, naming the directory. A run resumed at its --train-iters whose
// iteration is a multiple of --save-interval leaves that checkpoint as it is (Megatron's final
// save rule); --exit-duration-in-mins 0 is off.
TEST(PretrainGPTFlags, SaveDirectoryOfARunningJobIsRefused) {
  fs::path d = fresh_dir("save_lock");
  const std::string ck = (d / "ck").string();
  const std::string first =
      pretrain() + " --train-iters 100000 --save " + ck + " --save-interval 1000";
  const std::string second = pretrain() + " --train-iters 2 --save " + ck + " --save-interval 1";
  RunResult r = run("sh -c '" + first + " >/dev/null 2>&1 & pid=$!; sleep 3; " + second +
                    "; rc=$?; kill $pid; wait $pid; exit $rc'");
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("is in use by another running job"), std::string::npos) << r.output;

  RunResult a = run(pretrain() + " --train-iters 2 --save " + ck + " --save-interval 2");
  ASSERT_EQ(a.rc, 0) << a.output;
  const auto written = fs::last_write_time(d / "ck" / "iter_0000002" / "metadata.json");
  RunResult b = run(pretrain() + " --train-iters 2 --load " + ck + " --save " + ck +
                    " --save-interval 2 --exit-duration-in-mins 0");
  ASSERT_EQ(b.rc, 0) << b.output;
  EXPECT_EQ(b.output.find("saving checkpoint"), std::string::npos) << b.output;
  EXPECT_EQ(fs::last_write_time(d / "ck" / "iter_0000002" / "metadata.json"), written);
  RunResult c = run(pretrain() + " --train-iters 3 --exit-duration-in-mins 0");
  ASSERT_EQ(c.rc, 0) << c.output;
  EXPECT_NE(c.output.find("iteration        3/       3"), std::string::npos) << c.output;
  fs::remove_all(d);
}

TEST(PretrainGPTFlags, BadValuesExitNonZeroNamingTheFlag) {
  fs::path d = fresh_dir("bad_values");
  const std::string file = (d / "a_file").string();
  run("touch " + file);
  struct Case {
    std::string extra, expect;
  };
  for (const Case& c :
       {Case{" --train-iters 3 --eval-interval 0", "--eval-interval must be positive"},
        Case{" --train-iters 3 --exit-interval 0", "--exit-interval must be positive"},
        Case{" --train-iters 3 --tensorboard-log-interval 0", "--tensorboard-log-interval"},
        Case{" --train-iters 3 --kv-channels 0", "--kv-channels must be positive"},
        Case{" --train-iters 3 --ffn-hidden-size 0", "--ffn-hidden-size must be positive"},
        Case{" --train-iters 3 --adam-beta1 1.5", "--adam-beta1 must lie in [0, 1)"},
        Case{" --train-iters 3 --dataloader-type cyclic", "--dataloader-type cyclic"},
        Case{" --train-iters 3 --distribute-saved-activations", "is not implemented in mcore"},
        Case{" --train-iters 3 --cpu-offloading", "--cpu-offloading is not implemented"},
        Case{" --train-iters 3 --mid-level-dataset-surplus -1", "--mid-level-dataset-surplus must"},
        Case{" --train-iters 3 --save " + file + " --save-interval 1", "is not a directory"},
        Case{" --train-iters 2 --lr-warmup-iters 2", "--lr-warmup-iters (2) must be below"},
        Case{" --train-iters 2 --use-torch-fsdp2", "--use-torch-fsdp2: FSDP is not implemented"},
        Case{" --train-iters 2 --fp8-format hybrid", "--fp8-format hybrid: fp8 training"},
        Case{" --train-iters 2 --use-legacy-models", "--use-legacy-models"},
        Case{" --train-iters 2 --no-position-embedding", "--no-position-embedding is deprecated"},
        Case{" --train-iters 2 --squared-relu", "--squared-relu is not implemented"},
        Case{" --train-iters 2 --rerun-mode validate_results", "--rerun-mode validate_results"},
        Case{" --train-iters 2 --exp-avg-dtype bf16", "--exp-avg-dtype bf16"},
        Case{" --train-iters 2 --main-grads-dtype bf16", "--main-grads-dtype bf16"},
        Case{" --train-iters 2 --num-distributed-optimizer-instances 2",
             "--num-distributed-optimizer-instances 2"}}) {
    RunResult r = run(pretrain() + c.extra);
    EXPECT_NE(r.rc, 0) << c.extra << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.extra << "\n" << r.output;
  }
  // First and last pipeline stages asking for more layers than the model has.
  RunResult pp = run(mpirun(2) + tool("pretrain_gpt") + kTiny +
                     " --train-iters 2 --num-layers 4 --pipeline-model-parallel-size 2"
                     " --decoder-first-pipeline-num-layers 3 --decoder-last-pipeline-num-layers 3");
  EXPECT_NE(pp.rc, 0) << pp.output;
  EXPECT_NE(pp.output.find("more than --num-layers (4)"), std::string::npos) << pp.output;
  fs::remove_all(d);
}

}  // namespace
}  // namespace mcore::training::trainer_test

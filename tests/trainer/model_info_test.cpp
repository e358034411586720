// tools/model_info as a user runs it: every preset's parameter count beside the published total
// (all "ok"), the per-rank count under tensor parallelism, and clear errors for bad input.
#include <gtest/gtest.h>

#include <sstream>

#include "tests/trainer/trainer_test_util.h"

namespace mcore::training::trainer_test {
namespace {

TEST(ModelInfo, EveryPublishedCountMatches) {
  RunResult r = run("OMP_NUM_THREADS=1 " + tool("model_info"));
  ASSERT_EQ(r.rc, 0) << r.output;
  int rows = 0, ok = 0;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("preset", 0) == 0 || line.empty()) continue;
    ++rows;
    line += ' ';
    if (line.find(" ok ") != std::string::npos) ++ok;
  }
  EXPECT_EQ(rows, 17) << r.output;  // 11 published models and 6 tiny variants
  EXPECT_EQ(ok, 11) << r.output;
  EXPECT_EQ(r.output.find("MISMATCH"), std::string::npos) << r.output;
}

// Megatron's sharding: the weights, column-parallel biases and the vocabulary (padded to a
// multiple of 128 x tp) split over the TP ranks; norms, learned positions and row-parallel biases
// replicated. Expected counts derived from the published totals and the architectures:
// - Llama 3 8B: 8,030,261,248 parameters, of which the 2 * 32 + 1 RMSNorm weights of size 4096
//   are replicated; its vocabulary (128256) needs no padding for tp 2.
// - GPT-2 124M: 124,439,808 parameters with 50257 x 768 embeddings; per layer 4,608 replicated
//   (two LayerNorms and the proj/fc2 biases), plus 1024 x 768 positions and the final
//   LayerNorm; the vocabulary pads to 50432 (a multiple of 256) for tp 2.
TEST(ModelInfo, PerTensorParallelRankCount) {
  constexpr int64_t llama_total = 8030261248, llama_replicated = (2 * 32 + 1) * 4096;
  constexpr int64_t llama_rank = (llama_total - llama_replicated) / 2 + llama_replicated;
  constexpr int64_t gpt2_total = 124439808, h = 768, vocab = 50257, padded = 50432;
  constexpr int64_t gpt2_replicated = 12 * 4608 + 1024 * h + 2 * h;
  constexpr int64_t gpt2_rank =
      (gpt2_total - vocab * h - gpt2_replicated) / 2 + padded / 2 * h + gpt2_replicated;
  static_assert(llama_rank == 4015263744 && gpt2_rank == 62708736);
  RunResult r = run("OMP_NUM_THREADS=1 " + tool("model_info") + " --tp 2 llama3-8b gpt2-124m");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find(" 4,015,263,744"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" 62,708,736"), std::string::npos) << r.output;
}

// Mixtral 8x7B: 46,702,792,704 parameters (published), of which each of the 8 experts in each of
// the 32 layers is a SwiGLU MLP of 3 x 4096 x 14336 = 176,160,768. Active per token (top-2):
// the total less 6 experts per layer, 12,879,925,248 (the Mixtral paper's "13B active"); on one
// of 8 expert-parallel ranks: the total less 7 experts per layer.
TEST(ModelInfo, MixtureOfExpertsActiveAndPerExpertParallelRankCounts) {
  constexpr int64_t total = 46702792704, expert = 3LL * 4096 * 14336;
  static_assert(total - 6 * 32 * expert == 12879925248);
  static_assert(total - 7 * 32 * expert == 7242780672);
  RunResult r = run("OMP_NUM_THREADS=1 " + tool("model_info") + " --ep 8 mixtral-8x7b");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find(" 8/top2 "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" 12,879,925,248 "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" 7,242,780,672"), std::string::npos) << r.output;
  r = run("OMP_NUM_THREADS=1 " + tool("model_info") + " --ep 3 mixtral-8x7b");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("--ep must divide the experts"), std::string::npos) << r.output;
  r = run("OMP_NUM_THREADS=1 " + tool("model_info") + " --ep 2 llama2-7b");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("(0 experts per layer)"), std::string::npos) << r.output;
}

TEST(ModelInfo, UnknownPresetAndBadTpFailClearly) {
  RunResult r = run("OMP_NUM_THREADS=1 " + tool("model_info") + " gpt2-124m nosuch");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("unknown model preset 'nosuch'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("llama3-8b"), std::string::npos) << "names the known presets";
  EXPECT_EQ(r.output.find("layers"), std::string::npos) << "no table before the error";
  r = run("OMP_NUM_THREADS=1 " + tool("model_info") + " --tp 0 gpt2-124m");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("--tp"), std::string::npos) << r.output;
}

// A --tp the model build rejects (TransformerConfig::validate: it must divide the heads, the query
// groups and the FFN hidden size) gets no per-rank count: an error naming the numbers and the
// sizes that fit. Llama 3 8B: 32 heads, 8 query groups -> 1, 2, 4, 8; 3 divides neither, 16 not
// the groups. GPT-2 1.5B: 25 heads -> 1, 5, 25.
TEST(ModelInfo, TensorParallelSizeTheModelBuildRejectsIsAnError) {
  const std::string model_info = "OMP_NUM_THREADS=1 " + tool("model_info");
  RunResult r = run(model_info + " --tp 3 llama3-8b");
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_EQ(r.output.find("4,0"), std::string::npos) << "no table, no count:\n" << r.output;
  EXPECT_EQ(r.output.find("layers"), std::string::npos) << r.output;
  for (const char* want : {"--tp 3 does not fit llama3-8b", "32 attention heads", "8 query groups",
                           "num_attention_heads (32)", "tensor_model_parallel_size (3)",
                           "Sizes that fit: --tp 1, 2, 4, 8"})
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;

  // Heads divide, query groups do not.
  r = run(model_info + " --tp 16 llama3-8b");
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_NE(r.output.find("num_query_groups (8)"), std::string::npos) << r.output;

  // Checked before any output, whatever the order of the names.
  r = run(model_info + " --tp 2 llama3-8b gpt2-1.5b");
  EXPECT_EQ(r.rc, 2) << r.output;
  EXPECT_EQ(r.output.find("layers"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--tp 2 does not fit gpt2-1.5b"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Sizes that fit: --tp 1, 5, 25"), std::string::npos) << r.output;

  // The listing of every preset still shows the ones --tp 2 fits, and marks the others: GPT-2
  // 1.5B (25 heads), mistral-tiny (1 query group) and the two Mixtrals (experts run without
  // tensor parallelism here).
  r = run(model_info + " --tp 2");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find(" 4,015,263,744"), std::string::npos) << r.output;
  std::istringstream lines(r.output);
  int marked = 0, notes = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.size() > 2 && line.compare(line.size() - 2, 2, " -") == 0) ++marked;
    if (line.rfind("- --tp 2 does not fit ", 0) == 0) ++notes;
  }
  EXPECT_EQ(marked, 4) << r.output;
  EXPECT_EQ(notes, 4) << r.output;
  EXPECT_NE(r.output.find("does not fit gpt2-1.5b"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("does not fit mistral-tiny"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("does not fit mixtral-8x7b"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace mcore::training::trainer_test

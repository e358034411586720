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
    while (!line.empty() && line.back() == ' ') line.pop_back();
    if (line.size() >= 3 && line.compare(line.size() - 3, 3, " ok") == 0) ++ok;
  }
  EXPECT_EQ(rows, 15) << r.output;  // 10 published models and 5 tiny variants
  EXPECT_EQ(ok, 10) << r.output;
  EXPECT_EQ(r.output.find("MISMATCH"), std::string::npos) << r.output;
}

// Megatron's sharding: every weight and the vocabulary split over the TP ranks, the norms
// replicated. Llama 3 8B: 8,030,261,248 parameters, of which the 2 * 32 + 1 RMSNorm weights of
// size 4096 are replicated, and its vocabulary (128256) divides by 2 without padding.
TEST(ModelInfo, PerTensorParallelRankCount) {
  RunResult r = run("OMP_NUM_THREADS=1 " + tool("model_info") + " --tp 2 llama3-8b");
  ASSERT_EQ(r.rc, 0) << r.output;
  const int64_t total = 8030261248, replicated = (2 * 32 + 1) * 4096;
  const int64_t per_rank = (total - replicated) / 2 + replicated;  // 4,015,263,744
  EXPECT_NE(r.output.find("4,015,263,744"), std::string::npos)
      << "expected " << per_rank << " per rank:\n"
      << r.output;
  EXPECT_EQ(per_rank, 4015263744);
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

}  // namespace
}  // namespace mcore::training::trainer_test

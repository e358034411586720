// tools/generate's bounds and sampling edge cases, run as a user runs it (a randomly initialized
// preset model, no checkpoint): a RoPE model given --max-position-embeddings is held to it as a
// learned-position model is (the prompt plus new tokens, and the KV cache sized from it), and
// --temperature 0 means greedy rather than an error.
#include <gtest/gtest.h>

#include <string>

#include "tests/trainer/trainer_test_util.h"

namespace mcore::training::trainer_test {
namespace {

const char* kRope =
    " --model llama2-tiny --tokenizer-type NullTokenizer --vocab-size 200"
    " --max-position-embeddings 64 --seq-length 64 --prompt '5 6 7 8' --ignore-eod";

std::string generate() {
  return "OMP_NUM_THREADS=1 " + tool("generate") + kRope;
}

TEST(GenerateLimits, RopeModelIsHeldToItsMaxPositions) {
  RunResult r = run(generate() + " --max-new-tokens 200 --greedy");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("--max-new-tokens 200 capped at 60 (max positions 64)"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("generate: 60 tokens"), std::string::npos) << r.output;
}

TEST(GenerateLimits, TemperatureZeroIsGreedy) {
  RunResult greedy = run(generate() + " --max-new-tokens 12 --greedy");
  RunResult zero = run(generate() + " --max-new-tokens 12 --temperature 0 --top-k 5");
  ASSERT_EQ(greedy.rc, 0) << greedy.output;
  ASSERT_EQ(zero.rc, 0) << zero.output;
  auto first_line = [](const std::string& s) {
    const size_t start = s.find("5 6 7 8");
    return start == std::string::npos ? s : s.substr(start, s.find('\n', start) - start);
  };
  EXPECT_EQ(first_line(zero.output), first_line(greedy.output)) << zero.output;
}

}  // namespace
}  // namespace mcore::training::trainer_test

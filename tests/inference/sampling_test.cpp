// Sampling statistics: frequencies over many Philox draws match softmax(logits / T) (within
// 5 standard errors), top-k never leaves the k largest, top-p keeps exactly Megatron's nucleus,
// greedy is argmax, and bad parameters are errors.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "mcore/base/error.h"
#include "mcore/inference/sampling.h"

namespace mcore::inference {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 0.5f, 2.5f, -1.0f, 2.0f, 0.0f};

std::vector<double> softmax(const std::vector<float>& l, double t, const std::vector<bool>& keep) {
  std::vector<double> p(l.size());
  double s = 0;
  for (size_t i = 0; i < l.size(); ++i) s += p[i] = keep[i] ? std::exp(l[i] / t) : 0.0;
  for (double& x : p) x /= s;
  return p;
}

std::vector<double> frequencies(const SamplingParams& params, int n) {
  std::vector<double> f(kLogits.size());
  for (int i = 0; i < n; ++i)
    f[sample_token(kLogits.data(), static_cast<int64_t>(kLogits.size()), params, 0, i)] += 1.0 / n;
  return f;
}

// 5 standard errors of a binomial proportion: fails by chance with probability ~1e-6 per entry
// (and the draws are fixed by the seed anyway).
void expect_matches(const std::vector<double>& freq, const std::vector<double>& prob, int n) {
  for (size_t i = 0; i < prob.size(); ++i) {
    const double se = std::sqrt(std::max(prob[i] * (1 - prob[i]), 1e-12) / n);
    EXPECT_NEAR(freq[i], prob[i], 5 * se + 1e-12) << "token " << i;
  }
}

TEST(Sampling, TemperatureMatchesSoftmax) {
  const int n = 40000;
  for (double t : {0.5, 1.0, 2.0}) {
    SCOPED_TRACE(t);
    SamplingParams p;
    p.temperature = t;
    p.seed = 11;
    expect_matches(frequencies(p, n), softmax(kLogits, t, std::vector<bool>(7, true)), n);
  }
}

TEST(Sampling, TopKKeepsTheKLargest) {
  const int n = 40000;
  SamplingParams p;
  p.top_k = 3;  // tokens 1 (3.0), 3 (2.5), 5 (2.0)
  expect_matches(frequencies(p, n),
                 softmax(kLogits, 1.0, {false, true, false, true, false, true, false}), n);
}

TEST(Sampling, TopPKeepsTheNucleus) {
  // Sorted probabilities at T=1: token 1 ~0.40, 3 ~0.24, 5 ~0.15, 0 ~0.054, ...
  // top_p = 0.6: before token 3 the mass is 0.40 <= 0.6 (kept), before token 5 it is
  // 0.64 > 0.6 (dropped) - Megatron's rule keeps tokens 1 and 3.
  const auto full = softmax(kLogits, 1.0, std::vector<bool>(7, true));
  ASSERT_LT(full[1], 0.6);
  ASSERT_GT(full[1] + full[3], 0.6);
  const int n = 40000;
  SamplingParams p;
  p.top_p = 0.6;
  expect_matches(frequencies(p, n),
                 softmax(kLogits, 1.0, {false, true, false, true, false, false, false}), n);
  // A tiny top_p still keeps the most likely token.
  p.top_p = 1e-6;
  auto f = frequencies(p, 100);
  EXPECT_DOUBLE_EQ(f[1], 1.0);
}

TEST(Sampling, GreedyAndReproducibility) {
  SamplingParams g;
  g.greedy = true;
  EXPECT_EQ(sample_token(kLogits.data(), 7, g, 0, 0), 1);
  EXPECT_EQ(sample_token(kLogits.data(), 1, g, 0, 0), 0);  // vocab_size limits candidates
  SamplingParams s;
  s.seed = 5;
  for (uint64_t step = 0; step < 20; ++step)
    EXPECT_EQ(sample_token(kLogits.data(), 7, s, 0, step),
              sample_token(kLogits.data(), 7, s, 0, step));
}

TEST(Sampling, BadParametersAreErrors) {
  SamplingParams p;
  p.temperature = 0;
  EXPECT_THROW(sample_token(kLogits.data(), 7, p, 0, 0), Error);
  p.temperature = 1;
  p.top_p = 1.5;
  EXPECT_THROW(sample_token(kLogits.data(), 7, p, 0, 0), Error);
  p.top_p = 0;
  p.top_k = -1;
  EXPECT_THROW(sample_token(kLogits.data(), 7, p, 0, 0), Error);
}

}  // namespace
}  // namespace mcore::inference

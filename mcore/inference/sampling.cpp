#include "mcore/inference/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "mcore/base/error.h"
#include "mcore/base/philox.h"

namespace mcore::inference {

void validate(const SamplingParams& p) {
  MCORE_CHECK(p.greedy || p.temperature > 0)
      << "sampling: temperature must be > 0, got " << p.temperature << " (use greedy for argmax)";
  MCORE_CHECK(p.top_k >= 0) << "sampling: top_k must be >= 0 (0 disables it), got " << p.top_k;
  MCORE_CHECK(p.top_p >= 0 && p.top_p <= 1)
      << "sampling: top_p must be in [0, 1] (0 disables it), got " << p.top_p;
}

int64_t sample_token(const float* logits, int64_t vocab_size, const SamplingParams& p, uint64_t row,
                     uint64_t step) {
  MCORE_CHECK(vocab_size > 0) << "sampling: vocab_size must be positive, got " << vocab_size;
  if (p.greedy || p.top_k == 1) {
    // First maximum, like torch.argmax.
    return static_cast<int64_t>(std::max_element(logits, logits + vocab_size) - logits);
  }
  validate(p);
  // Candidates sorted by logit, descending (ties: lower id first, so the order is deterministic).
  std::vector<int64_t> order(static_cast<size_t>(vocab_size));
  std::iota(order.begin(), order.end(), 0);
  auto by_logit = [logits](int64_t a, int64_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  int64_t n = vocab_size;
  if (p.top_k > 0 && p.top_k < vocab_size) {
    n = p.top_k;
    std::partial_sort(order.begin(), order.begin() + n, order.end(), by_logit);
  } else {
    std::sort(order.begin(), order.end(), by_logit);
  }
  // Softmax over the kept candidates at this temperature (double: the cumulative sums below
  // decide the nucleus boundary).
  std::vector<double> prob(static_cast<size_t>(n));
  const double inv_t = 1.0 / p.temperature, top = logits[order[0]];
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    prob[i] = std::exp((static_cast<double>(logits[order[i]]) - top) * inv_t);
    sum += prob[i];
  }
  if (p.top_p > 0 && p.top_p < 1) {
    // Megatron's modify_logits_for_top_p_filtering: drop a token when the probability of the
    // tokens before it already exceeds top_p (so the most likely token always stays).
    double before = 0;
    int64_t keep = 0;
    while (keep < n && before <= p.top_p * sum) before += prob[keep++];
    n = std::max<int64_t>(keep, 1);
    sum = std::accumulate(prob.begin(), prob.begin() + n, 0.0);
  }
  const double u = static_cast<double>(Philox::uniform(p.seed, row, step)) * sum;  // (0, sum]
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) {
    acc += prob[i];
    if (u <= acc) return order[i];
  }
  return order[n - 1];  // rounding: u a hair above the accumulated sum
}

}  // namespace mcore::inference

#include "mcore/datasets/blended_megatron_dataset_config.h"

#include <cmath>
#include <cstdlib>
#include <regex>

#include "mcore/base/error.h"

namespace mcore::datasets {

const char* split_name(Split s) {
  switch (s) {
    case Split::kTrain:
      return "train";
    case Split::kValid:
      return "valid";
    case Split::kTest:
      return "test";
  }
  return "?";
}

namespace {
// numpy's pairwise_sum (8 accumulators up to 128 elements, then halving).
double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}
}  // namespace

double numpy_sum(const std::vector<double>& v) {
  return pairwise_sum(v.data(), v.size());
}

std::vector<double> normalize(const std::vector<double>& weights) {
  for (double w : weights)
    MCORE_CHECK(std::isfinite(w) && w >= 0)
        << "blend weights must be non-negative numbers, got " << w;
  const double s = numpy_sum(weights);
  MCORE_CHECK(s > 0) << "blend weights sum to 0: give at least one dataset a positive weight";
  std::vector<double> out(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) out[i] = weights[i] / s;
  return out;
}

std::vector<double> parse_and_normalize_split(const std::string& split) {
  // re.findall(r"[.0-9]+", split), then float(); missing entries are 0.
  std::vector<double> v;
  std::regex num("[.0-9]+");
  for (auto it = std::sregex_iterator(split.begin(), split.end(), num);
       it != std::sregex_iterator(); ++it) {
    const std::string s = it->str();
    char* end = nullptr;
    const double x = std::strtod(s.c_str(), &end);
    MCORE_CHECK(end && *end == '\0' && s != ".")
        << "--split '" << split << "': '" << s << "' is not a number";
    v.push_back(x);
  }
  MCORE_CHECK(v.size() <= static_cast<size_t>(kNumSplits))
      << "--split '" << split << "' has " << v.size()
      << " weights; give at most three (train,valid,test), e.g. 969,30,1";
  while (v.size() < static_cast<size_t>(kNumSplits)) v.push_back(0.0);
  double total = 0;
  for (double x : v) total += x;
  MCORE_CHECK(total > 0) << "--split '" << split << "' has no positive weight";
  return normalize(v);
}

SplitMatrix convert_split_vector_to_split_matrix(const std::vector<double>& va,
                                                 const std::optional<std::vector<double>>& vb_in) {
  const std::vector<double>& vb = vb_in ? *vb_in : va;
  auto expand = [](const std::vector<double>& v) {
    std::vector<double> e{0.0};
    for (double x : v) e.push_back(e.back() + x);
    return e;
  };
  const std::vector<double> ea = expand(va), eb = expand(vb);
  SplitMatrix m;
  for (size_t i = 0; i + 1 < ea.size() && i + 1 < eb.size(); ++i) {
    const double lo = std::max(ea[i], eb[i]), hi = std::min(ea[i + 1], eb[i + 1]);
    if (hi <= lo)
      m.push_back(std::nullopt);
    else
      m.push_back(std::make_pair(lo, hi));
  }
  return m;
}

std::optional<Blend> get_blend_from_list(const std::vector<std::string>& list) {
  if (list.empty()) return std::nullopt;
  auto strip = [](const std::string& s) {
    const char* ws = " \t\n\r\f\v";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string::npos) return std::string();
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
  };
  Blend blend;
  bool weighted = list.size() % 2 == 0;
  std::vector<double> weights;
  if (weighted) {
    for (size_t i = 0; i < list.size(); i += 2) {
      const std::string w = strip(list[i]);
      char* end = nullptr;
      const double x = std::strtod(w.c_str(), &end);
      if (w.empty() || *end != '\0') {
        weighted = false;  // not "w p w p ...": all entries are prefixes
        break;
      }
      weights.push_back(x);
    }
  }
  if (weighted) {
    for (size_t i = 1; i < list.size(); i += 2) blend.prefixes.push_back(strip(list[i]));
    blend.weights = weights;
  } else {
    for (const auto& p : list) blend.prefixes.push_back(strip(p));
  }
  return blend;
}

void BlendedMegatronDatasetConfig::finalize() {
  MCORE_CHECK(sequence_length > 0)
      << "dataset config: sequence_length must be positive, got " << sequence_length;
  bool any_per_split = false;
  if (blend_per_split)
    for (const auto& b : *blend_per_split) any_per_split |= b.has_value();
  if (any_per_split) {
    MCORE_CHECK(!blend)
        << "dataset config: blend (--data-path) and blend_per_split "
           "(--train-data-path/--valid-data-path/--test-data-path) are incompatible";
    MCORE_CHECK(!split) << "dataset config: --split cannot be used with per-split data paths";
    for (const auto& b : *blend_per_split)
      if (b && b->weights)
        MCORE_CHECK(b->weights->size() == b->prefixes.size())
            << "dataset config: per-split blend has " << b->prefixes.size() << " prefixes but "
            << b->weights->size() << " weights";
    split_matrix.clear();
  } else {
    if (blend) {
      MCORE_CHECK(!blend->weights || blend->weights->size() == blend->prefixes.size())
          << "dataset config: blend has " << blend->prefixes.size() << " prefixes but "
          << blend->weights->size() << " weights";
      MCORE_CHECK(split.has_value()) << "dataset config: --split must be given with --data-path";
    } else {
      mock = true;
      split = "1,1,1";
    }
    split_matrix = convert_split_vector_to_split_matrix(parse_and_normalize_split(*split));
  }
  if (blend)
    for (double w : blend->weights.value_or(std::vector<double>{}))
      MCORE_CHECK(w >= 0) << "dataset config: negative blend weight " << w;
  finalized_ = true;
}

}  // namespace mcore::datasets

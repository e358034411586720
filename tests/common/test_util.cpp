#include "tests/common/test_util.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>

namespace mcore::testing {

::testing::AssertionResult tensors_close(const Tensor& actual, const Tensor& expected, double rtol,
                                         double atol) {
  if (!actual.defined() || !expected.defined())
    return ::testing::AssertionFailure() << "undefined tensor in comparison";
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shape mismatch: actual " << shape_str(actual.shape())
                                         << " vs expected " << shape_str(expected.shape());
  std::vector<double> a = to_vector<double>(actual), e = to_vector<double>(expected);
  int64_t bad = 0, worst = -1;
  double worst_excess = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    bool both_nan = std::isnan(a[i]) && std::isnan(e[i]);
    if (both_nan || a[i] == e[i]) continue;
    double diff = std::fabs(a[i] - e[i]);
    double tol = atol + rtol * std::fabs(e[i]);
    if (!(diff <= tol)) {
      ++bad;
      double excess = std::isnan(diff) ? INFINITY : diff / (tol > 0 ? tol : 1e-300);
      if (worst < 0 || excess > worst_excess) {
        worst = static_cast<int64_t>(i);
        worst_excess = excess;
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << a.size() << " elements differ (rtol=" << rtol << ", atol=" << atol
         << "); worst at flat index " << worst << ": actual " << a[worst] << " expected "
         << e[worst] << " (shape " << shape_str(actual.shape()) << ")";
}

double max_rel_error(const Tensor& actual, const Tensor& expected) {
  std::vector<double> a = to_vector<double>(actual), e = to_vector<double>(expected);
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(a[i] - e[i]));
    max_ref = std::max(max_ref, std::fabs(e[i]));
  }
  return max_ref > 0 ? max_diff / max_ref : max_diff;
}

// Environment first (a user may point elsewhere), then the paths CMake compiled in: CTest
// cannot pass several variables through gtest_discover_tests' ENVIRONMENT in CMake 3.25.
std::string ref_dir() {
  const char* env = std::getenv("MCORE_REF_DIR");
  return env ? env : MCORE_REF_DIR_DEFAULT;
}

std::string python_executable() {
  const char* env = std::getenv("MCORE_PYTHON");
  return env ? env : MCORE_PYTHON_DEFAULT;
}

bool has_ref(const std::string& group, const std::string& name) {
  return std::filesystem::exists(ref_dir() + "/" + group + "/" + name + ".npy");
}

Tensor load_ref(const std::string& group, const std::string& name) {
  std::string path = ref_dir() + "/" + group + "/" + name + ".npy";
  if (!std::filesystem::exists(path)) {
    ADD_FAILURE() << "reference file " << path
                  << " is missing: run the reference_data CTest fixture (scripts/test does)";
    throw std::runtime_error("missing reference " + path);
  }
  return load_npy(path);
}

Tensor random_tensor(const Shape& shape, uint64_t seed, DType dtype, double scale) {
  Tensor t = empty(shape, dtype);
  uniform_(t, {seed, 7}, -scale, scale);
  return t;
}

}  // namespace mcore::testing

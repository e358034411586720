// Helpers shared by the test binaries: tolerance comparisons that report the worst element, and
// access to the reference data that tests/reference/*.py write (directory in MCORE_REF_DIR).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "mcore/tensor/factory.h"
#include "mcore/tensor/npy.h"
#include "mcore/tensor/tensor.h"

namespace mcore::testing {

// |a - e| <= atol + rtol * |e| elementwise, compared in float64. Returns a failure naming the
// worst element otherwise. Shapes must match exactly.
::testing::AssertionResult tensors_close(const Tensor& actual, const Tensor& expected, double rtol,
                                         double atol);
#define EXPECT_TENSOR_CLOSE(a, e, rtol, atol) \
  EXPECT_TRUE(::mcore::testing::tensors_close((a), (e), (rtol), (atol)))

// Max |a - e| / max(|e|) over all elements (a single relative figure for a whole tensor).
double max_rel_error(const Tensor& actual, const Tensor& expected);

// Reference data written by tests/reference/<script>.py: <MCORE_REF_DIR>/<group>/<name>.npy.
std::string ref_dir();
// The reference-test interpreter (MCORE_PYTHON, else the one CMake configured).
std::string python_executable();
bool has_ref(const std::string& group, const std::string& name);
Tensor load_ref(const std::string& group, const std::string& name);

// A deterministic float64 test tensor with values in [-scale, scale].
Tensor random_tensor(const Shape& shape, uint64_t seed, DType dtype = DType::F64,
                     double scale = 1.0);

}  // namespace mcore::testing

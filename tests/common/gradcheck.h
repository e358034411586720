// Gradient check: analytic gradients from the autograd engine against central finite
// differences, in float64. The output is contracted with a fixed random tensor so every output
// element's gradient path is exercised.
#pragma once

#include <functional>
#include <vector>

#include <gtest/gtest.h>

#include "mcore/tensor/tensor.h"

namespace mcore::testing {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-7;
  double rtol = 1e-5;
  uint64_t seed = 1234;
};

// `inputs` must be float64; those with requires_grad are checked.
::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                                     std::vector<Tensor> inputs, GradcheckOptions options = {});

}  // namespace mcore::testing

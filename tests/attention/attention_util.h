// Shared by the attention-area tests (attention, RoPE, cross-entropy, embedding): leaf tensors
// that require grad, and checking that an mcore::Error's message names the given parts.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "mcore/base/error.h"
#include "mcore/tensor/tensor.h"

namespace mcore::testing {

inline Tensor leaf(Tensor t) {
  t.set_requires_grad(true);
  return t;
}

inline void expect_error_naming(const std::function<void()>& fn,
                                const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error raised";
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(e.message().find(p), std::string::npos) << "'" << p << "' not in: " << e.message();
  }
}

}  // namespace mcore::testing

// Shared by the activation, softmax, norm and dropout tests: loading the "act_norm" reference
// arrays (tests/reference/gen_activation_norm.py) in a given dtype, per-dtype tolerances, and
// capturing an mcore::Error's message.
#pragma once

#include <string>

#include "mcore/base/error.h"
#include "tests/common/test_util.h"

namespace mcore::testing {

// Reference arrays are float32 holding exact bf16 values for the bf16 cases, so converting
// back to bf16 is lossless.
inline Tensor act_norm_ref(const std::string& name, DType dtype) {
  return load_ref("act_norm", name).to(dtype);
}

inline const char* dtype_tag(DType dtype) {
  return dtype == DType::BF16 ? "bf16" : "f32";
}

struct Tol {
  double rtol, atol;
};

// float32: both sides compute in float32 with the same formulas up to operation order and
// libm vs. PyTorch's vectorized exp/erf/tanh (a few ulp), so 1e-5 relative.
// bfloat16: the reference is the float32 result for the same bf16 inputs, rounded once to
// bf16, which is what our kernels compute; float32 differences of a few ulp can move a value
// across a bf16 rounding boundary, i.e. one bf16 ulp = at most 2^-7 relative, so 1e-2
// relative. The absolute floor only covers exact zeros vs. tiny values.
inline Tol tol_for(DType dtype) {
  return dtype == DType::BF16 ? Tol{1e-2, 1e-5} : Tol{1e-5, 1e-6};
}

template <class Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.message();
  }
  return "<no error>";
}

}  // namespace mcore::testing

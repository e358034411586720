// Picks the device an op runs on. Ops with CUDA kernels call on_cuda() where CPU-only ops call
// check_cpu(): it checks that every argument is defined and that all live on one device, and
// says whether that device is a GPU (only possible in builds with the CUDA backend). Without
// the backend it is check_cpu() and returns false.
#pragma once

#include <initializer_list>
#include <string>

#include "mcore/ops/device_check.h"

namespace mcore::ops {

// `required` must be defined; `optional` entries are checked only when defined. The first
// required tensor decides the device.
inline bool on_cuda(std::initializer_list<Tensor> required, const char* op,
                    std::initializer_list<Tensor> optional = {}) {
#ifdef MCORE_WITH_CUDA
  const Tensor& first = *required.begin();
  if (first.defined() && first.device().is_cuda()) {
    auto same = [&](const Tensor& t) {
      MCORE_CHECK(t.device() == first.device())
          << op << ": argument " << shape_str(t.shape()) << " on " << t.device() << " but input "
          << shape_str(first.shape()) << " on " << first.device()
          << " (move all arguments to one device)";
    };
    for (const Tensor& t : required) {
      MCORE_CHECK(t.defined()) << op << ": undefined tensor argument";
      same(t);
    }
    for (const Tensor& t : optional) {
      if (t.defined()) same(t);
    }
    return true;
  }
#endif
  check_cpu(required, op);
  for (const Tensor& t : optional) {
    if (t.defined()) check_cpu({t}, op);
  }
  return false;
}

// CPU tensors, or all defined and on the first one's CUDA device (the optimizer steps: the
// parameter decides).
inline void check_devices(std::initializer_list<Tensor> ts, const char* op) {
  const Tensor& first = *ts.begin();
  if (!first.defined() || first.device().is_cpu()) return check_cpu(ts, op);
  for (const Tensor& t : ts) {
    MCORE_CHECK(t.defined() && t.device() == first.device())
        << op << ": all tensors must be on " << first.device() << " (the parameter's device); got "
        << (t.defined() ? t.device().str() : std::string("an undefined tensor")) << " for shape "
        << (t.defined() ? shape_str(t.shape()) : std::string("?"));
  }
}

}  // namespace mcore::ops

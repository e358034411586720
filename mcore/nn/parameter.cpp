#include "mcore/nn/parameter.h"

namespace mcore::nn {

Parameter::Parameter(const Tensor& data) : Tensor(data.detach()) {
  MCORE_CHECK(is_floating(dtype())) << "a Parameter must be floating point, got " << dtype();
  set_requires_grad(true);
}

}  // namespace mcore::nn

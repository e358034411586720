#include "mcore/autograd/function.h"

namespace mcore::autograd {

void AutogradContext::save_for_backward(const std::vector<Tensor>& tensors) {
  saved_.clear();
  for (const Tensor& t : tensors) saved_.push_back(t.defined() ? t.detach() : Tensor());
}

const std::vector<Tensor>& AutogradContext::saved_tensors() const {
  MCORE_CHECK(!released_) << "saved tensors were freed after the first backward (use "
                             "retain_graph=true to backward twice)";
  return saved_;
}

}  // namespace mcore::autograd

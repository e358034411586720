// A small MLP for the DistributedDataParallel tests (single-process and MPI): three Linear
// layers with GeLU between them, weights and biases drawn from fixed Philox streams, so every
// rank (and the single-process reference) builds exactly the same model. The loss is the mean
// squared error over the batch, so that a rank's gradient over its slice of the batch, scaled by
// 1/dp and summed over ranks, equals the gradient over the whole batch.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mcore/nn/functional.h"
#include "mcore/nn/init.h"
#include "mcore/nn/linear.h"
#include "mcore/tensor/factory.h"

namespace mcore::testing {

class DdpTestMlp : public nn::Module {
 public:
  DdpTestMlp(int64_t in, int64_t hidden, int64_t out, DType dtype = DType::F32) {
    int64_t dims[4] = {in, hidden, hidden, out};
    for (int i = 0; i < 3; ++i) {
      nn::LinearOptions o;
      o.dtype = dtype;
      o.init = {/*seed=*/77, /*stream=*/static_cast<uint64_t>(10 + i), /*std=*/0.5};
      auto layer = std::make_shared<nn::Linear>(dims[i], dims[i + 1], o);
      // Non-zero biases, so their gradients are tested against something non-trivial.
      NoGradGuard g;
      Tensor b = *layer->bias();
      b.copy_(nn::init_normal(b.shape(), {77, static_cast<uint64_t>(20 + i), 0.1}, dtype));
      layers.push_back(register_module("fc" + std::to_string(i + 1), layer));
    }
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = x;
    for (size_t i = 0; i < layers.size(); ++i) {
      h = layers[i]->forward(h);
      if (i + 1 < layers.size()) h = F::gelu(h);
    }
    return h;
  }
  // mean((forward(x) - target)^2)
  Tensor loss(const Tensor& x, const Tensor& target) const {
    Tensor d = F::sub(forward(x), target);
    return F::mean(F::mul(d, d));
  }
  std::vector<std::shared_ptr<nn::Linear>> layers;
};

// The batch every test uses: rows of inputs and targets from fixed Philox streams.
inline Tensor ddp_test_inputs(int64_t rows, int64_t cols, uint64_t stream, DType dtype) {
  return nn::init_normal({rows, cols}, {99, stream, 1.0}, dtype);
}

}  // namespace mcore::testing

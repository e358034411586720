// End to end through autograd, modules and the fused AdamW op: an MLP trained for 50 steps must
// follow PyTorch's trajectory (tests/reference/gen_mlp.py) to 1e-5 relative — losses at every
// step and all final weights. 1e-5 leaves room for fp32 summation-order differences in GEMMs
// and reductions, which grow slowly over 50 steps; a wrong gradient or optimizer term shows up
// at 1e-2 or more within a few steps.
#include <gtest/gtest.h>

#include "mcore/nn/functional.h"
#include "mcore/nn/linear.h"
#include "mcore/nn/norm.h"
#include "mcore/ops/adam.h"
#include "tests/common/test_util.h"

namespace mcore {

using testing::load_ref;

namespace {
class Mlp : public nn::Module {
 public:
  Mlp() {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(10, 24));
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(24));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(24, 5));
  }
  Tensor forward(const Tensor& x) const {
    return fc2->forward(F::gelu(norm->forward(fc1->forward(x)), ops::GeluApproximate::kTanh));
  }
  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<nn::LayerNorm> norm;
};
}  // namespace

TEST(MlpTraining, FiftyAdamWStepsMatchPyTorch) {
  Mlp model;
  nn::StateDict init;
  for (auto& [name, p] : model.named_parameters()) init[name] = load_ref("mlp", "init_" + name);
  model.load_state_dict(init);
  Tensor x = load_ref("mlp", "x"), y = load_ref("mlp", "y");
  std::vector<double> ref_losses = to_vector<double>(load_ref("mlp", "losses"));

  struct State {
    Tensor m, v;
  };
  std::vector<State> state;
  for (auto& p : model.parameters()) state.push_back({zeros_like(*p), zeros_like(*p)});
  for (size_t step = 1; step <= ref_losses.size(); ++step) {
    model.zero_grad();
    Tensor loss = F::mean(F::cross_entropy(model.forward(x), y));
    loss.backward();
    EXPECT_NEAR(loss.item(), ref_losses[step - 1], 1e-5 * std::abs(ref_losses[step - 1]))
        << "step " << step;
    auto params = model.parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      ops::AdamConfig cfg;
      cfg.lr = 1e-2;
      cfg.beta1 = 0.9;
      cfg.beta2 = 0.95;
      cfg.eps = 1e-8;
      cfg.weight_decay = params[i]->no_weight_decay ? 0.0 : 0.1;
      Tensor p = params[i]->detach();
      ops::adam_step_(p, params[i]->grad(), state[i].m, state[i].v, static_cast<int64_t>(step),
                      cfg);
    }
  }
  EXPECT_LT(ref_losses.back(), 0.5 * ref_losses.front()) << "the reference run should learn";
  for (auto& [name, p] : model.named_parameters()) {
    SCOPED_TRACE(name);
    EXPECT_LT(testing::max_rel_error(*p, load_ref("mlp", "final_" + name)), 1e-5);
  }
}

}  // namespace mcore

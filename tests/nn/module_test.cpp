#include <gtest/gtest.h>

#include <cmath>

#include "mcore/nn/functional.h"
#include "mcore/nn/linear.h"
#include "tests/common/test_util.h"

namespace mcore {

namespace {
class TwoLayer : public nn::Module {
 public:
  TwoLayer() {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(4, 8));
    nn::LinearOptions o;
    o.bias = false;
    o.init.stream = 1;
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(8, 2, o));
  }
  Tensor forward(const Tensor& x) const { return fc2->forward(fc1->forward(x)); }
  std::shared_ptr<nn::Linear> fc1, fc2;
};
}  // namespace

TEST(Module, DottedNamesAndCounts) {
  TwoLayer m;
  auto named = m.named_parameters();
  ASSERT_EQ(named.size(), 3u);
  EXPECT_EQ(named[0].first, "fc1.weight");
  EXPECT_EQ(named[1].first, "fc1.bias");
  EXPECT_EQ(named[2].first, "fc2.weight");
  EXPECT_EQ(m.num_parameters(), 4 * 8 + 8 + 8 * 2);
  EXPECT_TRUE(named[1].second->no_weight_decay);
  EXPECT_FALSE(named[0].second->no_weight_decay);
}

TEST(Module, TrainEvalRecurses) {
  TwoLayer m;
  m.eval();
  EXPECT_FALSE(m.fc1->is_training());
  m.train();
  EXPECT_TRUE(m.fc2->is_training());
}

TEST(Module, StateDictRoundTrip) {
  TwoLayer a, b;
  // Different init streams for b so the copy is visible.
  for (auto& p : b.parameters()) p->detach().fill_(0.5);
  b.load_state_dict(a.state_dict());
  Tensor x = testing::random_tensor({3, 4}, 1, DType::F32);
  NoGradGuard g;
  EXPECT_EQ(to_vector<float>(a.forward(x)), to_vector<float>(b.forward(x)));
}

TEST(Module, LoadStateDictErrorsListKeysAndShapes) {
  TwoLayer m;
  nn::StateDict sd = m.state_dict();
  sd.erase("fc2.weight");
  sd["fc3.weight"] = zeros({2, 8});
  try {
    m.load_state_dict(sd);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("Missing: fc2.weight"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("Unexpected: fc3.weight"), std::string::npos) << e.message();
  }
  sd = m.state_dict();
  sd["fc1.weight"] = zeros({4, 4});
  try {
    m.load_state_dict(sd);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("[4, 4]"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("[8, 4]"), std::string::npos) << e.message();
  }
}

TEST(Module, InitIsPhiloxNormalWithStd) {
  nn::LinearOptions o;
  o.init.std = 0.02;
  nn::Linear big(256, 512, o);
  std::vector<float> w = to_vector<float>(*big.weight());
  double mean = 0, var = 0;
  for (float v : w) mean += v;
  mean /= w.size();
  for (float v : w) var += (v - mean) * (v - mean);
  var /= w.size();
  EXPECT_NEAR(mean, 0.0, 3 * 0.02 / std::sqrt(w.size()) * 2);
  EXPECT_NEAR(std::sqrt(var), 0.02, 0.02 * 0.01);
  // Same spec, same values.
  nn::Linear again(256, 512, o);
  EXPECT_EQ(w, to_vector<float>(*again.weight()));
  EXPECT_EQ(to_vector<float>(*big.bias()), std::vector<float>(512, 0.0f));
}

}  // namespace mcore

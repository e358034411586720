// A worked example of ModuleSpec composition: user classes fill slots of the GPT layer without
// editing mcore. Two are shown:
//   - NaiveCoreAttention: explicit scores/softmax/matmul in the core_attention slot. It must give
//     the same loss and gradients as the built-in DotProductAttention (fp32, 1e-5 relative: the
//     two sum in different orders).
//   - SquaredReluMLP: relu(x)^2 with a learned per-channel gain, in the mlp slot. It fills its
//     own linear_fc1 / linear_fc2 sub-slots from the spec (so tensor parallelism still applies)
//     and owns an extra parameter, which gets a Megatron-style dotted name.
#include <gtest/gtest.h>

#include <cmath>

#include "mcore/comm/local_backend.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/models/presets.h"
#include "mcore/nn/functional.h"
#include "mcore/nn/init.h"
#include "mcore/tensor/factory.h"
#include "tests/common/test_util.h"

namespace mcore {
namespace {

using namespace transformer;

class NaiveCoreAttention : public nn::Module {
 public:
  explicit NaiveCoreAttention(const CoreAttentionArgs& args) : config_(args.config) {}

  // q [s, b, np, hn], k/v [s, b, ng, hn] -> [s, b, np * hn], causal.
  Tensor forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor&) const {
    const int64_t s = q.size(0), b = q.size(1), np = q.size(2), ng = k.size(2), hn = q.size(3);
    auto heads_first = [](const Tensor& t) { return F::contiguous(F::permute(t, {1, 2, 0, 3})); };
    Tensor qh = heads_first(q), kh = heads_first(k), vh = heads_first(v);  // [b, n, s, hn]
    std::vector<Tensor> ks, vs;
    for (int64_t h = 0; h < np; ++h) {  // query head h reads group h / (np / ng)
      ks.push_back(F::narrow(kh, 1, h / (np / ng), 1));
      vs.push_back(F::narrow(vh, 1, h / (np / ng), 1));
    }
    Tensor scores = F::matmul(qh, F::cat(ks, 1), false, true);  // [b, np, s, s]
    Tensor probs = F::softmax(scores, 1.0 / std::sqrt(static_cast<double>(config_->kv_channels)),
                              /*causal=*/true);
    Tensor ctx = F::matmul(probs, F::cat(vs, 1));  // [b, np, s, hn]
    return F::reshape(F::contiguous(F::permute(ctx, {2, 0, 1, 3})), {s, b, np * hn});
  }

 private:
  const TransformerConfig* config_;
};

class SquaredReluMLP : public nn::Module {
 public:
  SquaredReluMLP(const MLPArgs& args, const MLPSubmodules& subs) {
    const TransformerConfig& c = *args.config;
    LinearArgs fc1;
    static_cast<SlotArgs&>(fc1) = args;
    fc1.prefix = args.param_name("linear_fc1");
    fc1.input_size = c.hidden_size;
    fc1.output_size = c.ffn_hidden_size;
    fc1.bias = false;
    fc1.init_std = c.init_method_std;
    fc1_ = subs.linear_fc1.build(fc1);
    register_module("linear_fc1", fc1_.module);

    LinearArgs fc2 = fc1;
    fc2.prefix = args.param_name("linear_fc2");
    fc2.input_size = c.ffn_hidden_size;
    fc2.output_size = c.hidden_size;
    fc2.skip_bias_add = true;
    fc2.init_std = c.output_layer_init_std();
    fc2_ = subs.linear_fc2.build(fc2);
    register_module("linear_fc2", fc2_.module);

    // Per-channel gain on the (tensor-parallel) intermediate: this rank's slice of it.
    const int64_t local = c.ffn_hidden_size / c.tensor_model_parallel_size;
    gain_ = register_parameter("gain", ones({local}));
  }

  LinearOutput forward(const Tensor& x) const {
    Tensor h = fc1_.forward(x).output;
    Tensor r = F::scale(F::add(h, F::gelu(h)), 0.5);  // any smooth op; then square it
    return fc2_.forward(F::mul(F::mul(r, r), *gain_));
  }

 private:
  Slot<LinearFn> fc1_, fc2_;
  nn::ParameterPtr gain_;
};

TransformerConfig tiny_config() {
  TransformerConfig c = models::get_preset("llama3-tiny").config;
  c.hidden_dropout = 0.0;
  c.attention_dropout = 0.0;
  return c;
}

Tensor loss_of(models::GPTModel& m, const Tensor& ids) {
  Tensor loss = F::mean(m.forward(ids, Tensor(), Tensor(), ids));
  loss.backward();
  return loss;
}

TEST(CustomLayer, UserCoreAttentionMatchesDotProductAttention) {
  models::GPTModelOptions o;
  o.tp_group = comm::make_local_group();
  TransformerLayerSpec spec = get_gpt_layer_local_spec();
  models::GPTModel reference(tiny_config(), spec, 256, 64, o);

  spec.submodules.self_attention.submodules.core_attention.module =
      module_class<NaiveCoreAttention>();
  models::GPTModel custom(tiny_config(), spec, 256, 64, o);

  Tensor ids = arange(0, 22, 1).view({2, 11});
  const double a = loss_of(reference, ids).item(), b = loss_of(custom, ids).item();
  EXPECT_NEAR(a, b, 1e-5 * std::abs(a));
  auto ref_params = reference.named_parameters();
  auto params = custom.named_parameters();
  ASSERT_EQ(ref_params.size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    SCOPED_TRACE(params[i].first);
    EXPECT_EQ(params[i].first, ref_params[i].first);  // same names, so the same Philox init
    EXPECT_LT(testing::max_rel_error(params[i].second->grad(), ref_params[i].second->grad()), 1e-5);
  }
}

TEST(CustomLayer, UserMlpFillsTheSlotAndOwnsParameters) {
  TransformerLayerSpec spec = get_gpt_layer_local_spec();
  spec.submodules.mlp.module = module_class<SquaredReluMLP>();  // keeps the linear sub-slots
  models::GPTModelOptions o;
  o.tp_group = comm::make_local_group();
  models::GPTModel model(tiny_config(), spec, 256, 64, o);

  auto sd = model.state_dict();
  EXPECT_TRUE(sd.count("decoder.layers.1.mlp.gain"));
  EXPECT_TRUE(sd.count("decoder.layers.1.mlp.linear_fc1.weight"));
  EXPECT_EQ(sd.at("decoder.layers.0.mlp.linear_fc1.weight").shape(), (Shape{160, 64}));  // no GLU
  EXPECT_TRUE(sd.count("decoder.layers.0.self_attention.linear_qkv.weight"));

  Tensor ids = arange(0, 22, 1).view({2, 11});
  Tensor loss = loss_of(model, ids);
  EXPECT_TRUE(std::isfinite(loss.item()));
  for (auto& [name, p] : model.named_parameters()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(p->grad().defined());
  }
  for (auto& [name, p] : model.named_parameters()) {
    if (name != "decoder.layers.1.mlp.gain") continue;
    double norm = 0;
    for (float g : to_vector<float>(p->grad())) norm += std::abs(g);
    EXPECT_GT(norm, 0.0);
  }
}

TEST(CustomLayer, EmptyRequiredSlotIsAClearError) {
  TransformerLayerSpec spec = get_gpt_layer_local_spec();
  spec.submodules.mlp.submodules.linear_fc2 = {};
  models::GPTModelOptions o;
  o.tp_group = comm::make_local_group();
  try {
    models::GPTModel model(tiny_config(), spec, 256, 64, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("linear_fc2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mcore

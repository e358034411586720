#include "mcore/transformer/mlp.h"

#include "mcore/nn/functional.h"

namespace mcore::transformer {

MLP::MLP(const MLPArgs& args, const MLPSubmodules& subs) : config_(args.config) {
  const TransformerConfig& c = *config_;
  const int64_t input_size = args.input_size > 0 ? args.input_size : c.hidden_size;
  const int64_t ffn = args.ffn_hidden_size > 0 ? args.ffn_hidden_size : c.ffn_hidden_size;

  LinearArgs fc1;
  static_cast<SlotArgs&>(fc1) = args;
  fc1.prefix = args.param_name("linear_fc1");
  fc1.input_size = input_size;
  fc1.output_size = c.gated_linear_unit ? 2 * ffn : ffn;
  fc1.bias = c.add_bias_linear;
  fc1.skip_bias_add = false;  // the bias is added before the activation either way
  fc1.gather_output = false;
  fc1.init_std = c.init_method_std;
  fc1.partition_stride = c.gated_linear_unit ? 2 : 1;
  linear_fc1_ = subs.linear_fc1.build(fc1);
  MCORE_CHECK(static_cast<bool>(linear_fc1_)) << "MLP: the linear_fc1 slot is empty";
  register_module("linear_fc1", linear_fc1_.module);

  LinearArgs fc2;
  static_cast<SlotArgs&>(fc2) = args;
  fc2.prefix = args.param_name("linear_fc2");
  fc2.input_size = ffn;
  fc2.output_size = input_size;
  fc2.bias = c.add_bias_linear;
  fc2.skip_bias_add = true;
  fc2.input_is_parallel = true;
  fc2.init_std = c.output_layer_init_std();
  linear_fc2_ = subs.linear_fc2.build(fc2);
  MCORE_CHECK(static_cast<bool>(linear_fc2_)) << "MLP: the linear_fc2 slot is empty";
  register_module("linear_fc2", linear_fc2_.module);
}

Tensor MLP::activation(const Tensor& x) const {
  const ActivationFunc f = config_->activation_func;
  if (config_->gated_linear_unit) {
    if (f == ActivationFunc::kSilu) return F::swiglu(x);  // fused silu(gate) * up
    std::vector<Tensor> gate_up = F::chunk(x, 2, x.dim() - 1);
    Tensor g = f == ActivationFunc::kGelu ? F::gelu(gate_up[0])
                                          : F::gelu(gate_up[0], F::GeluApproximate::kTanh);
    return F::mul(g, gate_up[1]);
  }
  switch (f) {
    case ActivationFunc::kGelu:
      return F::gelu(x);
    case ActivationFunc::kGeluTanh:
      return F::gelu(x, F::GeluApproximate::kTanh);
    case ActivationFunc::kSilu:
      return F::silu(x);
  }
  MCORE_FAIL() << "MLP: unsupported activation_func";
  return x;
}

LinearOutput MLP::forward(const Tensor& hidden) const {
  Tensor intermediate = activation(linear_fc1_.forward(hidden).output);
  return linear_fc2_.forward(intermediate);
}

}  // namespace mcore::transformer

// A whole training step on the GPU against the same step on the CPU: a tiny GPT (the gpt2-tiny
// and llama3-tiny presets) is built twice from one seed (Philox init on the CPU, so both copies
// start bit-identical), one copy is moved to cuda:0 with Module::to, and each runs one forward
// (embedding, attention, MLP, vocab-parallel cross-entropy), backward and Adam step (fp32 main
// params, grad clipping, weight decay). Compared: the loss, every parameter's gradient and every
// weight after the step.
//
// Tolerances, as a whole-tensor relative error (max |gpu - cpu| / max |cpu|, so entries that
// cancel to ~0 do not count as relative noise):
//   - float32 loss 1e-5: the same float32 math, summed in another order (GEMM K-blocking, warp
//     reductions, atomics in the embedding gradient) - differences of a few ulps;
//   - float32 gradients and weights 1e-4: those ulp differences grow through the backward of
//     two layers and the Adam division. Adam's first update is lr * g / (|g| + eps), a sign for
//     |g| >> eps, so gradients that are ~0 on both devices could flip their update; eps = 1e-4
//     (not 1e-8) makes the update Lipschitz in g (slope <= lr / eps) so ulp-level gradient
//     differences stay ulp-level in the weights;
//   - bfloat16 2e-2: every op rounds its output to bf16 (8 bits of mantissa, 3.9e-3 relative
//     rounding step) and a value that differs in its last float bits may round the other way; a
//     few roundings in sequence stay under 2e-2.
// Dropout draws the same Philox numbers on both devices, so the dropout variant uses the same
// tolerances. Skips without a GPU.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "mcore/base/rng_state.h"
#include "mcore/comm/local_backend.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/models/presets.h"
#include "mcore/nn/functional.h"
#include "mcore/optimizer/optimizer.h"
#include "mcore/tensor/factory.h"
#include "mcore/transformer/spec.h"
#include "tests/common/test_util.h"
#include "tests/cuda/cuda_test_util.h"

namespace mcore {
namespace {

struct StepOutcome {
  double loss = 0;
  std::map<std::string, Tensor> grads;    // on the CPU, after backward
  std::map<std::string, Tensor> weights;  // on the CPU, after the optimizer step
};

Tensor token_ids(int64_t b, int64_t s, int64_t vocab, uint64_t salt) {
  Tensor t = empty({b, s}, DType::I64);
  int64_t* p = t.data<int64_t>();
  for (int64_t i = 0; i < b * s; ++i)
    p[i] = static_cast<int64_t>((static_cast<uint64_t>(i) * 2654435761u + salt * 97u) % vocab);
  return t;
}

StepOutcome train_step(const std::string& preset, Device device, DType dtype, bool dropout) {
  const models::ModelPreset& p = models::get_preset(preset);
  transformer::TransformerConfig c = p.config;
  if (!dropout) {
    c.hidden_dropout = 0.0;
    c.attention_dropout = 0.0;
  }
  c.params_dtype = dtype;
  const int64_t vocab = p.vocab_size, b = 2, s = 24;
  set_rng_state(RngState{1234, 0});  // dropout masks are keyed by it

  models::GPTModelOptions o;
  o.share_embeddings_and_output_weights = p.share_embeddings_and_output_weights;
  o.tp_group = comm::make_local_group();
  models::GPTModel model(c, transformer::get_gpt_layer_local_spec(), vocab, p.max_sequence_length,
                         o);
  model.to(device);
  for (const auto& [name, param] : model.named_parameters()) {
    EXPECT_EQ(param->device(), device) << name;
    EXPECT_TRUE(param->requires_grad()) << name;
  }

  optimizer::OptimizerConfig oc;
  oc.lr = 1e-3;
  oc.adam_eps = 1e-4;  // see the header: keeps the first update Lipschitz in the gradient
  oc.bf16 = dtype == DType::BF16;
  oc.clip_grad = 1.0;
  auto opt = optimizer::get_megatron_optimizer(oc, model.named_parameters(), nullptr, 0);

  const Tensor ids = token_ids(b, s, vocab, 1).to(device);
  const Tensor labels = token_ids(b, s, vocab, 2).to(device);
  model.train(true);
  opt->zero_grad();
  Tensor per_token = model.forward(ids, Tensor(), Tensor(), labels);  // [b, s] float32
  EXPECT_EQ(per_token.device(), device);
  Tensor loss = F::scale(F::sum(per_token), 1.0 / static_cast<double>(b * s));
  loss.backward();

  StepOutcome out;
  out.loss = loss.item();
  for (const auto& [name, param] : model.named_parameters()) {
    EXPECT_TRUE(param->grad().defined()) << name << " has no gradient";
    if (param->grad().defined()) out.grads[name] = param->grad().to(Device::cpu()).clone();
  }
  const optimizer::StepResult r = opt->step();
  EXPECT_TRUE(r.success);
  for (const auto& [name, param] : model.named_parameters())
    out.weights[name] = param->detach().to(Device::cpu()).clone();
  return out;
}

void expect_same_step(const StepOutcome& gpu, const StepOutcome& cpu, double loss_tol,
                      double tensor_tol) {
  EXPECT_NEAR(gpu.loss, cpu.loss, loss_tol * std::abs(cpu.loss))
      << "gpu loss " << gpu.loss << " vs cpu " << cpu.loss;
  ASSERT_EQ(gpu.grads.size(), cpu.grads.size());
  for (const auto& [name, g] : cpu.grads) {
    ASSERT_TRUE(gpu.grads.count(name)) << name;
    EXPECT_LE(testing::max_rel_error(gpu.grads.at(name), g), tensor_tol) << "gradient of " << name;
  }
  for (const auto& [name, w] : cpu.weights) {
    EXPECT_LE(testing::max_rel_error(gpu.weights.at(name), w), tensor_tol)
        << "weight after the step: " << name;
  }
}

class CudaTrainStep : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaTrainStep, Float32StepMatchesCpu) {
  MCORE_REQUIRE_GPU();
  const StepOutcome cpu = train_step(GetParam(), Device::cpu(), DType::F32, false);
  const StepOutcome gpu = train_step(GetParam(), Device::cuda(0), DType::F32, false);
  expect_same_step(gpu, cpu, 1e-5, 1e-4);
}

TEST_P(CudaTrainStep, Float32StepWithDropoutMatchesCpu) {
  MCORE_REQUIRE_GPU();
  const StepOutcome cpu = train_step(GetParam(), Device::cpu(), DType::F32, true);
  const StepOutcome gpu = train_step(GetParam(), Device::cuda(0), DType::F32, true);
  expect_same_step(gpu, cpu, 1e-5, 1e-4);
}

TEST_P(CudaTrainStep, BFloat16StepMatchesCpu) {
  MCORE_REQUIRE_GPU();
  const StepOutcome cpu = train_step(GetParam(), Device::cpu(), DType::BF16, false);
  const StepOutcome gpu = train_step(GetParam(), Device::cuda(0), DType::BF16, false);
  expect_same_step(gpu, cpu, 2e-2, 2e-2);
}

INSTANTIATE_TEST_SUITE_P(Presets, CudaTrainStep, ::testing::Values("gpt2-tiny", "llama3-tiny"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

// Module::to keeps the Parameter objects (and so every handle, hook and attribute) and moves
// the gradient with them; a round trip restores the values bit for bit.
TEST(CudaModuleTo, MovesParametersInPlaceAndBack) {
  MCORE_REQUIRE_GPU();
  transformer::TransformerConfig c = models::get_preset("gpt2-tiny").config;
  models::GPTModelOptions o;
  o.tp_group = comm::make_local_group();
  models::GPTModel model(c, transformer::get_gpt_layer_local_spec(), 211, 64, o);
  std::map<std::string, std::pair<nn::Parameter*, Tensor>> before;
  for (const auto& [name, p] : model.named_parameters()) before[name] = {p.get(), p->clone()};
  model.to(Device::cuda(0));
  for (const auto& [name, p] : model.named_parameters()) {
    EXPECT_EQ(p.get(), before.at(name).first) << name;
    EXPECT_TRUE(p->device().is_cuda()) << name;
    EXPECT_TRUE(p->requires_grad()) << name;
  }
  model.to(Device::cpu());
  for (const auto& [name, p] : model.named_parameters()) {
    EXPECT_TRUE(p->device().is_cpu()) << name;
    EXPECT_TENSOR_CLOSE(*p, before.at(name).second, 0.0, 0.0);
  }
}

}  // namespace
}  // namespace mcore

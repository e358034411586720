#include "mcore/transformer/moe/moe_utils.h"

#include <atomic>
#include <mutex>

#include "mcore/autograd/function.h"
#include "mcore/base/error.h"
#include "mcore/nn/functional.h"
#include "mcore/tensor/factory.h"

namespace mcore::transformer::moe {

namespace {

std::atomic<double> g_aux_scale{1.0};
std::mutex g_tracker_mu;
std::vector<double> g_tracker;  // [layer - 1] summed over the step's microbatches

struct AuxLossAutoScaler : autograd::Function<AuxLossAutoScaler> {
  static Tensor forward(autograd::AutogradContext* ctx, const Tensor& x, const Tensor& aux) {
    ctx->save("aux_shape", aux.shape());
    ctx->save("aux_dtype", aux.dtype());
    return x.clone();
  }
  static std::vector<Tensor> backward(autograd::AutogradContext* ctx, std::vector<Tensor> g) {
    const Tensor aux_grad = full(ctx->get<Shape>("aux_shape"), aux_loss_backward_scale(),
                                 {ctx->get<DType>("aux_dtype"), g[0].device()});
    return {g[0], aux_grad};
  }
};

}  // namespace

Tensor switch_load_balancing_loss(const Tensor& scores,
                                  const std::vector<int64_t>& tokens_per_expert, int64_t topk,
                                  double coeff, int64_t total_tokens) {
  MCORE_CHECK(scores.dim() == 2 && scores.size(1) == static_cast<int64_t>(tokens_per_expert.size()))
      << "switch_load_balancing_loss: scores " << shape_str(scores.shape()) << " for "
      << tokens_per_expert.size() << " experts";
  const double tokens = static_cast<double>(total_tokens > 0 ? total_tokens : scores.size(0));
  const double experts = static_cast<double>(scores.size(1));
  std::vector<float> counts(tokens_per_expert.begin(), tokens_per_expert.end());
  const Tensor tpe = from_vector<float>(counts).to(scores.device()).to(scores.dtype());
  const Tensor per_expert = F::sum(scores, {0});  // [experts]
  const Tensor dot = F::sum(F::mul(per_expert, tpe));
  return F::scale(dot, experts * coeff / (static_cast<double>(topk) * tokens * tokens));
}

Tensor attach_aux_loss(const Tensor& x, const Tensor& aux_loss) {
  return AuxLossAutoScaler::apply(x, aux_loss);
}

void set_aux_loss_backward_scale(double scale) {
  g_aux_scale.store(scale);
}

double aux_loss_backward_scale() {
  return g_aux_scale.load();
}

void record_load_balancing_loss(int64_t layer_number, double value) {
  std::lock_guard<std::mutex> lock(g_tracker_mu);
  if (layer_number < 1) return;
  if (g_tracker.size() < static_cast<size_t>(layer_number)) g_tracker.resize(layer_number, 0.0);
  g_tracker[layer_number - 1] += value;
}

std::vector<double> take_load_balancing_losses(int64_t num_layers) {
  std::lock_guard<std::mutex> lock(g_tracker_mu);
  std::vector<double> out(static_cast<size_t>(num_layers), 0.0);
  for (size_t i = 0; i < g_tracker.size() && i < out.size(); ++i) out[i] = g_tracker[i];
  g_tracker.clear();
  return out;
}

}  // namespace mcore::transformer::moe

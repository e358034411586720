#include "mcore/transformer/moe/moe_utils.h"

#include <atomic>
#include <map>
#include <mutex>

#include "mcore/autograd/function.h"
#include "mcore/base/error.h"
#include "mcore/nn/functional.h"
#include "mcore/tensor/factory.h"

namespace mcore::transformer::moe {

namespace {

std::atomic<double> g_aux_scale{1.0};
std::mutex g_tracker_mu;
// name -> [layer - 1] summed over the step's microbatches
std::map<std::string, std::vector<double>> g_tracker;

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

Tensor z_loss(const Tensor& logits, double coeff) {
  MCORE_CHECK(logits.dim() == 2) << "z_loss: logits must be [tokens, experts], got "
                                 << shape_str(logits.shape());
  const int64_t tokens = logits.size(0);
  // logsumexp through the fused cross-entropy: CE(logits, 0) = lse - logits[:, 0].
  const Tensor first = zeros({tokens}, {DType::I64, logits.device()});
  const Tensor lse =
      F::add(F::cross_entropy(logits, first), F::reshape(F::narrow(logits, 1, 0, 1), {tokens}));
  return F::scale(F::mean(F::mul(lse, lse), {0}), coeff);
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

void record_aux_loss(const std::string& name, int64_t layer_number, double value) {
  std::lock_guard<std::mutex> lock(g_tracker_mu);
  if (layer_number < 1) return;
  std::vector<double>& t = g_tracker[name];
  if (t.size() < static_cast<size_t>(layer_number)) t.resize(layer_number, 0.0);
  t[layer_number - 1] += value;
}

std::vector<double> take_aux_losses(const std::string& name, int64_t num_layers) {
  std::lock_guard<std::mutex> lock(g_tracker_mu);
  std::vector<double> out(static_cast<size_t>(num_layers), 0.0);
  std::vector<double>& t = g_tracker[name];
  for (size_t i = 0; i < t.size() && i < out.size(); ++i) out[i] = t[i];
  t.clear();
  return out;
}

}  // namespace mcore::transformer::moe

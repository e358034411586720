// A stand-in main job until pretrain_gpt exists: trains a small MLP (Linear -> LayerNorm ->
// GeLU -> Linear, AdamW) to classify points by the quadrant they fall in, printing the loss and
// accuracy as it learns. Everything it uses is the real library: tensors, autograd, modules,
// fused ops and the AdamW kernel.
#include <cstdio>

#include "mcore/base/logging.h"
#include "mcore/nn/functional.h"
#include "mcore/nn/linear.h"
#include "mcore/nn/norm.h"
#include "mcore/ops/adam.h"
#include "mcore/tensor/factory.h"

using namespace mcore;

int main() {
  const int64_t n = 512, hidden = 64, classes = 4;
  nn::LinearOptions o1, o2;
  o1.init = {1, 1, 0.3};
  o2.init = {1, 2, 0.3};
  nn::Linear fc1(2, hidden, o1), fc2(hidden, classes, o2);
  nn::LayerNorm norm(hidden);
  std::vector<nn::ParameterPtr> params = fc1.parameters();
  for (auto& p : norm.parameters()) params.push_back(p);
  for (auto& p : fc2.parameters()) params.push_back(p);

  Tensor x = rand({n, 2}, {7, 0});
  std::vector<float> xv = to_vector<float>(x);
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) {
    float a = xv[2 * i] - 0.5f, b = xv[2 * i + 1] - 0.5f;
    labels[i] = (a > 0 ? 1 : 0) + (b > 0 ? 2 : 0);
  }
  Tensor y = from_vector(labels);

  std::vector<Tensor> m, v;
  for (auto& p : params) m.push_back(zeros_like(*p)), v.push_back(zeros_like(*p));
  ops::AdamConfig cfg;
  cfg.lr = 3e-2;
  cfg.weight_decay = 0.01;
  std::printf(
      "training a %ld-parameter MLP on %ld points (4 classes)\n",
      static_cast<long>(fc1.num_parameters() + norm.num_parameters() + fc2.num_parameters()),
      static_cast<long>(n));
  for (int step = 1; step <= 200; ++step) {
    for (auto& p : params) p->set_grad(Tensor());
    Tensor logits = fc2.forward(F::gelu(norm.forward(fc1.forward(x))));
    Tensor loss = F::mean(F::cross_entropy(logits, y));
    loss.backward();
    for (size_t i = 0; i < params.size(); ++i) {
      ops::AdamConfig c = cfg;
      if (params[i]->no_weight_decay) c.weight_decay = 0;
      Tensor p = params[i]->detach();
      ops::adam_step_(p, params[i]->grad(), m[i], v[i], step, c);
    }
    if (step % 20 == 0 || step == 1) {
      std::vector<float> lg = to_vector<float>(logits.detach());
      int correct = 0;
      for (int64_t i = 0; i < n; ++i) {
        int64_t best = 0;
        for (int64_t c = 1; c < classes; ++c)
          if (lg[i * classes + c] > lg[i * classes + best]) best = c;
        correct += best == labels[i];
      }
      std::printf("step %4d | loss %.4f | accuracy %.1f%%\n", step, loss.item(),
                  100.0 * correct / static_cast<double>(n));
    }
  }
  return 0;
}
